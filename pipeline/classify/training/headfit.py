"""One fitter for every logistic head: scikit-learn's logistic regression, C chosen on a validation split.

Used by the ``heads`` and ``blend`` recipes, the ``compress`` recipe's topic refit, the entity head, the learning
peers and the benches, so that what a bench measured is what ships. A head is returned as ``LinearHead``
(``logits = x @ weight.T + bias`` on raw features, standardisation folded in): what ``nn.Linear`` holds.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.classify.model.labels import SENTIMENTS

log = logging.getLogger(__name__)

ABSENT_BIAS = -30.0  # a class missing from a small training sample gets a row that is never chosen


@dataclass(frozen=True)
class LinearHead:
    """``logits = x @ weight.T + bias`` on raw (unstandardised) features: what ``nn.Linear`` holds."""

    weight: np.ndarray  # (classes, features)
    bias: np.ndarray  # (classes,)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return x @ self.weight.T + self.bias

    @classmethod
    def of(cls, linear) -> LinearHead:  # linear: torch.nn.Linear
        """The head a model holds, as arrays (float64)."""
        return cls(linear.weight.detach().cpu().double().numpy(), linear.bias.detach().cpu().double().numpy())

    def copy_into(self, linear) -> None:  # linear: torch.nn.Linear
        """Write this head into a model's linear layer (its dtype kept)."""
        import torch

        with torch.no_grad():
            linear.weight.copy_(torch.tensor(self.weight, dtype=linear.weight.dtype))
            linear.bias.copy_(torch.tensor(self.bias, dtype=linear.bias.dtype))


def logistic(
    x: np.ndarray,
    y: np.ndarray,
    Cs: Sequence[float] | float,
    *,
    val: tuple[np.ndarray, np.ndarray] | None = None,
    sample_weight: np.ndarray | None = None,
    class_weight: str | None = None,
    scoring: str = "f1_macro",
    max_iter: int = 3000,
):
    """A fitted scikit-learn model on the training rows only: one ``C``, or the best of ``Cs`` on ``val``.

    ``LogisticRegressionCV`` over a predefined split (train, then validation) with ``refit=False`` keeps the
    coefficients fitted on the training rows at the chosen C, so the validation split stays unseen by the
    model (the temperature is fitted on it afterwards). Its ``C_``/``scores_`` say what was chosen.
    """
    from scipy import sparse
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.model_selection import PredefinedSplit

    if np.isscalar(Cs):
        model = LogisticRegression(C=float(Cs), max_iter=max_iter, class_weight=class_weight)
        return model.fit(x, y, sample_weight=sample_weight)
    if val is None:
        raise ValueError("choosing C among several needs a validation split (val)")
    x_va, y_va = val
    n_tr, n_va = x.shape[0], x_va.shape[0]  # dense or sparse (TF-IDF) rows
    fold = np.r_[np.full(n_tr, -1), np.zeros(n_va, dtype=int)]
    weights = None if sample_weight is None else np.r_[sample_weight, np.ones(n_va)]
    model = LogisticRegressionCV(
        Cs=list(Cs),
        l1_ratios=(0.0,),
        cv=PredefinedSplit(fold),
        scoring=scoring,
        refit=False,
        max_iter=max_iter,
        class_weight=class_weight,
        use_legacy_attributes=False,
    )
    xs = sparse.vstack([x, x_va]).tocsr() if sparse.issparse(x) else np.vstack([x, x_va])
    model.fit(xs, np.r_[np.asarray(y), np.asarray(y_va)], sample_weight=weights)
    for c, s in zip(Cs, np.ravel(model.scores_)):
        log.info("  C=%g validation %s=%.4f", c, scoring, s)
    return model


def chosen_c(model) -> float:
    """The C a fitted ``logistic`` model uses."""
    return float(np.ravel(model.C_)[0]) if hasattr(model, "C_") else float(model.C)


def validation_score(model) -> float | None:
    """The chosen C's validation score, where C was chosen."""
    return float(np.max(model.scores_)) if hasattr(model, "scores_") else None


def fit_linear(
    x: np.ndarray,
    y: Sequence,
    names: Sequence,
    Cs: Sequence[float] | float,
    **kw,
) -> tuple[LinearHead, dict]:
    """A linear head over ``names`` (labels, or class indices): standardised features, ``logistic``, the scaling
    folded back in. ``kw`` as ``logistic``, its ``val`` on raw features too."""
    mu, sd = x.mean(0), x.std(0) + 1e-6
    if kw.get("val") is not None:
        kw["val"] = ((kw["val"][0] - mu) / sd, kw["val"][1])
    model = logistic((x - mu) / sd, np.asarray(y), Cs, **kw)
    classes = list(model.classes_)
    coef = model.coef_ if len(classes) > 2 else np.vstack([-model.coef_[0], model.coef_[0]]) / 2
    icpt = model.intercept_ if len(classes) > 2 else np.array([-model.intercept_[0], model.intercept_[0]]) / 2
    weight = np.zeros((len(names), x.shape[1]))
    bias = np.full(len(names), ABSENT_BIAS)
    for row, name in enumerate(names):
        if name in classes:
            weight[row] = coef[classes.index(name)] / sd
            bias[row] = icpt[classes.index(name)] - weight[row] @ mu
    info = {"C": chosen_c(model)}
    if (score := validation_score(model)) is not None:
        info[f"val_{kw.get('scoring', 'f1_macro')}"] = score
    return LinearHead(weight=weight, bias=bias), info


def c_for_l2(l2: float, rows: int) -> float:
    """scikit-learn's C for a mean per-row loss plus ``l2 * |W|^2``: the strength the transfer tables used."""
    return 1.0 / (2.0 * l2 * rows)


def blend(own: LinearHead, refit: LinearHead, alpha: float, neutral_offset: float = 0.0) -> LinearHead:
    """``(1 - alpha) * own + alpha * refit``, then the neutral logit lowered by ``neutral_offset``.

    Both heads read the same features, so the blend of their logits is itself one linear head: inference costs
    what it did. Blending logits equals blending log-probabilities up to a per-row constant, which no argmax sees.
    """
    weight = (1 - alpha) * own.weight + alpha * refit.weight
    bias = (1 - alpha) * own.bias + alpha * refit.bias  # a new array: the inputs stay as they are
    bias[SENTIMENTS.index("neutral")] -= neutral_offset
    return LinearHead(weight=weight, bias=bias)
