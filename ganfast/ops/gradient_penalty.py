"""Gradient-penalty ops: the interpolation x_hat and the per-sample gradient norm.

    ganfast::interpolate(real, fake, alpha)  x_hat = fake + alpha[b] * (real - fake)
    ganfast::per_sample_norm(x)              ||x[b]||_2 over all non-batch dims, [B], fp32/fp64
    ganfast::per_sample_norm_backward(gn, x, norm)
                                             gn[b] / norm[b] * x[b], 0 where norm[b] == 0

Each is a torch.library custom op whose default implementation is the PyTorch reference (the
CPU path and the test oracle); the CUDA kernel dispatches to Triton (kernels/) or ganfast._C
(csrc/) by the `backend` argument, already resolved by the caller (ganfast.backends).

The penalty itself, weight * mean((norm - center)^2), is a handful of [B]-sized ops in
ganfast/losses.py: the passes over the gradient tensor (one forward, one backward) are here.
The backward is an op of its own with registered autograd, so the penalty can be
differentiated again (gradgradcheck) with any backend.
"""

import torch

from .. import _extension, backends
from .layout import acc_dtype, from_rows, per_sample, row_order, to_rows

OP = "gradient_penalty"  # the name backends and the auto table know these ops by


def _row_kernels(backend: str):
    """The module of [B, N] row kernels for a GPU backend (same names in both)."""
    if backend == "triton":
        from ..kernels import gradient_penalty as triton_kernels

        return triton_kernels
    if backend == "cuda":
        loaded, why = _extension.load()  # registers torch.ops.ganfast_C
        if not loaded:
            raise backends.BackendUnavailable(f"ganfast backend 'cuda' cannot run: {why}")
        return torch.ops.ganfast_C
    raise ValueError(f"no row kernels for backend {backend!r}")


# ---------------------------------------------------------------- interpolate

def interpolate_reference(real, fake, alpha):
    a = per_sample(alpha, real)
    x_hat = fake.to(alpha.dtype) + a * (real.to(alpha.dtype) - fake.to(alpha.dtype))
    return torch.empty_like(real).copy_(x_hat)


@torch.library.custom_op("ganfast::interpolate", mutates_args=())
def _interpolate(real: torch.Tensor, fake: torch.Tensor, alpha: torch.Tensor,
                 backend: str) -> torch.Tensor:
    return interpolate_reference(real, fake, alpha)


@_interpolate.register_kernel("cuda")
def _interpolate_cuda(real, fake, alpha, backend):
    if backend == "torch":
        return interpolate_reference(real, fake, alpha)
    order = row_order(real)
    rows = _row_kernels(backend).interpolate(to_rows(real, order), to_rows(fake, order),
                                             alpha.contiguous())
    return from_rows(rows, real, order)


@_interpolate.register_fake
def _(real, fake, alpha, backend):
    return torch.empty_like(real)


def _interpolate_setup(ctx, inputs, output):
    real, fake, alpha, _ = inputs
    ctx.save_for_backward(real, fake, alpha)


def _interpolate_backward(ctx, grad):
    real, fake, alpha = ctx.saved_tensors
    need_real, need_fake, need_alpha, _ = ctx.needs_input_grad
    a = per_sample(alpha, grad)
    grad_acc = grad.to(alpha.dtype)
    grad_real = (grad_acc * a).to(real.dtype) if need_real else None
    grad_fake = (grad_acc * (1 - a)).to(fake.dtype) if need_fake else None
    grad_alpha = None
    if need_alpha:
        diff = real.to(alpha.dtype) - fake.to(alpha.dtype)
        grad_alpha = (grad_acc * diff).flatten(1).sum(1)
    return grad_real, grad_fake, grad_alpha, None


_interpolate.register_autograd(_interpolate_backward, setup_context=_interpolate_setup)


def interpolate(real: torch.Tensor, fake: torch.Tensor, alpha: torch.Tensor,
                backend: str = "auto") -> torch.Tensor:
    """x_hat = alpha[b] * real + (1 - alpha[b]) * fake; alpha is [B] (any float dtype)."""
    name = backends.resolve(OP, backend, real.device)
    return _interpolate(real, fake, alpha.to(acc_dtype(real.dtype)), name)


# ---------------------------------------------------------------- per-sample norm

def per_sample_norm_reference(x):
    return torch.linalg.vector_norm(x.reshape(x.shape[0], -1), ord=2, dim=1,
                                    dtype=acc_dtype(x.dtype))


def _safe_inverse_scale(grad_norm, norm):
    """gn / norm with 0 where norm == 0: the gradient of ||x|| at x = 0 is taken as 0 (as torch
    does), so a zero gradient gives a finite penalty gradient instead of 0/0. A NaN norm
    propagates."""
    nonzero = norm != 0
    return torch.where(nonzero, grad_norm / torch.where(nonzero, norm, 1), 0)


@torch.library.custom_op("ganfast::per_sample_norm", mutates_args=())
def _per_sample_norm(x: torch.Tensor, backend: str) -> torch.Tensor:
    return per_sample_norm_reference(x)


@_per_sample_norm.register_kernel("cuda")
def _per_sample_norm_cuda(x, backend):
    if backend == "torch":
        return per_sample_norm_reference(x)
    rows = to_rows(x, row_order(x))
    return _row_kernels(backend).sum_squares_per_sample(rows).sqrt()


@_per_sample_norm.register_fake
def _(x, backend):
    return x.new_empty(x.shape[0], dtype=acc_dtype(x.dtype))


def _per_sample_norm_setup(ctx, inputs, output):
    x, backend = inputs
    ctx.backend = backend
    ctx.save_for_backward(x, output)


def _per_sample_norm_grad(ctx, grad_norm):
    x, norm = ctx.saved_tensors
    return _per_sample_norm_backward(grad_norm, x, norm, ctx.backend), None


_per_sample_norm.register_autograd(_per_sample_norm_grad, setup_context=_per_sample_norm_setup)


# ---------------------------------------------------------------- its backward

def per_sample_norm_backward_reference(grad_norm, x, norm):
    coef = per_sample(_safe_inverse_scale(grad_norm, norm), x)
    return torch.empty_like(x).copy_(coef * x.to(coef.dtype))


@torch.library.custom_op("ganfast::per_sample_norm_backward", mutates_args=())
def _per_sample_norm_backward(grad_norm: torch.Tensor, x: torch.Tensor, norm: torch.Tensor,
                              backend: str) -> torch.Tensor:
    return per_sample_norm_backward_reference(grad_norm, x, norm)


@_per_sample_norm_backward.register_kernel("cuda")
def _per_sample_norm_backward_cuda(grad_norm, x, norm, backend):
    if backend == "torch":
        return per_sample_norm_backward_reference(grad_norm, x, norm)
    order = row_order(x)
    acc = acc_dtype(x.dtype)
    rows = _row_kernels(backend).norm_backward(grad_norm.to(acc).contiguous(), to_rows(x, order),
                                               norm.to(acc).contiguous())
    return from_rows(rows, x, order)


@_per_sample_norm_backward.register_fake
def _(grad_norm, x, norm, backend):
    return torch.empty_like(x)


def _per_sample_norm_backward_setup(ctx, inputs, output):
    grad_norm, x, norm, backend = inputs
    ctx.backend = backend
    ctx.save_for_backward(grad_norm, x, norm)


def _per_sample_norm_backward_grad(ctx, grad_out):
    # out = (gn / n) * x, with n = ||x|| an input of its own (autograd carries its dependence
    # on x through per_sample_norm's backward). Partials, 0 where n == 0:
    #   d/dx = (gn / n) * v,   d/dgn = <v, x> / n,   d/dn = -gn <v, x> / n^2
    grad_norm, x, norm = ctx.saved_tensors
    need_gn, need_x, need_norm, _ = ctx.needs_input_grad
    grad_x = (_per_sample_norm_backward(grad_norm, grad_out, norm, ctx.backend)
              if need_x else None)
    grad_gn = grad_n = None
    if need_gn or need_norm:
        inner = (grad_out.to(norm.dtype) * x.to(norm.dtype)).flatten(1).sum(1)
        inner_over_n = _safe_inverse_scale(inner, norm)
        grad_gn = inner_over_n if need_gn else None
        grad_n = -_safe_inverse_scale(grad_norm * inner_over_n, norm) if need_norm else None
    return grad_gn, grad_x, grad_n, None


_per_sample_norm_backward.register_autograd(_per_sample_norm_backward_grad,
                                            setup_context=_per_sample_norm_backward_setup)


def per_sample_norm(x: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """||x[b]||_2 over all non-batch dims: [B] in fp32 (fp64 for fp64 input)."""
    return _per_sample_norm(x, backends.resolve(OP, backend, x.device))
