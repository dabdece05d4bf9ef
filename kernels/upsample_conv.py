"""Triton kernel for the fused nearest 2x upsample + 3x3 conv (padding 1): an implicit GEMM
over the folded 2x2 sub-pixel weights that writes the interleaved 2H x 2W output directly.

Output pixel (2i + dy, 2j + dx) -- phase (dy, dx) -- reads the 2x2 source window
x[:, :, i + dy - 1 + ty, j + dx - 1 + tx] (ty, tx in {0, 1}) with its folded tap
(ganfast/ops/upsample_conv.py derives the folding):

    out[b, co, 2i + dy, 2j + dx] = bias[co]
        + sum_{ty, tx, ci} x[b, ci, i + dy - 1 + ty, j + dx - 1 + tx] * P[dy, dx, ty, tx, co, ci]

For one phase that is a GEMM: M = B*H*W source pixels, N = Cout, K = 4 taps x Cin. A program
computes a [BLOCK_M, BLOCK_N] tile of one phase with tl.dot over [BLOCK_K]-channel slices of
each tap (fp32 accumulation; out-of-image taps and odd sizes are masked to 0), adds the bias,
applies the activation (none, relu, leaky_relu) and stores the tile at its interleaved place in
the output: no upsampled tensor, no pixel_shuffle pass, one kernel launch (after the packing
matmul below: two launches per call).

The folded weight P is made once per call in torch (one [16, 9] x [9, Cout*Cin] matmul on a view
of the weight: ganfast.ops.upsample_conv.phase_weights) in the layout [phase, tap, Cout, Cin]: a
K-slice of a tap is a [BLOCK_K, BLOCK_N] tile with K contiguous. x is read through its strides
(NCHW, channels_last or any view, no copy); the output is channels_last when x is, else contiguous.

fp32 inputs: tl.dot runs in TF32 when torch.backends.cudnn.allow_tf32 is set (PyTorch's default
for convolutions, so the same precision as the cuDNN conv it replaces), else in IEEE fp32.
Kernels and launchers only: which backend runs is decided in ganfast/ops.
"""

import torch
import triton
import triton.language as tl

from ganfast.ops.layout import image_format
from ganfast.ops.upsample_conv import phase_weights

from . import launch_on_input_device

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
ACTIVATION_CODES = {None: 0, "relu": 1, "leaky_relu": 2}
BLOCK_M = 64  # source pixels of one phase per program
MAX_BLOCK_N = 128  # output channels per program (fewer for a narrower conv; at least 16)
# Input channels per tl.dot step: a 64-byte slice of each row (32 fp16/bf16 or 16 fp32
# channels; fewer for a narrower conv, at least 16). The loads are gathers through registers
# (masked implicit GEMM, no TMA), so register pressure grows with the slice: with 64 fp32
# channels and 4 warps every sm_80/89/90 build spilled (255 registers and 688-1,232 bytes of
# spill stack per thread; 144 KB of shared memory on sm_90); with 8 warps and 128-byte slices
# triton 3.6 (the GPU machine's) stopped spilling but triton 3.8 (current torch's) still
# spilled in NCHW half precision (224-392 B). 8 warps and 64-byte slices spill under neither
# at the benchmarked shapes (but triton 3.8 for fp32 without TF32: 56-136 B).
# scripts/triton_compile_check.py and benchmarks/NOTES.md have the figures; not yet timed.
MAX_BLOCK_K_BYTES = 64
NUM_WARPS = 8
NUM_STAGES = 3


@triton.jit
def _upsample_conv_kernel(x_ptr, w_ptr, bias_ptr, out_ptr,
                          M, H, W, C_IN, C_OUT,
                          sxb, sxc, sxh, sxw, sob, soc, soh, sow,
                          negative_slope,
                          HAS_BIAS: tl.constexpr, ACTIVATION: tl.constexpr,
                          INPUT_PRECISION: tl.constexpr, BLOCK_M: tl.constexpr,
                          BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    # Program (m, n, phase): rows m*BLOCK_M.. of the phase's GEMM (source pixels b, i, j),
    # columns n*BLOCK_N.. (output channels). Offsets in int64: tensors past 2^31 elements.
    phase = tl.program_id(2)
    dy = phase // 2
    dx = phase % 2
    rows = tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < M
    col_ok = cols < C_OUT
    hw = H * W
    b = rows // hw
    rem = rows % hw
    i = rem // W
    j = rem % W
    ks = tl.arange(0, BLOCK_K)
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for tap in tl.static_range(4):
        iy = i + (dy + tap // 2 - 1)
        ix = j + (dx + tap % 2 - 1)
        inside = row_ok & (iy >= 0) & (iy < H) & (ix >= 0) & (ix < W)
        x_rows = x_ptr + (b * sxb + iy * sxh + ix * sxw)
        w_tap = w_ptr + (phase * 4 + tap).to(tl.int64) * C_OUT * C_IN
        for k0 in range(0, C_IN, BLOCK_K):
            ci = k0 + ks
            k_ok = ci < C_IN
            a = tl.load(x_rows[:, None] + ci.to(tl.int64)[None, :] * sxc,
                        mask=inside[:, None] & k_ok[None, :], other=0.0)
            w = tl.load(w_tap + cols[None, :] * C_IN + ci[:, None],
                        mask=k_ok[:, None] & col_ok[None, :], other=0.0)
            acc = tl.dot(a, w, acc, input_precision=INPUT_PRECISION)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
    if ACTIVATION == 1:
        acc = tl.maximum(acc, 0.0)
    elif ACTIVATION == 2:
        acc = tl.where(acc > 0, acc, acc * negative_slope)
    out_rows = out_ptr + (b * sob + (2 * i + dy) * soh + (2 * j + dx) * sow)
    tl.store(out_rows[:, None] + cols.to(tl.int64)[None, :] * soc,
             acc.to(out_ptr.dtype.element_ty), mask=row_ok[:, None] & col_ok[None, :])


def _block(n: int, low: int, high: int) -> int:
    return max(low, min(high, triton.next_power_of_2(max(n, 1))))


@launch_on_input_device
def upsample_conv_forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                          activation: str | None, negative_slope: float) -> torch.Tensor:
    """activation(conv2d(upsample_nearest_2x(x), weight, bias, padding=1)): the weight's
    packing matmul, then one kernel launch.

    x [B, Cin, H, W] (fp32, fp16 or bf16, any strides), weight [Cout, Cin, 3, 3], bias [Cout]
    or None, activation None | "relu" | "leaky_relu". Returns [B, Cout, 2H, 2W] in x's dtype."""
    if x.dtype not in DTYPES:
        raise ValueError(f"ganfast triton: upsample_conv takes {', '.join(map(str, DTYPES))}; "
                         f"got {x.dtype}")
    if activation not in ACTIVATION_CODES:
        raise ValueError(f"ganfast triton: activation must be one of {tuple(ACTIVATION_CODES)}; "
                         f"got {activation!r}")
    batch, c_in, h, w = x.shape
    c_out = weight.shape[0]
    out = torch.empty(batch, c_out, 2 * h, 2 * w, dtype=x.dtype, device=x.device,
                      memory_format=image_format(x))
    m = batch * h * w
    if out.numel() == 0:
        return out
    packed = phase_weights(weight, x.dtype)  # [4 phases, 4 taps, Cout, Cin]
    bias_arg = bias.contiguous() if bias is not None else packed
    block_n = _block(c_out, 16, MAX_BLOCK_N)
    block_k = _block(c_in, 16, MAX_BLOCK_K_BYTES // x.element_size())
    precision = "tf32" if x.dtype == torch.float32 and torch.backends.cudnn.allow_tf32 else "ieee"
    grid = (triton.cdiv(m, BLOCK_M), triton.cdiv(c_out, block_n), 4)
    _upsample_conv_kernel[grid](
        x, packed, bias_arg, out, m, h, w, c_in, c_out, *x.stride(), *out.stride(),
        float(negative_slope), HAS_BIAS=bias is not None,
        ACTIVATION=ACTIVATION_CODES[activation], INPUT_PRECISION=precision, BLOCK_M=BLOCK_M,
        BLOCK_N=block_n, BLOCK_K=block_k, num_warps=NUM_WARPS, num_stages=NUM_STAGES)
    return out
