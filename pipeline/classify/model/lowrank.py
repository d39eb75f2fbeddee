"""Low-rank factors of a weight difference: shared by the compress stage (train) and the export (shipped).

One module so that the factors a compress stage keeps are, bit for bit, the ones the export finds again.
"""

from __future__ import annotations

import torch

LOWRANK_TOLERANCE = 1e-3  # relative Frobenius error of the rank-r factors against the exact difference


def truncated_svd(diff: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor, float, float] | None:
    """fp32 factors (A, B) of ``diff``'s best rank-r approximation A @ B (singular values split evenly), with the
    squared singular values kept and in all; None where rank r would not be smaller than ``diff`` itself."""
    if rank <= 0 or diff.ndim != 2 or rank * sum(diff.shape) >= diff.numel():
        return None
    u, s, vh = torch.linalg.svd(diff.to(torch.float32), full_matrices=False)
    root = s[:rank].sqrt()
    return u[:, :rank] * root, root[:, None] * vh[:rank], float(s[:rank].pow(2).sum()), float(s.pow(2).sum())


def lowrank_factors(diff: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """fp16 factors (A, B) with A @ B == ``diff`` to within LOWRANK_TOLERANCE, or None if ``diff`` is not rank-r.

    A merged LoRA update is exactly low rank, so its two small factors carry it; a fully trained block is not,
    and ships whole.
    """
    split = truncated_svd(diff, rank)
    if split is None:
        return None
    a, b = split[0].to(torch.float16), split[1].to(torch.float16)
    err = torch.linalg.matrix_norm(diff - a.float() @ b.float()) / torch.linalg.matrix_norm(diff).clamp(min=1e-12)
    return (a.contiguous(), b.contiguous()) if float(err) <= LOWRANK_TOLERANCE else None
