"""The experiments' softmax fitter: per-row logit offsets and per-source intercepts, which scikit-learn lacks.

``bench.transfer`` used it to try sources that train the direction only (``-30`` on neutral takes it out of a
row's softmax) and per-source class intercepts; neither won, and no shipped model uses them, so the product's
heads are fitted by ``pipeline.classify.training.headfit`` (scikit-learn) and this stays with the experiments.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.classify.model.labels import SENTIMENTS
from pipeline.classify.training.headfit import LinearHead


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
