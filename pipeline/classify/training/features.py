"""A model's frozen features, the class weights of a loss, and the topic head refitted on features.

Shared by the recipes: ``heads`` and ``blend`` fit heads on features, ``compress`` refits the topic head after
changing the backbone, ``finetune`` weighs its loss.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from pipeline.classify.datasets.data import TaskData, row_weights
from pipeline.classify.model.architecture import DualHeadClassifier
from pipeline.classify.model.labels import TOPICS
from pipeline.classify.model.runtime import cpu_bf16_ok, length_sorted_batches
from pipeline.classify.training import headfit

log = logging.getLogger(__name__)

L2 = 1e-3  # per-row penalty of the refitted heads: the strength the leave-one-source-out tables used


@torch.inference_mode()
def extract_features(
    model: DualHeadClassifier,
    tok,
    texts: list[str],
    max_length: int,
    device: torch.device,
    batch_size: int = 64,
    label: str = "",
) -> np.ndarray:
    """Mean-pooled final hidden states of every text (bf16 where the machine has it), with progress lines."""
    enc = tok(texts, truncation=True, max_length=max_length, add_special_tokens=False)["input_ids"]
    feats = np.zeros((len(texts), model.backbone.config.hidden_size), dtype=np.float32)
    use_bf16 = device.type == "cuda" or cpu_bf16_ok()
    t0, done = time.monotonic(), 0
    for b, (idx, ids, mask) in enumerate(length_sorted_batches(enc, batch_size, tok.pad_token_id)):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            feats[idx] = model.features(ids.to(device), mask.to(device)).cpu().numpy()
        done += len(idx)
        if b % 25 == 0:
            log.info(
                "features %s: %d/%d (%.0f texts/s)", label, done, len(texts), done / max(time.monotonic() - t0, 1e-9)
            )
    return feats


def class_weights(labels: list[str], names: list[str]) -> torch.Tensor:
    """Inverse-frequency weights, square-rooted so rare classes help without dominating."""
    counts = np.array([max(1, labels.count(n)) for n in names], dtype=np.float64)
    w = np.sqrt(counts.sum() / (len(names) * counts))
    return torch.tensor(w / w.mean(), dtype=torch.float32)


def refit_topic_head(
    model: DualHeadClassifier, tok, topic: TaskData, max_length: int, device: torch.device, source_w: float = 0.0
) -> None:
    """The topic head refitted by logistic regression on the model's features of every topic training row."""
    model.to(device).eval()
    x = extract_features(model, tok, topic.train["text"].tolist(), max_length, device, label="topic/train")
    y = np.array([TOPICS.index(v) for v in topic.train["label"]])
    w = row_weights(topic.train, class_w=False, source_w=source_w)
    head, _ = headfit.fit_linear(x, y, range(len(TOPICS)), headfit.c_for_l2(L2, len(x)), sample_weight=w)
    head.copy_into(model.topic_head)
    log.info("refitted topic head on %d rows of %d sources", len(topic.train), topic.train["source"].nunique())
