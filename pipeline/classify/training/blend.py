"""The ``blend`` recipe: the init model's backbone frozen; both heads refitted on its features of ``--data``.

The own heads learnt the conventions of the sources the backbone was tuned on; the refits, weighted as the
leave-one-source-out tables chose (classes balanced, sources by ``--source_weighting``), learn what the news
sources beside them say (``bench.distil`` for the expert-labelled news, ``bench.transfer --blend`` before it).
The sentiment refit is blended with the own head (weight ``head_blend``; one linear head either way, so inference
costs what it did), then its neutral logit is lowered by ``neutral_offset``. The topic head is refitted on the
topic sources of ``--data``, replacing the own one.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from pipeline.classify.datasets.data import SOURCE_POWER, TaskData, row_weights
from pipeline.classify.model.architecture import DualHeadClassifier
from pipeline.classify.model.labels import SENTIMENTS
from pipeline.classify.training import headfit
from pipeline.classify.training.arguments import RecipeArguments
from pipeline.classify.training.features import L2, extract_features, refit_topic_head

log = logging.getLogger(__name__)


def blend_heads(
    model: DualHeadClassifier,
    tok,
    sent: TaskData,
    topic: TaskData,
    args: RecipeArguments,
    device: torch.device,
    parent: dict,
) -> dict:
    model.to(device).eval()
    tr = sent.train
    x = extract_features(model, tok, tr["text"].tolist(), args.max_length, device, label="sentiment/train")
    y = np.array([SENTIMENTS.index(v) for v in tr["label"]])
    power = SOURCE_POWER[args.source_weighting]
    w = row_weights(tr, class_w=True, source_w=power)
    t0 = time.monotonic()
    refit, _ = headfit.fit_linear(x, y, range(len(SENTIMENTS)), headfit.c_for_l2(L2, len(x)), sample_weight=w)
    log.info(
        "refitted sentiment head on %d rows of %d sources in %.0f s",
        len(tr),
        tr["source"].nunique(),
        time.monotonic() - t0,
    )
    own = headfit.LinearHead.of(model.sentiment_head)
    headfit.blend(own, refit, args.head_blend, args.neutral_offset).copy_into(model.sentiment_head)
    log.info(
        "blended %s's sentiment head: refit weight %.2f, neutral logit -%.3f",
        parent["version"],
        args.head_blend,
        args.neutral_offset,
    )
    refit_topic_head(model, tok, topic, args.max_length, device, power)
    return {
        "head_blend": float(args.head_blend),
        "neutral_offset": float(args.neutral_offset),
        "blended": parent["version"],
        "refit_rows": len(tr),
        "refit_sources": sorted(tr["source"].unique()),
        "topic_head_refit_rows": len(topic.train),
        "topic_refit_sources": sorted(topic.train["source"].unique()),
    }
