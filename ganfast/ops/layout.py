"""Viewing [B, ...] tensors as [B, N] rows in memory order, and back.

Per-sample ops (interpolation, per-sample norms, per-sample scaling) do not care about the
order of elements inside a sample, so a channels_last tensor is as good as a contiguous one:
permuting its non-batch dims by decreasing stride gives a contiguous view, no copy. Only a
tensor that is not dense with the batch outermost (a slice, an expanded view) is copied.
"""

import math

import torch


def row_order(t: torch.Tensor) -> list[int]:
    """Non-batch dims of `t` from outermost to innermost in memory."""
    return sorted(range(1, t.dim()), key=lambda d: -t.stride(d))


def to_rows(t: torch.Tensor, order: list[int]) -> torch.Tensor:
    """`t` as a contiguous [B, N] tensor whose rows follow `order` (a view when it can be)."""
    dense = t if t.is_contiguous() else t.permute(0, *order).contiguous()
    return dense.view(t.shape[0], math.prod(t.shape[1:]))


def from_rows(rows: torch.Tensor, like: torch.Tensor, order: list[int]) -> torch.Tensor:
    """Undo to_rows: `rows` back to the shape of `like`, with `like`'s memory layout."""
    if like.is_contiguous():  # to_rows took the plain view
        result = rows.view(like.shape)
    else:
        permuted_shape = [like.shape[0]] + [like.shape[d] for d in order]
        inverse = [0] * like.dim()
        for position, dim in enumerate([0, *order]):
            inverse[dim] = position
        result = rows.view(permuted_shape).permute(inverse)
    if result.stride() != torch.empty_like(like, device="meta").stride():
        # `like` was not dense; hand back the layout empty_like promises (what fake impls say).
        result = torch.empty_like(like).copy_(result)
    return result


def per_sample(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A [B] tensor shaped to broadcast against `like` ([B, 1, 1, ...])."""
    return v.view(-1, *([1] * (like.dim() - 1)))


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype ganfast accumulates in: fp64 for fp64 inputs, fp32 for everything else."""
    return torch.float64 if dtype == torch.float64 else torch.float32
