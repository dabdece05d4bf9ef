"""Triton kernels for the gradient penalty: the three memory-bound passes of WGAN-GP / R1.

    interpolate:            x_hat[b, i] = fake[b, i] + alpha[b] * (real[b, i] - fake[b, i])
    sum_squares_per_sample: s[b]        = sum_i g[b, i]^2      (fp32 accumulation; fp64 for fp64)
    norm_backward:          y[b, i]     = gn[b] / norm[b] * g[b, i]   (0 where norm[b] == 0)

Launchers take contiguous [B, N] rows (ganfast/ops prepares them) and return new tensors.
Pure kernels and launchers only: which backend runs is decided in ganfast/ops.
"""

import torch
import triton
import triton.language as tl

from ..ops.layout import acc_dtype

# One program moves BLOCK elements per step; a sum-of-squares program folds STEPS of them
# so that the partial-sum buffer stays small next to the input.
BLOCK = 1024
SUM_STEPS = 8
MAX_GRID_Y = 65535  # CUDA's limit on grid dim 1; launchers split bigger batches


@triton.jit
def _interpolate_kernel(real_ptr, fake_ptr, alpha_ptr, out_ptr, row, BLOCK: tl.constexpr):
    # Program (c, b): block c of sample b's row, which starts at b * row; int64 offsets keep
    # tensors past 2^31 elements correct.
    b = tl.program_id(1)
    cols = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < row
    offs = b.to(tl.int64) * row + cols
    alpha = tl.load(alpha_ptr + b)
    real = tl.load(real_ptr + offs, mask=mask).to(alpha.dtype)
    fake = tl.load(fake_ptr + offs, mask=mask).to(alpha.dtype)
    x_hat = fake + alpha * (real - fake)
    tl.store(out_ptr + offs, x_hat.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _sum_squares_kernel(x_ptr, partial_ptr, row, n_chunks,
                        BLOCK: tl.constexpr, STEPS: tl.constexpr):
    # Program (c, b) writes sum(x[b, chunk c]^2) to partial[b, c]; the caller adds the
    # partials (deterministic, unlike atomics).
    b = tl.program_id(1).to(tl.int64)
    chunk = tl.program_id(0).to(tl.int64)
    acc = tl.zeros([BLOCK], dtype=partial_ptr.dtype.element_ty)
    for step in range(STEPS):
        cols = (chunk * STEPS + step) * BLOCK + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + b * row + cols, mask=cols < row, other=0.0).to(acc.dtype)
        acc += x * x
    tl.store(partial_ptr + b * n_chunks + chunk, tl.sum(acc, axis=0))


@triton.jit
def _norm_backward_kernel(x_ptr, grad_norm_ptr, norm_ptr, out_ptr, row, BLOCK: tl.constexpr):
    b = tl.program_id(1)
    cols = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < row
    offs = b.to(tl.int64) * row + cols
    # d||x||/dx = x / ||x||, taken as 0 at x = 0 (as torch does): no 0/0 for a zero gradient.
    # A NaN norm is != 0 and propagates.
    norm = tl.load(norm_ptr + b)
    coef = tl.where(norm != 0, tl.load(grad_norm_ptr + b) / tl.where(norm != 0, norm, 1), 0)
    x = tl.load(x_ptr + offs, mask=mask).to(coef.dtype)
    tl.store(out_ptr + offs, (coef * x).to(out_ptr.dtype.element_ty), mask=mask)


def _batch_slices(batch: int):
    """Sample ranges of at most MAX_GRID_Y, one launch each (grid dim 1 holds the sample)."""
    return [slice(start, min(start + MAX_GRID_Y, batch)) for start in range(0, batch, MAX_GRID_Y)]


def interpolate(real: torch.Tensor, fake: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """real, fake: [B, N] contiguous, same dtype; alpha: [B] in the accumulation dtype."""
    out = torch.empty_like(real)
    batch, row = real.shape
    if out.numel():
        for s in _batch_slices(batch):
            grid = (triton.cdiv(row, BLOCK), s.stop - s.start)
            _interpolate_kernel[grid](real[s], fake[s], alpha[s], out[s], row, BLOCK=BLOCK)
    return out


def sum_squares_per_sample(x: torch.Tensor) -> torch.Tensor:
    """x: [B, N] contiguous -> [B] sums of squares in the accumulation dtype."""
    batch, row = x.shape
    acc = acc_dtype(x.dtype)
    if x.numel() == 0:
        return torch.zeros(batch, dtype=acc, device=x.device)
    n_chunks = triton.cdiv(row, BLOCK * SUM_STEPS)
    partial = torch.empty(batch, n_chunks, dtype=acc, device=x.device)
    for s in _batch_slices(batch):
        _sum_squares_kernel[(n_chunks, s.stop - s.start)](x[s], partial[s], row, n_chunks,
                                                          BLOCK=BLOCK, STEPS=SUM_STEPS)
    return partial.sum(dim=1)


def norm_backward(grad_norm: torch.Tensor, x: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
    """x: [B, N] contiguous; grad_norm, norm: [B] in the accumulation dtype."""
    out = torch.empty_like(x)
    batch, row = x.shape
    if out.numel():
        for s in _batch_slices(batch):
            grid = (triton.cdiv(row, BLOCK), s.stop - s.start)
            _norm_backward_kernel[grid](x[s], grad_norm[s], norm[s], out[s], row, BLOCK=BLOCK)
    return out
