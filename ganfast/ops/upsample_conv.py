"""Fused nearest 2x upsample + 3x3 conv (padding 1): the sub-pixel folding.

Upsampling by 2 (nearest) and then convolving with a 3x3 kernel reads, for each output
pixel, only a 2x2 window of the original input: the 3x3 taps that land on the same source
pixel add up. Along one axis, output row 2i + d reads source rows
    d = 0:  i-1 with w[0],       i with w[1] + w[2]
    d = 1:  i   with w[0] + w[1], i+1 with w[2]
which is exactly a transposed convolution of stride 2, kernel 4, padding 1 whose 1-D kernel
is [w[2], w[1] + w[2], w[0] + w[1], w[0]] (tap k of the transposed conv sends source row j to
output row 2j + k - 1). The 2-D weight is the outer product of that folding on both axes:
    W_t[ci, co, a, b] = sum_{ky, kx} F[a, ky] F[b, kx] W[co, ci, ky, kx]
with F the 4x3 folding matrix below. The same function up to float rounding, 16 taps per 4
output pixels instead of 36 (2.25x fewer multiply-adds), and the output is written
interleaved by the convolution itself: no upsampled tensor and no pixel_shuffle pass, in
forward or backward (conv_transpose2d saves its input and weight, not its output).

Public function: upsample_conv2d(x, weight, bias, activation, negative_slope, backend).
The "torch" backend is the folded transposed conv above (CPU, and valid on CUDA through
cuDNN); it is what "auto" runs until a GPU kernel measures faster.
"""

import torch
import torch.nn.functional as F

from .. import backends

OP = "upsample_conv"
KERNEL_SIZE, PADDING, SCALE_FACTOR = 3, 1, 2  # the configuration the folding is exact for
ACTIVATIONS = (None, "relu", "leaky_relu")
# oneDNN's transposed convolution loses to the unfused pair on tiny source maps (4x4, 512->256:
# 0.56-0.64x fwd+bwd; 8x8 and larger: 1.1-2.3x, fp32, benchmarks/NOTES.md), so on CPU the
# public function runs the unfused pair below 8x8 sources: the fallback is never slower than the
# code it replaces, and an upsampled 4x4 map is small.
CPU_MIN_FOLDED_PIXELS = 64

# F[a, k]: which 3x3 taps (k) fold into tap a of the stride-2 transposed conv (module doc).
_FOLD_ROWS = torch.tensor(((0, 0, 1), (0, 1, 1), (1, 1, 0), (1, 0, 0)), dtype=torch.float64)
# Both axes at once: [ky*3 + kx, a*4 + b] = F[a, ky] F[b, kx], so the fold is one matmul.
_FOLD_2D = torch.einsum("ay,bx->yxab", _FOLD_ROWS, _FOLD_ROWS).reshape(9, 16)
_FOLD_BY_DEVICE: dict = {}  # (dtype, device) -> _FOLD_2D there: made once, not per call


def _fold_matrix(weight: torch.Tensor) -> torch.Tensor:
    key = (weight.dtype, weight.device)
    fold = _FOLD_BY_DEVICE.get(key)
    if fold is None:
        fold = _FOLD_BY_DEVICE[key] = _FOLD_2D.to(device=weight.device, dtype=weight.dtype)
    return fold


def fold_weight(weight: torch.Tensor) -> torch.Tensor:
    """Conv2d weight [Cout, Cin, 3, 3] -> conv_transpose2d weight [Cin, Cout, 4, 4].

    Differentiable: the weight's gradient flows back through the one small matmul."""
    c_out, c_in = weight.shape[:2]
    folded = weight.reshape(c_out * c_in, 9) @ _fold_matrix(weight)  # [Cout*Cin, 16]
    return folded.view(c_out, c_in, 4, 4).transpose(0, 1)


# ---------------------------------------------------------------- references (CPU and oracle)

def upsample_conv2d_unfused(x, weight, bias=None, activation=None, negative_slope=0.01):
    """What users write today: nn.Upsample(2, nearest) then Conv2d(3, padding=1)."""
    out = F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), weight, bias, padding=1)
    return apply_activation(out, activation, negative_slope)


def upsample_conv2d_reference(x, weight, bias=None, activation=None, negative_slope=0.01):
    """The folded form: one stride-2 transposed conv with the folded weight, then the epilogue."""
    out = F.conv_transpose2d(x, fold_weight(weight), bias, stride=2, padding=1)
    # In place: conv_transpose2d's backward does not read its output, so overwriting it keeps
    # one activation-sized tensor alive instead of two.
    return apply_activation(out, activation, negative_slope, inplace=True)


def apply_activation(out, activation, negative_slope, inplace=False):
    if activation is None:
        return out
    if activation == "relu":
        return F.relu(out, inplace=inplace)
    return F.leaky_relu(out, negative_slope, inplace=inplace)


# ---------------------------------------------------------------- argument checks

def check_configuration(kernel_size, padding, scale_factor) -> None:
    """Raise naming the argument unless it is the supported kernel 3, padding 1, scale 2."""
    for name, value, supported in (("kernel_size", kernel_size, KERNEL_SIZE),
                                   ("padding", padding, PADDING),
                                   ("scale_factor", scale_factor, SCALE_FACTOR)):
        pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
        if pair != (supported, supported):
            raise ValueError(
                f"upsample_conv2d: {name}={value!r} is not supported; the fused op is "
                f"nearest upsampling by scale_factor=2 followed by a 3x3 conv with padding=1 "
                f"(kernel_size=3, padding=1, scale_factor=2)")


def check_inputs(x, weight, bias, activation) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"upsample_conv2d: x must be a 4-D [B, C, H, W] tensor; got {shape}")
    if weight.dim() != 4 or tuple(weight.shape[2:]) != (KERNEL_SIZE, KERNEL_SIZE):
        raise ValueError(
            f"upsample_conv2d: weight must be [out_channels, in_channels, 3, 3] (a Conv2d's "
            f"weight with kernel_size=3); got {tuple(weight.shape)}")
    if weight.shape[1] != x.shape[1]:
        raise ValueError(
            f"upsample_conv2d: x has {x.shape[1]} channels but weight expects in_channels="
            f"{weight.shape[1]} (weight is {tuple(weight.shape)})")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"upsample_conv2d: bias must be [{weight.shape[0]}] (out_channels); "
                         f"got {tuple(bias.shape)}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"upsample_conv2d: activation must be one of {ACTIVATIONS}; "
                         f"got {activation!r}")


# ---------------------------------------------------------------- public function

def upsample_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                    *, activation: str | None = None, negative_slope: float = 0.01,
                    backend: str = "auto") -> torch.Tensor:
    """activation(conv2d(upsample_nearest_2x(x), weight, bias, padding=1)), fused.

    x [B, Cin, H, W], weight [Cout, Cin, 3, 3] and bias [Cout] as in nn.Conv2d; the result is
    [B, Cout, 2H, 2W]. activation: None, "relu" or "leaky_relu" (with negative_slope)."""
    check_inputs(x, weight, bias, activation)
    resolve(backend, x.device)  # "torch" is the only backend so far (or a refusal)
    if x.device.type == "cpu" and x.shape[-2] * x.shape[-1] < CPU_MIN_FOLDED_PIXELS:
        return upsample_conv2d_unfused(x, weight, bias, activation, negative_slope)
    return upsample_conv2d_reference(x, weight, bias, activation, negative_slope)


def resolve(backend: str, device: torch.device) -> str:
    """Only the torch backend exists for this op so far: auto picks it everywhere."""
    if backend == "auto" and backends.get_backend() in ("auto", "torch"):
        return "torch"
    name = backends.get_backend() if backend == "auto" else backend
    if name == "torch":
        return "torch"
    if name not in backends.BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(backends.BACKENDS)}; got {name!r}")
    # A global choice of a GPU backend falls back to torch for an op that has no such kernel;
    # asking for it by name on the call is refused with the reason.
    if backend == "auto":
        return "torch"
    raise backends.BackendUnavailable(
        f"ganfast backend {name!r} cannot run {OP}: it has no {name} kernel; use 'torch' or "
        f"'auto'")
