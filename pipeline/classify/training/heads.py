"""The ``heads`` recipe: the backbone stays frozen; a logistic regression per task on its mean-pooled features.

Regularisation is chosen on the validation split; the weights become the linear heads. Minutes on CPU: the
weekly run's default and the tests' tiny models.
"""

from __future__ import annotations

import logging

import torch

from pipeline.classify.datasets.data import TaskData
from pipeline.classify.model.architecture import DualHeadClassifier
from pipeline.classify.model.labels import SENTIMENTS, TOPICS
from pipeline.classify.training import headfit
from pipeline.classify.training.arguments import RecipeArguments
from pipeline.classify.training.features import extract_features

log = logging.getLogger(__name__)

C_GRID = (0.01, 0.03, 0.1, 0.3)


def train_heads(
    model: DualHeadClassifier, tok, sent: TaskData, topic: TaskData, args: RecipeArguments, device: torch.device
) -> dict:
    model.to(device).eval()
    out = {}
    for name, td, head, names, scoring in (
        ("sentiment", sent, model.sentiment_head, SENTIMENTS, "f1_macro"),
        ("topic", topic, model.topic_head, TOPICS, "accuracy"),
    ):
        x_tr = extract_features(model, tok, td.train["text"].tolist(), args.max_length, device, label=f"{name}/train")
        x_va = extract_features(model, tok, td.val["text"].tolist(), args.max_length, device, label=f"{name}/val")
        log.info("fitting %s head", name)
        fitted, info = headfit.fit_linear(
            x_tr,
            td.train["label"].to_numpy(),
            names,
            C_GRID,
            val=(x_va, td.val["label"].to_numpy()),
            class_weight="balanced",
            scoring=scoring,
        )
        fitted.copy_into(head)
        out[name] = info
    return out
