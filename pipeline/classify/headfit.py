"""A linear sentiment head fitted on frozen features: the leave-one-source-out search and the ``blend`` stage.

Multinomial logistic regression by L-BFGS with per-row weights, an optional fixed per-row logit offset
(``-30`` on neutral takes it out of a row's softmax) and optional per-source intercepts. One implementation
serves ``bench.transfer`` (which chooses the recipe leaving sources out) and ``train --method blend`` (which
ships it), so that what was measured is what is shipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.classify.labels import SENTIMENTS


@dataclass(frozen=True)
class LinearHead:
    """``logits = x @ weight.T + bias`` on raw (unstandardised) features: what ``nn.Linear`` holds."""

    weight: np.ndarray  # (classes, features)
    bias: np.ndarray  # (classes,)

    def __call__(self, x: np.ndarray, offset: np.ndarray | None = None) -> np.ndarray:
        z = x @ self.weight.T + self.bias
        return z if offset is None else z + offset

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


def fit_softmax(
    x: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    l2: float = 1e-3,
    offset: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    iters: int = 200,
    classes: int = 3,
) -> LinearHead:
    """Fit on standardised ``x`` (row weights ``w``, optional fixed logit ``offset``), fold the scaling back in.

    ``groups`` (an integer source id per row): each source also learns its own class intercepts (lightly
    penalised deviations from the shared ones), so that the shared weights learn what the text says, not how
    often each source uses each label; the returned head has the shared intercepts only.
    """
    import torch

    mu, sd = x.mean(0), x.std(0) + 1e-6
    xt = torch.tensor((x - mu) / sd, dtype=torch.float32)
    yt = torch.tensor(np.asarray(y), dtype=torch.long)
    wt = torch.tensor(np.asarray(w), dtype=torch.float32)
    off = torch.zeros(len(x), classes) if offset is None else torch.tensor(offset, dtype=torch.float32)
    lin = torch.nn.Linear(x.shape[1], classes)
    torch.nn.init.zeros_(lin.weight)
    torch.nn.init.zeros_(lin.bias)
    params = list(lin.parameters())
    if groups is not None:
        gt = torch.tensor(np.asarray(groups), dtype=torch.long)
        gbias = torch.zeros(int(gt.max()) + 1, classes, requires_grad=True)
        params.append(gbias)
    opt = torch.optim.LBFGS(params, max_iter=iters, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        z = lin(xt) + off + (gbias[gt] if groups is not None else 0.0)
        loss = (torch.nn.functional.cross_entropy(z, yt, reduction="none") * wt).mean()
        loss = loss + l2 * lin.weight.pow(2).sum()
        if groups is not None:
            loss = loss + 1e-3 * gbias.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    W, b = lin.weight.detach().numpy().astype(np.float64), lin.bias.detach().numpy().astype(np.float64)
    weight = W / sd
    return LinearHead(weight=weight, bias=b - weight @ mu)


def polar_offset(source: pd.Series, polar_only: tuple[str, ...] | list[str]) -> np.ndarray:
    """``-30`` on the neutral logit of rows from ``polar_only`` sources: they teach direction, not neutrality."""
    off = np.zeros((len(source), len(SENTIMENTS)), np.float32)
    off[source.isin(list(polar_only)).to_numpy(), SENTIMENTS.index("neutral")] = -30.0
    return off


def blend(own: LinearHead, refit: LinearHead, alpha: float, neutral_offset: float = 0.0) -> LinearHead:
    """``(1 - alpha) * own + alpha * refit``, then the neutral logit lowered by ``neutral_offset``.

    Both heads read the same features, so the blend of their logits is itself one linear head: inference costs
    what it did. Blending logits equals blending log-probabilities up to a per-row constant, which no argmax sees.
    """
    weight = (1 - alpha) * own.weight + alpha * refit.weight
    bias = (1 - alpha) * own.bias + alpha * refit.bias  # a new array: the inputs stay as they are
    bias[SENTIMENTS.index("neutral")] -= neutral_offset
    return LinearHead(weight=weight, bias=bias)
