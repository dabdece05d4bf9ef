"""Triton kernels for the gradient penalty: the memory-bound passes of WGAN-GP / R1.

    interpolate:   x_hat[b, i] = fake[b, i] + alpha[b] * (real[b, i] - fake[b, i])
    norm_penalty:  n[b] = sqrt(sum_i x[b, i]^2),  p = weight * mean_b (n[b] - center)^2
    norm_backward: y[b, i] = grad[b] * (slope + offset / n[b]) * x[b, i]   (0 where n[b] == 0)

norm_backward is the gradient of sum_b grad[b] * f(n[b]) for any f with f'(n) = slope * n +
offset: (slope, offset) = (0, 1) is the plain norm's backward, (2w/B, -2wc/B) the penalty's, so
the penalty's scalar backward folds into the one pass over x.

The launchers are the CUDA implementations of the ganfast:: ops (ganfast/ops registers them)
and take [B, ...] tensors in any layout: a sample that is one block of memory (contiguous,
channels_last, ...) is read in memory order without a copy. Kernels and launchers only: which
backend runs is decided in ganfast/ops.
"""

import torch
import triton
import triton.language as tl

from ganfast.ops.layout import acc_dtype, as_rows, matching_layout

from . import launch_on_input_device

# One program moves BLOCK elements per step; a sum-of-squares program folds SUM_STEPS of them
# so that the partial-sum buffer stays small next to the input.
BLOCK = 1024
SUM_STEPS = 8
MAX_GRID_Y = 65535  # CUDA's limit on grid dim 1; launchers split bigger batches
# The norms-and-penalty program walks [B, columns] in tiles of this size.
FINAL_BLOCK_B = 64
FINAL_BLOCK_C = 32
# Up to this many elements (and rows this short, so that no sample is a long serial loop),
# one program reads the whole input: there the launch, not the bytes, is the cost, and a
# second launch would double it.
SMALL_INPUT = 1 << 16
SMALL_ROW = 1 << 12


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
    # Program (c, b) writes sum(x[b, chunk c]^2) to partial[b, c]; the finalize program adds
    # the partials in a fixed order (deterministic, unlike atomics).
    b = tl.program_id(1).to(tl.int64)
    chunk = tl.program_id(0).to(tl.int64)
    acc = tl.zeros([BLOCK], dtype=partial_ptr.dtype.element_ty)
    for step in range(STEPS):
        cols = (chunk * STEPS + step) * BLOCK + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + b * row + cols, mask=cols < row, other=0.0).to(acc.dtype)
        acc += x * x
    tl.store(partial_ptr + b * n_chunks + chunk, tl.sum(acc, axis=0))


@triton.jit
def _norms_and_penalty_kernel(values_ptr, norm_ptr, penalty_ptr, batch, n_cols,
                              weight: tl.float64, center: tl.float64, SQUARE: tl.constexpr,
                              BLOCK_B: tl.constexpr, BLOCK_C: tl.constexpr):
    # One program: sums each row of a [B, n_cols] matrix (squared first when SQUARE: a small
    # input itself; else the partial sums of squares), then the [B]-sized tail (sqrt, minus
    # center, square, mean, weight) that eager code spends five launches on. The deviations
    # are summed in fp64: the mean loses nothing to rounding, and fp64 inputs keep their
    # precision.
    total = tl.zeros([BLOCK_B], dtype=tl.float64)
    for b0 in range(0, batch, BLOCK_B):
        rows = b0 + tl.arange(0, BLOCK_B)
        sums = tl.zeros([BLOCK_B], dtype=norm_ptr.dtype.element_ty)
        for c0 in range(0, n_cols, BLOCK_C):
            cols = c0 + tl.arange(0, BLOCK_C)
            tile = tl.load(values_ptr + rows[:, None].to(tl.int64) * n_cols + cols[None, :],
                           mask=(rows[:, None] < batch) & (cols[None, :] < n_cols),
                           other=0.0).to(sums.dtype)
            if SQUARE:
                tile = tile * tile
            sums += tl.sum(tile, axis=1)
        norms = tl.sqrt(sums)
        tl.store(norm_ptr + rows, norms, mask=rows < batch)
        deviation = tl.where(rows < batch, norms.to(tl.float64) - center, 0.0)
        total += deviation * deviation
    penalty = weight * tl.sum(total, axis=0) / batch
    tl.store(penalty_ptr, penalty.to(penalty_ptr.dtype.element_ty))


@triton.jit
def _norm_backward_kernel(x_ptr, grad_ptr, grad_stride, norm_ptr, out_ptr, row,
                          slope: tl.float64, offset: tl.float64, BLOCK: tl.constexpr):
    b = tl.program_id(1)
    cols = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < row
    offs = b.to(tl.int64) * row + cols
    # d n/dx = x / n, taken as 0 at x = 0 (as torch does): no 0/0 for a zero gradient.
    # A NaN norm is != 0 and propagates. grad may be a broadcast scalar (stride 0).
    norm = tl.load(norm_ptr + b)
    safe_norm = tl.where(norm != 0, norm, 1.0)
    coef = tl.load(grad_ptr + b * grad_stride) * (slope + offset / safe_norm)
    coef = tl.where(norm != 0, coef, 0.0).to(norm.dtype)
    x = tl.load(x_ptr + offs, mask=mask).to(coef.dtype)
    tl.store(out_ptr + offs, (coef * x).to(out_ptr.dtype.element_ty), mask=mask)


def _launch_chunks(*tensors):
    """(samples, tensors) for each launch: grid dim 1 holds the sample, so a batch past
    MAX_GRID_Y is cut into views of at most that many samples. A batch that fits (every GAN
    batch) takes the tensors themselves: a view costs about 1.4 us of host time, and these
    launchers run on tiny tensors, where host time is the cost."""
    batch = tensors[0].shape[0]
    if batch <= MAX_GRID_Y:
        return [(batch, tensors)] if batch else []
    return [(min(MAX_GRID_Y, batch - start), tuple(t[start:start + MAX_GRID_Y] for t in tensors))
            for start in range(0, batch, MAX_GRID_Y)]


def _row_length(x: torch.Tensor) -> int:
    return x.numel() // x.shape[0] if x.shape[0] else 0


def _check_per_sample(v: torch.Tensor, x: torch.Tensor, name: str) -> None:
    # The kernels index v[b] for every sample: a shorter v would be read past its end.
    if v.dim() != 1 or v.shape[0] != x.shape[0] or v.device != x.device:
        raise ValueError(f"ganfast triton: {name} must have shape [{x.shape[0]}] on {x.device}, "
                         f"got {list(v.shape)} on {v.device}")


@launch_on_input_device
def interpolate(real: torch.Tensor, fake: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """real, fake: [B, ...] of one dtype; alpha: [B] in the accumulation dtype."""
    if real.shape != fake.shape or real.dtype != fake.dtype or real.device != fake.device:
        raise ValueError("ganfast triton: real and fake must match in shape, dtype and device, "
                         f"got {list(real.shape)} {real.dtype} and {list(fake.shape)} {fake.dtype}")
    _check_per_sample(alpha, real, "alpha")
    real = as_rows(real)
    fake = matching_layout(fake, real)
    alpha = alpha.contiguous()
    out = torch.empty_like(real)
    row = _row_length(real)
    if out.numel():
        for samples, (r, f, a, o) in _launch_chunks(real, fake, alpha, out):
            _interpolate_kernel[(triton.cdiv(row, BLOCK), samples)](r, f, a, o, row, BLOCK=BLOCK)
    return out


@launch_on_input_device
def norm_penalty(x: torch.Tensor, weight: float, center: float):
    """x: [B, ...] -> (norms [B], weight * mean((norms - center)^2) as a 0-dim tensor), both in
    the accumulation dtype. One launch for a small input; else two: partial sums of squares,
    then the program that adds them and computes the tail."""
    x = as_rows(x)
    batch, row = x.shape[0], _row_length(x)
    acc = acc_dtype(x.dtype)
    norms = torch.empty(batch, dtype=acc, device=x.device)
    penalty = torch.empty((), dtype=acc, device=x.device)
    final = dict(BLOCK_B=FINAL_BLOCK_B, BLOCK_C=FINAL_BLOCK_C)
    if x.numel() <= SMALL_INPUT and row <= SMALL_ROW:
        _norms_and_penalty_kernel[(1,)](x, norms, penalty, batch, row, weight, center,
                                        SQUARE=True, **final)
        return norms, penalty
    n_chunks = triton.cdiv(row, BLOCK * SUM_STEPS)
    partial = torch.empty(batch, n_chunks, dtype=acc, device=x.device)
    for samples, (rows, partial_rows) in _launch_chunks(x, partial):
        _sum_squares_kernel[(n_chunks, samples)](rows, partial_rows, row, n_chunks,
                                                 BLOCK=BLOCK, STEPS=SUM_STEPS)
    _norms_and_penalty_kernel[(1,)](partial, norms, penalty, batch, n_chunks, weight, center,
                                    SQUARE=False, **final)
    return norms, penalty


@launch_on_input_device
def norm_backward(grad: torch.Tensor, x: torch.Tensor, norm: torch.Tensor, slope: float,
                  offset: float) -> torch.Tensor:
    """grad, norm: [B] in the accumulation dtype (grad may be a stride-0 broadcast);
    x: [B, ...]. Returns grad[b] * (slope + offset / norm[b]) * x[b] in x's dtype and layout."""
    _check_per_sample(grad, x, "grad")
    _check_per_sample(norm, x, "norm")
    x = as_rows(x)
    out = torch.empty_like(x)
    row = _row_length(x)
    if out.numel():
        norm = norm.contiguous()
        for samples, (rows, g, n, o) in _launch_chunks(x, grad, norm, out):
            _norm_backward_kernel[(triton.cdiv(row, BLOCK), samples)](
                rows, g, grad.stride(0), n, o, row, slope, offset, BLOCK=BLOCK)
    return out
