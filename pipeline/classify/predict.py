"""Batched inference: length-sorted batches, inference mode, CUDA half precision when present."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline.classify import modeldir
from pipeline.classify.model import DualHeadClassifier
from pipeline.classify.runtime import cpu_bf16_ok, length_sorted_batches, pick_device

log = logging.getLogger(__name__)


@dataclass
class Predictions:
    sentiment: list[str]
    probs: np.ndarray  # (n, 3) in the order of meta labels.sentiment
    topic: list[str]
    topic_confidence: np.ndarray

    def rows(self) -> list[dict]:
        return [
            {
                "sentiment": s,
                "p_negative": float(p[0]),
                "p_neutral": float(p[1]),
                "p_positive": float(p[2]),
                "topic": t,
                "topic_confidence": float(c),
            }
            for s, p, t, c in zip(self.sentiment, self.probs, self.topic, self.topic_confidence)
        ]


class Classifier:
    """A loaded model directory, ready to label texts."""

    def __init__(
        self, model: DualHeadClassifier, meta: dict, tokenizer, device: torch.device, autocast_dtype: torch.dtype | None
    ) -> None:
        self.model, self.meta, self.tokenizer, self.device = model, meta, tokenizer, device
        self.autocast_dtype = autocast_dtype
        self.sentiments = meta["labels"]["sentiment"]
        self.topics = meta["labels"]["topic"]
        if self.sentiments != ["negative", "neutral", "positive"]:
            raise ValueError(f"unexpected sentiment labels {self.sentiments}")
        self.max_length = int(meta.get("max_length", 96))

    @classmethod
    def load(cls, model_dir: str | Path, device: str | None = None, precision: str = "auto") -> Classifier:
        """``precision``: auto (fp16 on CUDA, bf16 autocast on capable CPUs), fp32, bf16, fp16."""
        dev = pick_device(device)
        if precision == "auto":
            precision = "fp16" if dev.type == "cuda" else ("bf16" if cpu_bf16_ok() else "fp32")
        weights_dtype = torch.float16 if (dev.type == "cuda" and precision == "fp16") else None
        model, meta = modeldir.load(model_dir, torch_dtype=weights_dtype)
        model.to(dev)
        if weights_dtype is not None:
            model.half()
        tok = modeldir.load_tokenizer(model_dir)
        autocast = torch.bfloat16 if precision == "bf16" else None
        log.info("loaded model %s on %s (%s)", meta.get("version"), dev, precision)
        return cls(model, meta, tok, dev, autocast)

    @torch.inference_mode()
    def predict(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> Predictions:
        n = len(texts)
        probs = np.zeros((n, len(self.sentiments)), dtype=np.float32)
        topic_probs = np.zeros((n, len(self.topics)), dtype=np.float32)
        if n == 0:
            return Predictions([], probs, [], np.zeros(0, dtype=np.float32))
        enc = self.tokenizer(list(texts), truncation=True, max_length=self.max_length, add_special_tokens=False)
        t0, done = time.monotonic(), 0
        for b, (idx, batch, mask) in enumerate(
            length_sorted_batches(enc["input_ids"], batch_size, self.tokenizer.pad_token_id)
        ):
            batch, mask = batch.to(self.device), mask.to(self.device)
            if self.autocast_dtype is not None:
                with torch.autocast(self.device.type, dtype=self.autocast_dtype):
                    out = self.model(batch, mask)
            else:
                out = self.model(batch, mask)
            probs[idx] = torch.softmax(out["sentiment_logits"].float(), -1).cpu().numpy()
            topic_probs[idx] = torch.softmax(out["topic_logits"].float(), -1).cpu().numpy()
            done += len(idx)
            if progress and b % 20 == 0:
                rate = done / max(time.monotonic() - t0, 1e-9)
                log.info("predicted %d/%d (%.0f texts/s)", done, n, rate)
        sentiment = [self.sentiments[i] for i in probs.argmax(1)]
        topic = [self.topics[i] for i in topic_probs.argmax(1)]
        return Predictions(sentiment, probs, topic, topic_probs.max(1))
