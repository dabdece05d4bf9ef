"""Gradient-penalty ops: the interpolation x_hat and the per-sample gradient norm with the
penalty's [B]-sized tail folded in.

Kernels (ganfast::<name> with Triton on CUDA, ganfast_C::<name> from csrc/; see _library.py):
    interpolate(real, fake, alpha)           x_hat = fake + alpha[b] * (real - fake)
    norm_penalty(x, weight, center)          (n = ||x[b]||, weight * mean_b (n[b] - center)^2)
    norm_backward(grad, x, norm, slope, offset)
                                             grad[b] * (slope + offset / n[b]) * x[b]

Public functions (the backend is resolved once, by the caller or here):
    interpolate(real, fake, alpha)     per_sample_norm(x)     norm_penalty(grad, weight, center)

With the "torch" backend they run the PyTorch code a user would write, no op boundary and
autograd as usual. With "cuda"/"triton" a torch.autograd.Function calls the kernels (and is
skipped when nothing needs a gradient; under torch.func transforms and forward-mode AD, which
it cannot run, the reference runs instead): forward is one launch (interpolate; norm_penalty
of a small input) or two (norm_penalty: partial sums, then one program for the tail),
backward one (interpolate's, rarely run since real and fake are usually data, is plain
PyTorch). A backward asked to build a graph (create_graph=True, for a double backward) runs
the reference expressions instead, which autograd can differentiate again.
"""

import math

import torch

from .. import backends
from .._numbers import real_number
from ._library import define, kernel, transformed
from .layout import acc_dtype, as_rows, matching_layout, per_sample

INT32_MAX = 2**31 - 1
OP = "gradient_penalty"  # the name backends and the auto table know these ops by
TRITON_MODULE = "ganfast.kernels.gradient_penalty"


# ---------------------------------------------------------------- references (CPU and oracle)

def interpolate_reference(real, fake, alpha):
    # lerp is one pass (fake + alpha * (real - fake)) where the textbook expression takes four.
    return torch.lerp(fake, real, per_sample(alpha, real).to(real.dtype))


def per_sample_norm_reference(x):
    acc = acc_dtype(x.dtype)
    if x.dim() == 1:
        return x.abs().to(acc)
    # dtype= only where it changes something: passing it anyway takes a slower path.
    dtype = None if x.dtype == acc else acc
    if x.is_contiguous():  # [B, N] rows, as the canonical flatten(1) gives: its fastest path
        return torch.linalg.vector_norm(x.flatten(1), dim=1, dtype=dtype)
    # Otherwise over the non-batch dims in place: a channels_last tensor is not copied.
    return torch.linalg.vector_norm(x, dim=tuple(range(1, x.dim())), dtype=dtype)


def penalty_reference(x, weight, center):
    """weight * mean_b (||x[b]|| - center)^2 as plain PyTorch (the torch backend's penalty).
    With center 0 (R1/R2) it is a sum of squares, never through the norms: the square root's
    second derivative is NaN at a zero gradient (a sample whose critic is flat there), which a
    Hessian-vector product through R1 would meet; the sum of squares is smooth everywhere."""
    if center != 0:
        return norm_penalty_reference(x, weight, center)[1]
    acc = acc_dtype(x.dtype)
    x = x if x.dtype == acc else x.to(acc)
    if x.is_contiguous() and x.numel() <= INT32_MAX:  # one dot product over a flat view
        flat = x.view(-1)
        squares = flat.dot(flat)
    else:  # channels_last or strided (not copied into a flat one), or past the BLAS dot's
        squares = x.square().sum()  # 32-bit length (ATen's CUDA dot refuses it)
    batch = x.shape[0]
    return squares * (weight / batch if batch else float("nan"))


def norm_penalty_reference(x, weight, center):
    norms = per_sample_norm_reference(x)
    deviation = norms if center == 0 else norms - center
    # The mean of squares as one dot product, scaled by a Python float: two ATen calls (and
    # autograd nodes) where square, mean and the weight take three. An empty batch gives NaN,
    # as the mean does.
    batch = x.shape[0]
    return norms, deviation.dot(deviation) * (weight / batch if batch else float("nan"))


def norm_backward_reference(grad, x, norm, slope, offset):
    # grad * (slope + offset / n) * x, with offset / n taken as 0 where n == 0 (the gradient of
    # ||x|| at x = 0 is taken as 0, as torch does). Only that term is masked: slope * x is
    # smooth, and its derivative there (R1's 2w/B) is what a double backward through this
    # expression must see. The inner where keeps 1/n finite so that its own gradient is too; a
    # NaN norm is != 0 and propagates.
    nonzero = norm != 0
    inverse = torch.where(nonzero, 1 / torch.where(nonzero, norm, 1), 0)
    coef = grad * (slope + offset * inverse)
    return (per_sample(coef, x) * x.to(coef.dtype)).to(x.dtype)


# ---------------------------------------------------------------- the ops' fake impls

def _interpolate_fake(real, fake, alpha):
    return torch.empty_like(as_rows(real))


def _norm_penalty_fake(x, weight, center):
    acc = acc_dtype(x.dtype)
    return x.new_empty(x.shape[0], dtype=acc), x.new_empty((), dtype=acc)


def _norm_backward_fake(grad, x, norm, slope, offset):
    return torch.empty_like(as_rows(x))


def _interpolate_cpu(real, fake, alpha):
    # The op's outputs follow the kernels' layout rule, like the fake impl says.
    real = as_rows(real)
    return interpolate_reference(real, matching_layout(fake, real), alpha)


def _norm_penalty_cpu(x, weight, center):
    return norm_penalty_reference(x, weight, center)


def _norm_backward_cpu(grad, x, norm, slope, offset):
    x = as_rows(x)
    return torch.empty_like(x).copy_(norm_backward_reference(grad, x, norm, slope, offset))


define("interpolate", "(Tensor real, Tensor fake, Tensor alpha) -> Tensor",
       reference=_interpolate_cpu, fake=_interpolate_fake, triton_module=TRITON_MODULE)
define("norm_penalty", "(Tensor x, float weight, float center) -> (Tensor, Tensor)",
       reference=_norm_penalty_cpu, fake=_norm_penalty_fake, triton_module=TRITON_MODULE)
define("norm_backward",
       "(Tensor grad, Tensor x, Tensor norm, float slope, float offset) -> Tensor",
       reference=_norm_backward_cpu, fake=_norm_backward_fake, triton_module=TRITON_MODULE)


# ---------------------------------------------------------------- autograd

class _Interpolate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, real, fake, alpha, backend):
        ctx.save_for_backward(real, fake, alpha)
        return kernel(backend, "interpolate")(real, fake, alpha)

    @staticmethod
    def backward(ctx, grad):
        # Rarely run (real and fake are usually data): plain PyTorch, differentiable as is.
        real, fake, alpha = ctx.saved_tensors
        need_real, need_fake, need_alpha, _ = ctx.needs_input_grad
        a = per_sample(alpha, grad)
        grad_acc = grad.to(alpha.dtype)
        grad_real = (grad_acc * a).to(real.dtype) if need_real else None
        grad_fake = (grad_acc * (1 - a)).to(fake.dtype) if need_fake else None
        grad_alpha = None
        if need_alpha:
            diff = real.to(alpha.dtype) - fake.to(alpha.dtype)
            grad_alpha = (grad_acc * diff).reshape(grad.shape[0], -1).sum(1)
        return grad_real, grad_fake, grad_alpha, None


class _NormPenalty(torch.autograd.Function):
    """weight * mean_b (||x[b]|| - center)^2, or the norms themselves (penalty=False)."""

    @staticmethod
    def forward(ctx, x, weight, center, backend, penalty):
        norms, value = kernel(backend, "norm_penalty")(x, weight, center)
        ctx.save_for_backward(x, norms)
        batch = max(x.shape[0], 1)  # an empty batch has an empty gradient; no 0/0 here
        # f'(n) = slope * n + offset: 2w/B * (n - c) for the penalty, 1 for the norm.
        ctx.slope, ctx.offset = (2 * weight / batch, -2 * weight * center / batch) if penalty \
            else (0.0, 1.0)
        ctx.backend = backend
        return value if penalty else norms

    @staticmethod
    def backward(ctx, grad):
        x, norms = ctx.saved_tensors
        grad = grad.expand(x.shape[0])  # the penalty's scalar gradient, read per sample
        if torch.is_grad_enabled():  # create_graph: a backward that can be differentiated
            norms = per_sample_norm_reference(x)
            grad_x = norm_backward_reference(grad, x, norms, ctx.slope, ctx.offset)
        else:
            grad_x = kernel(ctx.backend, "norm_backward")(grad, x, norms, ctx.slope, ctx.offset)
        return grad_x, None, None, None, None


# ---------------------------------------------------------------- argument checks
# Each public function checks its arguments before any work (a critic that is not callable:
# once calling it failed), every error naming the function and its argument
# ("gradient_penalty: real must ..."; the rest of ganfast words errors so):
# one expression for a valid call (what runs every step), the checks one by one otherwise.

def check_float_tensor(t, name: str) -> None:
    """Raise naming `name` unless t is a floating-point [B, ...] tensor."""
    if isinstance(t, torch.Tensor) and t.is_floating_point() and t.dim() > 0:
        return
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(f"{name} must have a floating-point dtype, got {t.dtype}")
    raise ValueError(f"{name} must have a batch dimension [B, ...], got a 0-dim tensor")


def check_number(value, name: str, nonnegative: bool = False) -> None:
    """A penalty's weight, center or gamma: a finite real number (_numbers.real_number: a
    0-dim tensor without grad, or array, too); with `nonnegative`, also >= 0 (a weight: a
    negative one would turn the penalty into a reward for steep critics, a sign slip that
    trains on silently). `name` says whose argument it is ("gradient_penalty: weight")."""
    # (a 0-dim tensor is read once on the host, as the float(weight) the penalty takes anyway)
    number = None if isinstance(value, torch.Tensor) and value.requires_grad else real_number(value)
    if number is None:
        raise TypeError(f"{name} must be a real number (a float, or a 0-dim tensor that needs "
                        f"no gradient: the penalty's would not reach it), got {value!r}")
    # comparisons, not math.isfinite, which torch.compile cannot trace on a symbolic number (a
    # weight that changed between calls of a compiled function: "torch.* op returned non-Tensor")
    finite = -math.inf < number < math.inf
    if finite and (not nonnegative or number >= 0):
        return
    if not finite:
        raise ValueError(f"{name} must be finite, got {float(number)}")
    raise ValueError(f"{name} must be >= 0 (a negative one rewards large critic gradients "
                     f"instead of penalizing them; 0 turns the penalty off), got {number}")


def interpolation_inputs(real, fake, alpha, caller: str = "interpolate"):
    """real, fake and alpha ready for the interpolation op, checked: real and fake of one shape
    and device, in their promoted dtype (as the canonical expression computes: an autocast
    generator's bf16 fakes beside fp32 reals give fp32), alpha [B], given as [B] or as the
    canonical code shapes it, [B, 1, ..., 1]. Errors name `caller`, the public function whose
    arguments these are (gradient_penalty or interpolate share them)."""
    if (isinstance(real, torch.Tensor) and isinstance(fake, torch.Tensor)
            and isinstance(alpha, torch.Tensor) and real.dim() > 0 and real.shape == fake.shape
            and real.dtype == fake.dtype and real.is_floating_point()
            and alpha.is_floating_point() and alpha.shape == real.shape[:1]
            and real.device == fake.device == alpha.device):
        return real, fake, alpha
    for name, t in (("real", real), ("fake", fake), ("alpha", alpha)):
        check_float_tensor(t, f"{caller}: {name}")
    if real.shape != fake.shape:
        raise ValueError(f"{caller}: real and fake must have the same shape, got real "
                         f"{list(real.shape)} and fake {list(fake.shape)}")
    if real.device != fake.device:
        raise ValueError(f"{caller}: real and fake must be on the same device, got real on "
                         f"{real.device} and fake on {fake.device}")
    batch = real.shape[0]
    if alpha.shape[0] != batch or any(size != 1 for size in alpha.shape[1:]) \
            or alpha.dim() > real.dim():
        raise ValueError(f"{caller}: alpha must have shape [B] = [{batch}] (or [B, 1, ..., 1] "
                         f"with at most real's {real.dim()} dims), got {list(alpha.shape)}")
    if alpha.device != real.device:
        raise ValueError(f"{caller}: alpha must be on {real.device} like real, got "
                         f"{alpha.device}")
    if real.dtype != fake.dtype:
        dtype = torch.promote_types(real.dtype, fake.dtype)
        real, fake = real.to(dtype), fake.to(dtype)
    return real, fake, alpha.reshape(batch)


# ---------------------------------------------------------------- public functions

def interpolate(real: torch.Tensor, fake: torch.Tensor, alpha: torch.Tensor,
                backend: str = "auto") -> torch.Tensor:
    """x_hat = alpha[b] * real + (1 - alpha[b]) * fake; alpha is [B] or [B, 1, ..., 1] (any
    float dtype); real and fake of different float dtypes are promoted, as in the expression.
    The result has their dtype, not alpha's: an alpha of another dtype does not promote it."""
    real, fake, alpha = interpolation_inputs(real, fake, alpha)
    return interpolate_with(backends.resolve(OP, backend, real.is_cuda, "interpolate"), real, fake, alpha)


def interpolate_with(backend: str, real, fake, alpha):
    """interpolate() with the backend already resolved."""
    if backend == "torch" or transformed(real, fake, alpha):
        return interpolate_reference(real, fake, alpha)
    alpha = alpha.to(acc_dtype(real.dtype))
    if (real.requires_grad or fake.requires_grad or alpha.requires_grad) and torch.is_grad_enabled():
        return _Interpolate.apply(real, fake, alpha, backend)
    return kernel(backend, "interpolate")(real, fake, alpha)


def per_sample_norm(x: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """||x[b]||_2 over all non-batch dims: [B] in fp32 (fp64 for fp64 input)."""
    check_float_tensor(x, "per_sample_norm: x")
    return per_sample_norm_with(backends.resolve(OP, backend, x.is_cuda, "per_sample_norm"), x)


def per_sample_norm_with(backend: str, x):
    """per_sample_norm() with the backend already resolved."""
    if backend == "torch" or transformed(x):
        return per_sample_norm_reference(x)
    if x.requires_grad and torch.is_grad_enabled():
        return _NormPenalty.apply(x, 0.0, 0.0, backend, False)
    return kernel(backend, "norm_penalty")(x, 0.0, 0.0)[0]


def norm_penalty(grad: torch.Tensor, weight: float = 10.0, center: float = 1.0,
                 backend: str = "auto") -> torch.Tensor:
    """weight * mean_b (||grad[b]||_2 - center)^2, the tail of WGAN-GP (R1: center=0,
    weight=gamma/2). A 0-dim tensor in fp32 (fp64 for fp64 input). weight is a finite number
    >= 0, center a finite number."""
    check_float_tensor(grad, "norm_penalty: grad")
    check_number(weight, "norm_penalty: weight", nonnegative=True)
    check_number(center, "norm_penalty: center")
    return norm_penalty_with(backends.resolve(OP, backend, grad.is_cuda, "norm_penalty"), grad,
                             weight, center)


def norm_penalty_with(backend: str, grad, weight, center):
    """norm_penalty() with the backend already resolved."""
    weight, center = float(weight), float(center)
    if backend == "torch" or transformed(grad):
        return penalty_reference(grad, weight, center)
    if grad.requires_grad and torch.is_grad_enabled():
        return _NormPenalty.apply(grad, weight, center, backend, True)
    return kernel(backend, "norm_penalty")(grad, weight, center)[1]
