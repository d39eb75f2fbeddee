"""Calibrated probabilities: one temperature per head, fitted on validation, and the ECE that judges it.

``p_negative``/``p_positive`` feed the mean-sentiment trend and any threshold
a user sets, so they should mean what they say. Temperature scaling (Guo et
al., 2017) divides the logits by a scalar T fitted to minimise the negative
log-likelihood on the validation split: the argmax (and so every label and
macro-F1) is unchanged, only the confidence moves. T is stored in the
model's metadata and applied wherever probabilities are produced.
"""

from __future__ import annotations

import numpy as np
import torch


def fit_temperature(logits: np.ndarray, labels: np.ndarray, max_iter: int = 200) -> float:
    """The T > 0 minimising NLL of softmax(logits / T) on (logits, labels)."""
    x = torch.tensor(np.asarray(logits, dtype=np.float64))
    y = torch.tensor(np.asarray(labels, dtype=np.int64))
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(x / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.detach().exp())
    return min(max(t, 0.05), 20.0)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Top-label expected calibration error with ``bins`` equal-width confidence bins."""
    probs = np.asarray(probs)
    labels = np.asarray(labels)
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        in_bin = (conf > lo) & (conf <= hi) if lo > 0 else (conf >= lo) & (conf <= hi)
        if in_bin.any():
            total += in_bin.mean() * abs(correct[in_bin].mean() - conf[in_bin].mean())
    return float(total)
