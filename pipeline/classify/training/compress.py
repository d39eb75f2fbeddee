"""The ``compress`` recipe: an all-layer fine-tune brought within a compact delta.

Each weight matrix's difference from the base model is truncated to rank ``compress_rank`` (SVD), vectors kept
exact; then the topic head is refitted on the new features. A fine-tune of every layer changes every weight a
little; its difference is not low rank, and whole it is the model's full size, which does not ship. The leading
singular directions carry most of what it learnt; the rest costs held-out accuracy, which the evaluation of this
stage measures. The topic head (many classes, more sensitive to the shifted features) is refitted on every topic
training row; the sentiment head is kept (``blend`` refits it next).
"""

from __future__ import annotations

import logging
import time

import torch

from pipeline.classify.datasets.data import TaskData
from pipeline.classify.model import base as base_model
from pipeline.classify.model.architecture import DualHeadClassifier
from pipeline.classify.model.lowrank import truncated_svd
from pipeline.classify.training.arguments import RecipeArguments
from pipeline.classify.training.features import refit_topic_head

log = logging.getLogger(__name__)


def compress_backbone(
    model: DualHeadClassifier,
    tok,
    topic: TaskData,
    args: RecipeArguments,
    device: torch.device,
    parent: dict,
    base_desc: str,
) -> dict:
    rank = int(args.compress_rank)
    base_backbone, _, _ = base_model.load(base_desc)
    base_state = base_backbone.state_dict()
    new_state, kept, total, n_matrices = {}, 0.0, 0.0, 0
    t0 = time.monotonic()
    for name, t in model.backbone.state_dict().items():
        diff = t.float() - base_state[name].float()
        split = truncated_svd(diff, rank)  # the same factors the export then finds exactly
        if split is not None:
            diff, kept, total, n_matrices = split[0] @ split[1], kept + split[2], total + split[3], n_matrices + 1
        new_state[name] = (base_state[name].float() + diff).to(t.dtype)
    model.backbone.load_state_dict(new_state)
    share = kept / total if total else 1.0
    log.info(
        "compressed %s: %d matrices to rank %d (%.1f %% of the difference's energy kept) in %.0f s",
        parent["version"],
        n_matrices,
        rank,
        100 * share,
        time.monotonic() - t0,
    )
    refit_topic_head(model, tok, topic, args.max_length, device)
    return {
        "compressed": parent["version"],
        "compress_rank": rank,
        "matrices": n_matrices,
        "energy_kept": round(share, 4),
        "topic_head_refit_rows": len(topic.train),
    }
