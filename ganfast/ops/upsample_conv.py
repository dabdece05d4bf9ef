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
The "torch" backend is the folded transposed conv above on CUDA (through cuDNN; what "auto"
runs until a GPU kernel measures faster) and under torch.compile. On CPU it runs the tap-products
form of upsample_conv_taps.py (9 products per source pixel, 4x fewer multiply-adds than the
unfused block) where its GEMM dominates (many input channels, maps of 8x8 and smaller, where
oneDNN's transposed conv is slow, channels_last inputs from 128 channels), the folded transposed
conv elsewhere (its backward as the triton backend's, below), and the unfused pair for tiny
blocks (cpu_route).

The "triton" backend (kernels/upsample_conv.py) runs the forward as one kernel: an implicit
GEMM per output phase over the folded 2x2 weights (phase_weights below), bias and activation
fused, the interleaved output written directly. Kernel op: ganfast::upsample_conv_forward
(CPU kernel = the reference, CUDA = the Triton launcher, plus a fake impl; no ganfast_C schema:
there is no CUDA C++ kernel). Autograd: _UpsampleConv (torch.autograd.Function); its backward is
the folded form's, through cuDNN: the activation's backward from the saved output, then one
aten.convolution_backward of the stride-2 transposed conv (grad input, grad folded weight) and
the folded weight's gradient mapped back to the 3x3 weight by one small matmul; the bias's
gradient is the output gradient's sum.
A backward asked to build a graph (create_graph=True) differentiates the reference instead.
float64 inputs never reach the kernel (it takes fp32/fp16/bf16): they run the torch backend's
formulation, on CPU the one cpu_route picks.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F

from .. import backends
from .._numbers import integer, real_number
from ._library import define, kernel, transformed
from .layout import image_format, matching_layout
from .upsample_conv_taps import tap_weight, taps_backward, taps_forward

OP = "upsample_conv"
KERNEL_SIZE, PADDING, SCALE_FACTOR = 3, 1, 2  # the configuration the folding is exact for
ACTIVATIONS = (None, "relu", "leaky_relu")

# Which CPU formulation runs a block (cpu_route; fwd+bwd on the 2-core machine, benchmarks/NOTES.md):
# - below CPU_MIN_TAP_MACS multiply-adds (9 * B*H*W * Cin*Cout) host time decides, and the
#   unfused pair's three ATen ops win ([1, 2, 3, 3] -> 3: 95 us unfused, 389 taps, 349 folded);
# - tap products where their GEMM dominates their shifted additions (which grow with the
#   output, not with Cin): Cin >= CPU_TAPS_MIN_CHANNELS, maps of 8x8 and smaller, where
#   oneDNN's transposed conv is slow (512->256 at 4x4: taps 2.4x the unfused pair, folded 0.9x;
#   128->64 at 8x8: taps 2.2x, folded 1.6-1.8x), and channels_last inputs from
#   CPU_TAPS_MIN_CHANNELS_LAST channels, where the unfused pair's channels_last conv is
#   slower to beat by its own means than by fewer multiply-adds (128->64 at 16x16: taps 2.4x
#   against folded 1.8x; 64->64 at 32x32 a draw, 1.8-1.9x against 1.7x, with the forward
#   alone 1.2-1.5x against 1.8-1.9x: a GEMM over 64 channels is too short for the additions);
# - the folded transposed conv otherwise: fewer channels on maps over 8x8, in either layout
#   (NCHW 128->64 at 16x16: folded 2.8x, taps 2.4-2.8x, the taps' NCHW output copy included).
CPU_MIN_TAP_MACS = 2_000_000
CPU_TAPS_MIN_CHANNELS = 256
CPU_TAPS_MIN_CHANNELS_LAST = 128
CPU_TAPS_MAX_PIXELS = 64

# F[a, k]: which 3x3 taps (k) fold into tap a of the stride-2 transposed conv (module doc).
_FOLD_ROWS = torch.tensor(((0, 0, 1), (0, 1, 1), (1, 1, 0), (1, 0, 0)), dtype=torch.float64)
# Both axes at once: [ky*3 + kx, a*4 + b] = F[a, ky] F[b, kx], so the fold is one matmul.
_FOLD_2D = torch.einsum("ay,bx->yxab", _FOLD_ROWS, _FOLD_ROWS).reshape(9, 16)
# Column (dy*2 + dx)*4 + ty*2 + tx of the kernel's fold: column a*4 + b of _FOLD_2D with
# a = 3 - dy - 2ty, b = 3 - dx - 2tx (tap t of the transposed conv <-> phase d, offset o).
_PHASE_COLUMNS = torch.tensor([(3 - dy - 2 * ty) * 4 + 3 - dx - 2 * tx
                               for dy in (0, 1) for dx in (0, 1) for ty in (0, 1) for tx in (0, 1)])
_PHASE_FOLD_2D = _FOLD_2D[:, _PHASE_COLUMNS].t().contiguous()  # [16, 9]
_FOLD_BY_DEVICE: dict = {}  # (dtype, device, phases) -> the fold there: made once, not per call


def _fold_matrix(weight: torch.Tensor, phases: bool = False) -> torch.Tensor:
    key = (weight.dtype, weight.device, phases)
    fold = _FOLD_BY_DEVICE.get(key)
    if fold is None:
        fold = _FOLD_BY_DEVICE[key] = (_PHASE_FOLD_2D if phases else _FOLD_2D).to(
            device=weight.device, dtype=weight.dtype)
    return fold


def _exact_operand(t: torch.Tensor) -> torch.Tensor:
    """t for one of the fold's matmuls, whose 0/1 entries make each folded value a sum of at
    most four taps: float32 on CUDA in float64, since a float32 matmul there may run in TF32
    (set_float32_matmul_precision("high"), the legacy allow_tf32 or the newer fp32_precision
    flags), which would round every folded tap to 10 bits even with the convolution in full
    float32. Always, rather than by the flags: reading the legacy flag raises once the new API
    set TF32 (torch >= 2.9), and the sums are then exact whatever is set. Two small casts."""
    if t.dtype == torch.float32 and t.is_cuda:
        return t.double()
    return t


def phase_weights(weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Conv2d weight [Cout, Cin, 3, 3] -> the Triton kernel's [4 phases, 4 taps, Cout, Cin].

    Phase dy*2 + dx is output pixel (2i + dy, 2j + dx); tap ty*2 + tx reads source pixel
    (i + dy - 1 + ty, j + dx - 1 + tx), which is tap (3 - dy - 2ty, 3 - dx - 2tx) of the
    transposed conv. One [16, 9] x [9, Cout*Cin] matmul on a view of the weight, in its dtype
    (float64 where TF32 would round it: _exact_operand), then `dtype`. No gradient."""
    c_out, c_in = weight.shape[:2]
    with torch.no_grad():
        weight = _exact_operand(weight)
        folded = _fold_matrix(weight, phases=True) @ weight.reshape(c_out * c_in, 9).t()
        return folded.to(dtype).view(4, 4, c_out, c_in)


def fold_weight(weight: torch.Tensor) -> torch.Tensor:
    """Conv2d weight [Cout, Cin, 3, 3] -> conv_transpose2d weight [Cin, Cout, 4, 4].

    Differentiable: the weight's gradient flows back through the one small matmul."""
    c_out, c_in = weight.shape[:2]
    exact = _exact_operand(weight)
    folded = (exact.reshape(c_out * c_in, 9) @ _fold_matrix(exact)).to(weight.dtype)  # [Cout*Cin, 16]
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
    """Raise naming the argument unless it is the supported kernel 3, padding 1, scale 2: the
    arguments of UpsampleConv2d, named as its (upsample_conv2d() has none of them). Each is one
    number or a pair (a tuple, list, tensor or array, of numbers or 0-dim tensors or arrays, as
    nn.Conv2d takes them); kernel_size and padding integers (padding=True passed for 1, and
    kernel_size=3.0 for 3), the scale a real number (2.0, as nn.Upsample takes it)."""
    for name, value, supported in (("kernel_size", kernel_size, KERNEL_SIZE),
                                   ("padding", padding, PADDING),
                                   ("scale_factor", scale_factor, SCALE_FACTOR)):
        if name == "padding" and isinstance(value, str) and value == "same":
            continue  # a 3x3 kernel's "same" padding is 1, as Conv2d computes it
        if isinstance(value, (torch.Tensor, np.ndarray)) and value.ndim == 1:
            value = list(value)  # (an array's truth value in == was ambiguous)
        pair = list(value) if isinstance(value, (tuple, list)) else [value, value]
        number, kind = (real_number, "a number") if name == "scale_factor" else (integer, "an int")
        values = [number(v) for v in pair]
        if None in values:
            raise ValueError(f"UpsampleConv2d: {name} must be {kind} or a pair of them, got "
                             f"{value!r}")
        if values != [supported, supported]:
            raise ValueError(
                f"UpsampleConv2d: {name}={value!r} is not supported; the fused op is "
                f"nearest upsampling by scale_factor=2 followed by a 3x3 conv with padding=1 "
                f"(kernel_size=3, padding=1, scale_factor=2)")


def checked_slope(negative_slope, caller: str = "upsample_conv2d") -> float:
    """negative_slope as a float, or an error naming it unless it is a finite real number (a
    0-dim tensor or numpy array too, as float() takes them)."""
    slope = real_number(negative_slope)
    if slope is not None and math.isfinite(slope):
        return slope
    raise ValueError(f"{caller}: negative_slope must be a finite real number; got "
                     f"{negative_slope!r}")


def check_inputs(x, weight, bias, activation, caller: str = "upsample_conv2d") -> None:
    """Raise naming the argument unless x, weight, bias and activation make a valid call;
    `caller`: the public name the user called (the function, or the UpsampleConv2d layer)."""
    if not inputs_valid(x, weight, bias, activation):
        raise_for_inputs(x, weight, bias, activation, caller)


def inputs_valid(x, weight, bias, activation) -> bool:
    """raise_for_inputs' conditions in one expression: its checks one by one cost 8 us per
    call on the 2-core machine, a twentieth of a tiny block's time. The two must agree (a test
    compares them on a table of faults, with and without bias)."""
    return (isinstance(x, torch.Tensor) and isinstance(weight, torch.Tensor) and x.dim() == 4
            and x.is_floating_point() and weight.dim() == 4
            and weight.shape[1:] == (x.shape[1], KERNEL_SIZE, KERNEL_SIZE)
            and (bias is None or (isinstance(bias, torch.Tensor)
                                  and bias.shape == weight.shape[:1]))
            and activation in ACTIVATIONS)


def raise_for_inputs(x, weight, bias, activation, caller: str = "upsample_conv2d") -> None:
    """The argument checks one by one, each error naming `caller` and its argument."""
    for name, t in (("x", x), ("weight", weight), ("bias", bias)):
        if not (isinstance(t, torch.Tensor) or (name == "bias" and t is None)):
            raise TypeError(f"{caller}: {name} must be a torch.Tensor; got "
                            f"{type(t).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{caller}: x must be a 4-D [B, C, H, W] tensor; got "
                         f"{tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{caller}: x must have a floating-point dtype; got {x.dtype}")
    if weight.dim() != 4 or tuple(weight.shape[2:]) != (KERNEL_SIZE, KERNEL_SIZE):
        raise ValueError(
            f"{caller}: weight must be [out_channels, in_channels, 3, 3] (a Conv2d's "
            f"weight with kernel_size=3); got {tuple(weight.shape)}")
    if weight.shape[1] != x.shape[1]:
        raise ValueError(
            f"{caller}: x has {x.shape[1]} channels but weight expects in_channels="
            f"{weight.shape[1]} (weight is {tuple(weight.shape)})")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"{caller}: bias must be [{weight.shape[0]}] (out_channels); "
                         f"got {tuple(bias.shape)}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"{caller}: activation must be one of {ACTIVATIONS}; "
                         f"got {activation!r}")


# ---------------------------------------------------------------- the kernel op

TRITON_MODULE = "ganfast.kernels.upsample_conv"
KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _forward_fake(x, weight, bias, activation, negative_slope):
    return torch.empty(x.shape[0], weight.shape[0], 2 * x.shape[2], 2 * x.shape[3],
                       dtype=x.dtype, device=x.device, memory_format=image_format(x))


def _forward_cpu(x, weight, bias, activation, negative_slope):
    # The op's output follows the kernel's layout rule, as the fake impl says.
    out = upsample_conv2d_reference(x, weight, bias, activation, negative_slope)
    return out.contiguous(memory_format=image_format(x))


define("upsample_conv_forward",
       "(Tensor x, Tensor weight, Tensor? bias, str? activation, float negative_slope) -> Tensor",
       reference=_forward_cpu, fake=_forward_fake, triton_module=TRITON_MODULE,
       cuda_kernel=False)


# ---------------------------------------------------------------- autograd

def _unfold_grad(grad_folded: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Gradient of fold_weight: [Cin, Cout, 4, 4] (the folded weight's) -> [Cout, Cin, 3, 3],
    laid out like `weight` (AccumulateGrad would copy a gradient laid out otherwise)."""
    c_in, c_out = grad_folded.shape[:2]
    grad = _exact_operand(grad_folded).transpose(0, 1).reshape(c_out * c_in, 16)
    grad = (grad @ _fold_matrix(grad).t()).to(grad_folded.dtype)
    return matching_layout(grad.view(c_out, c_in, 3, 3), weight)


def _fused_forward(form, x, weight, bias, activation, negative_slope, taps=None):
    """The fused forms' forward: tap products (taps: tap_weight(weight), made here if None) or
    the folded transposed conv (CPU), or the kernel op ("triton")."""
    if form == "taps":  # the activation on each output tile while it is in cache
        epilogue = None if activation is None else (
            lambda tile: apply_activation(tile, activation, negative_slope, inplace=True))
        return taps_forward(x, tap_weight(weight) if taps is None else taps, bias, epilogue)
    if form == "folded":
        return upsample_conv2d_reference(x, weight, bias, activation, negative_slope)
    return kernel(form, "upsample_conv_forward")(x, weight, bias, activation, negative_slope)


class _UpsampleConv(torch.autograd.Function):
    """Autograd of the fused forms. "taps" (CPU): upsample_conv_taps.py, forward and backward.
    "folded" (CPU) and "triton": the folded transposed conv's backward (module doc) after the
    folded conv's or the kernel's forward. The bias's gradient is the output gradient's sum,
    taken outside aten.convolution_backward: what ATen does for cuDNN, and on CPU oneDNN's
    transposed-conv backward is slow with the bias for channels_last tensors (DCGAN-64's 64->64
    block at 32x32: the backward 1.52x -> 1.85x the unfused pair's; benchmarks/NOTES.md)."""

    @staticmethod
    def forward(ctx, x, weight, bias, activation, negative_slope, form):
        taps = tap_weight(weight) if form == "taps" else None
        out = _fused_forward(form, x, weight, bias, activation, negative_slope, taps)
        # The activation's backward reads the output (as the in-place epilogue of the reference
        # does); the convolution's reads x and the weight, the tap products' input gradient
        # the tap weight (weight-sized: kept rather than permuted again). Nothing upsampled.
        keep_taps = taps if ctx.needs_input_grad[0] else None
        ctx.save_for_backward(x, weight, bias, out if activation is not None else None, keep_taps)
        ctx.activation, ctx.negative_slope, ctx.form = activation, negative_slope, form
        return out

    @staticmethod
    def backward(ctx, grad):
        x, weight, bias, out, taps = ctx.saved_tensors
        needs = ctx.needs_input_grad[:3]
        if torch.is_grad_enabled():  # create_graph: let autograd differentiate the reference
            y = upsample_conv2d_reference(x, weight, bias, ctx.activation, ctx.negative_slope)
            wanted = [t for t, need in zip((x, weight, bias), needs, strict=True) if need]
            grads = iter(torch.autograd.grad(y, wanted, grad, create_graph=True))
            return (*(next(grads) if need else None for need in needs), None, None, None)
        if ctx.activation == "relu":
            grad = torch.ops.aten.threshold_backward(grad, out, 0)
        elif ctx.activation == "leaky_relu":
            grad = torch.ops.aten.leaky_relu_backward(grad, out, ctx.negative_slope, True)
        grad_bias = grad.sum((0, 2, 3)) if needs[2] and bias is not None else None
        if not (needs[0] or needs[1]):
            return None, None, grad_bias, None, None, None
        if ctx.form == "taps":
            grad_x, grad_weight = taps_backward(grad, x, weight, needs, taps)
            return grad_x, grad_weight, grad_bias, None, None, None
        grad_x, grad_folded, _ = torch.ops.aten.convolution_backward(
            grad, x, fold_weight(weight), None, [2, 2], [1, 1], [1, 1], True, [0, 0], 1,
            [needs[0], needs[1], False])
        grad_weight = _unfold_grad(grad_folded, weight) if needs[1] else None
        return grad_x, grad_weight, grad_bias, None, None, None


def cpu_route(x: torch.Tensor, weight: torch.Tensor) -> str:
    """The CPU formulation for this block: "unfused", "taps" or "folded" (the rule above)."""
    if 9 * x.numel() * weight.shape[0] < CPU_MIN_TAP_MACS:  # first: it needs no shape unpacked
        return "unfused"
    c_in, h, w = x.shape[1:]
    if c_in >= CPU_TAPS_MIN_CHANNELS or h * w <= CPU_TAPS_MAX_PIXELS:
        return "taps"
    if c_in >= CPU_TAPS_MIN_CHANNELS_LAST and image_format(x) == torch.channels_last:
        return "taps"
    return "folded"


def _autocast_inputs(x, weight, bias):
    """x, weight, bias in the autocast dtype of x's device (float64 tensors are left alone)."""
    dtype = torch.get_autocast_dtype(x.device.type)
    return tuple(t.to(dtype) if t is not None and t.dtype in KERNEL_DTYPES else t
                 for t in (x, weight, bias))


def upsample_conv2d_with(backend: str, x, weight, bias=None, activation=None,
                         negative_slope=0.01, caller: str = "upsample_conv2d") -> torch.Tensor:
    """upsample_conv2d() with the backend already resolved ("torch" or "triton"); inputs
    checked. The triton backend also runs on CPU tensors under TRITON_INTERPRET=1."""
    # x.device builds an object per call (7 us with caches cold on the 2-core machine): CUDA and
    # CPU are answered by flags.
    device_type = "cuda" if x.is_cuda else "cpu" if x.is_cpu else x.device.type
    # (a device without autocast, such as meta, cannot be asked whether it is on)
    if (device_type in ("cuda", "cpu") or torch.amp.is_autocast_available(device_type)) \
            and torch.is_autocast_enabled(device_type):
        # What autocast does for conv2d: inputs to its dtype, then the op without autocast (the
        # fused routes' backward would otherwise meet a half gradient and float32 inputs).
        x, weight, bias = _autocast_inputs(x, weight, bias)
        with torch.autocast(device_type, enabled=False):
            return upsample_conv2d_with(backend, x, weight, bias, activation, negative_slope,
                                        caller)
    if weight.dtype != x.dtype or (bias is not None and bias.dtype != x.dtype):
        name, t = ("weight", weight) if weight.dtype != x.dtype else ("bias", bias)
        raise ValueError(f"{caller}: {name} is {t.dtype} but x is {x.dtype}; they must "
                         f"match (or run under autocast)")  # as conv2d: no silent promotion
    # Comparisons, not math.isfinite, which torch.compile cannot trace on a symbolic slope
    # (dynamic=True, or a slope that changed between calls): "torch.* op returned non-Tensor"
    if not (type(negative_slope) is float and -math.inf < negative_slope < math.inf):  # noqa: E721
        negative_slope = checked_slope(negative_slope, caller)
    if activation == "leaky_relu" and negative_slope < 0:
        # The fused epilogue overwrites the conv's output, and its backward reads the sign of
        # the activation's input from the output's, which a negative slope flips (ATen refuses
        # it): for such a slope the activation runs after the fused conv, out of place.
        return F.leaky_relu(upsample_conv2d_with(backend, x, weight, bias, caller=caller),
                            negative_slope)
    if transformed(x, weight, bias):  # the fused routes' Function and out= carry no tangents
        return upsample_conv2d_reference(x, weight, bias, activation, negative_slope)
    form = backend  # "triton", or on CPU the formulation cpu_route picks
    if backend == "torch" or x.dtype not in KERNEL_DTYPES:
        # Under torch.compile the folded transposed conv is one graph node for the compiler.
        if device_type != "cpu" or torch.compiler.is_compiling():
            return upsample_conv2d_reference(x, weight, bias, activation, negative_slope)
        form = cpu_route(x, weight)  # float64 included
        if form == "unfused":
            return upsample_conv2d_unfused(x, weight, bias, activation, negative_slope)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad
                                       for t in (x, weight, bias)):
        return _UpsampleConv.apply(x, weight, bias, activation, negative_slope, form)
    return _fused_forward(form, x, weight, bias, activation, negative_slope)


# ---------------------------------------------------------------- public function

def upsample_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                    *, activation: str | None = None, negative_slope: float = 0.01,
                    backend: str = "auto") -> torch.Tensor:
    """activation(conv2d(upsample_nearest_2x(x), weight, bias, padding=1)), fused.

    x [B, Cin, H, W], weight [Cout, Cin, 3, 3] and bias [Cout] as in nn.Conv2d; the result is
    [B, Cout, 2H, 2W]. activation: None, "relu" or "leaky_relu" (with negative_slope).
    backend: "auto" (torch until GPU measurements choose, ops/auto_backends.json), "torch",
    "triton" (CUDA tensors)."""
    return upsample_conv2d_called_as("upsample_conv2d", x, weight, bias, activation,
                                     negative_slope, backend)


def upsample_conv2d_called_as(caller: str, x, weight, bias, activation, negative_slope,
                              backend: str = "auto") -> torch.Tensor:
    """upsample_conv2d(), its refusals naming `caller`: the public name the user called
    (UpsampleConv2d's forward calls it with the layer's)."""
    check_inputs(x, weight, bias, activation, caller)
    return upsample_conv2d_with(backends.resolve(OP, backend, x.is_cuda, caller), x, weight,
                                bias, activation, negative_slope, caller)

