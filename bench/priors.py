"""Class priors of a stream, re-estimated from unlabeled text (Saerens, Latinne & Decaestecker, 2002).

A classifier trained on one class mix and applied to a stream with another one is biased toward the
training mix. Given its posteriors on unlabeled stream texts and the prior it was trained under, EM finds
the stream's prior and the posteriors adjusted to it: p'(y|x) ~ p(y|x) * pi_stream(y) / pi_train(y).
Pure functions over arrays; ``bench.transfer`` measures whether it helps on sources the model never saw.
"""

from __future__ import annotations

import numpy as np


def adjust(probs: np.ndarray, train_prior: np.ndarray, new_prior: np.ndarray) -> np.ndarray:
    """Posteriors under ``new_prior`` instead of ``train_prior`` (rows sum to 1)."""
    p = probs * (np.asarray(new_prior) / np.asarray(train_prior))[None, :]
    return p / p.sum(1, keepdims=True)


def em_prior(
    probs: np.ndarray, train_prior: np.ndarray, max_iter: int = 100, tol: float = 1e-6, floor: float = 0.02
) -> np.ndarray:
    """The stream's class prior by EM over the model's posteriors ``probs`` (n, k).

    ``floor`` keeps every class possible: a small sample must not zero a class out for good.
    """
    train_prior = np.asarray(train_prior, dtype=np.float64)
    prior = train_prior.copy()
    for _ in range(max_iter):
        new = adjust(probs, train_prior, prior).mean(0)
        new = floor + (1 - floor * len(new)) * new  # every class keeps at least ``floor``
        if np.abs(new - prior).max() < tol:
            return new
        prior = new
    return prior


def logit_shift(train_prior: np.ndarray, new_prior: np.ndarray) -> np.ndarray:
    """The same adjustment as a bias added to the logits: log(new) - log(train)."""
    return np.log(np.asarray(new_prior)) - np.log(np.asarray(train_prior))
