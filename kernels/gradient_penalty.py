"""Triton kernels for the gradient penalty: the three memory-bound passes of WGAN-GP / R1.

    interpolate:            x_hat[b, i] = fake[b, i] + alpha[b] * (real[b, i] - fake[b, i])
    sum_squares_per_sample: s[b]        = sum_i g[b, i]^2      (fp32 accumulation; fp64 for fp64)
    scale_per_sample:       y[b, i]     = coef[b] * g[b, i]

Launchers take contiguous [B, N] rows (ganfast/ops prepares them) and return new tensors.
Pure kernels and launchers only: which backend runs is decided in ganfast/ops.
"""

import torch
import triton
import triton.language as tl

# One program moves BLOCK elements per step; a sum-of-squares program folds STEPS of them
# so that the partial-sum buffer stays small next to the input.
BLOCK = 1024
SUM_STEPS = 8
MAX_GRID_Y = 65535  # CUDA's limit on grid dims 1 and 2; kernels loop over samples beyond it


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


@triton.jit
def _interpolate_kernel(real_ptr, fake_ptr, alpha_ptr, out_ptr, batch, row, BLOCK: tl.constexpr):
    # Sample b's row starts at b * row; int64 offsets keep rows past 2^31 elements correct.
    cols = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < row
    for b in range(tl.program_id(1), batch, tl.num_programs(1)):
        offs = b.to(tl.int64) * row + cols
        alpha = tl.load(alpha_ptr + b)
        real = tl.load(real_ptr + offs, mask=mask).to(alpha.dtype)
        fake = tl.load(fake_ptr + offs, mask=mask).to(alpha.dtype)
        x_hat = fake + alpha * (real - fake)
        tl.store(out_ptr + offs, x_hat.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _sum_squares_kernel(x_ptr, partial_ptr, batch, row, n_chunks,
                        BLOCK: tl.constexpr, STEPS: tl.constexpr):
    # Program (c, b) writes sum(x[b, chunk c]^2) to partial[b, c]; the caller adds the
    # partials (deterministic, unlike atomics).
    chunk = tl.program_id(0).to(tl.int64)
    for b in range(tl.program_id(1), batch, tl.num_programs(1)):
        row_start = b.to(tl.int64) * row
        acc = tl.zeros([BLOCK], dtype=partial_ptr.dtype.element_ty)
        for step in range(STEPS):
            cols = (chunk * STEPS + step) * BLOCK + tl.arange(0, BLOCK)
            x = tl.load(x_ptr + row_start + cols, mask=cols < row, other=0.0).to(acc.dtype)
            acc += x * x
        tl.store(partial_ptr + b.to(tl.int64) * n_chunks + chunk, tl.sum(acc, axis=0))


@triton.jit
def _scale_kernel(x_ptr, coef_ptr, out_ptr, batch, row, BLOCK: tl.constexpr):
    cols = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < row
    for b in range(tl.program_id(1), batch, tl.num_programs(1)):
        offs = b.to(tl.int64) * row + cols
        coef = tl.load(coef_ptr + b)
        x = tl.load(x_ptr + offs, mask=mask).to(coef.dtype)
        tl.store(out_ptr + offs, (coef * x).to(out_ptr.dtype.element_ty), mask=mask)


def _row_grid(batch: int, row: int, per_program: int) -> tuple:
    return (max(1, triton.cdiv(row, per_program)), max(1, min(batch, MAX_GRID_Y)))


def interpolate(real: torch.Tensor, fake: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """real, fake: [B, N] contiguous, same dtype; alpha: [B] in the accumulation dtype."""
    out = torch.empty_like(real)
    if real.numel():
        batch, row = real.shape
        _interpolate_kernel[_row_grid(batch, row, BLOCK)](real, fake, alpha, out, batch, row,
                                                           BLOCK=BLOCK)
    return out


def sum_squares_per_sample(x: torch.Tensor) -> torch.Tensor:
    """x: [B, N] contiguous -> [B] sums of squares in the accumulation dtype."""
    batch, row = x.shape
    acc_dtype = _acc_dtype(x.dtype)
    if x.numel() == 0:
        return torch.zeros(batch, dtype=acc_dtype, device=x.device)
    grid = _row_grid(batch, row, BLOCK * SUM_STEPS)
    partial = torch.empty(batch, grid[0], dtype=acc_dtype, device=x.device)
    _sum_squares_kernel[grid](x, partial, batch, row, grid[0], BLOCK=BLOCK, STEPS=SUM_STEPS)
    return partial.sum(dim=1)


def scale_per_sample(x: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
    """x: [B, N] contiguous; coef: [B] in the accumulation dtype -> coef[b] * x[b]."""
    out = torch.empty_like(x)
    if x.numel():
        batch, row = x.shape
        _scale_kernel[_row_grid(batch, row, BLOCK)](x, coef, out, batch, row, BLOCK=BLOCK)
    return out
