"""Gradient penalties: WGAN-GP (Gulrajani et al. 2017) and R1/R2 (Mescheder et al. 2018).

Both follow the code users already run, so values are comparable with it:

    # WGAN-GP
    alpha = torch.rand(B)
    x_hat = alpha*real + (1-alpha)*fake
    g = grad(critic(x_hat).sum(), x_hat, create_graph=True)
    weight * ((g.flatten(1).norm(dim=1) - center)**2).mean()

    # R1 (R2: pass the fakes)
    x.requires_grad_(True)
    g = grad(critic(x).sum(), x, create_graph=True)
    gamma/2 * g.flatten(1).norm(dim=1).pow(2).mean()

ganfast fuses the passes over the big tensors (the interpolation, the per-sample norm with the
penalty's tail, and its backward); the critic runs as the user wrote it. The backend is
resolved once per call and used for every op of it.

Mixed precision: with a critic under torch.autocast, its input gradients are computed in half
precision and can underflow to zero or overflow. Pass the GradScaler you train with as
`scaler=`: the inner gradient is taken of the scaled output and unscaled before the norm (the
recipe in PyTorch's AMP docs, "Gradient penalty"). An overflow then shows up as inf in the
critic's gradients and `scaler.step` skips that step, as for any other loss.
"""

import torch

from . import backends
from .ops.gradient_penalty import (
    OP,
    check_float_tensor,
    check_number,
    interpolate_with,
    interpolation_inputs,
    norm_penalty_with,
)


def _check_batch(t: torch.Tensor, name: str) -> None:
    # name: "<function>: <argument>"
    if t.shape[0] == 0:
        raise ValueError(f"{name} must have a non-empty batch dimension [B, ...], got shape "
                         f"{list(t.shape)}")


def _check_scaler(scaler, caller: str) -> None:
    # (the class itself has the methods too: `scaler=GradScaler` would fail later, inside the
    # penalty, with "scale() missing 1 required positional argument")
    if scaler is not None and (isinstance(scaler, type) or not (
            hasattr(scaler, "scale") and hasattr(scaler, "get_scale"))):
        what = f"the class {scaler.__name__}" if isinstance(scaler, type) \
            else type(scaler).__name__
        raise TypeError(f"{caller}: scaler must be the torch.amp.GradScaler instance you train "
                        f"with, or None; got {what}")


def _needs_autograd(name: str) -> None:
    if torch.is_inference_mode_enabled():
        raise RuntimeError(f"{name} takes an input gradient, which needs autograd: it cannot run "
                           "under torch.inference_mode()")


def _check_critic_output(out, batch: int, caller: str) -> torch.Tensor:
    # Any [B, ...] output: [B], [B, 1], DCGAN's [B, 1, 1, 1] or a PatchGAN's [B, 1, H, W], whose
    # per-sample sum is what grad_outputs=ones_like(out) differentiates in the canonical code;
    # for a batch of one, also the scalar that a squeezed [1] leaves.
    if not isinstance(out, torch.Tensor) or (out.shape[:1] != (batch,) and
                                             not (out.dim() == 0 and batch == 1)):
        shape = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        hint = "" if not isinstance(out, (tuple, list)) else (
            "; a critic with several outputs (AC-GAN's score and class logits) is passed as a "
            "closure that picks the score, `lambda x: D(x)[0]`")
        raise ValueError(f"{caller}: critic output must have a batch dimension first, [B, ...] "
                         f"with B={batch} (one score per sample, or a map of them), got "
                         f"{shape}{hint}")
    if not out.requires_grad:
        # Under inference_mode, with grad mode switched back on inside it (enable_grad), the
        # early refusal did not run: say why there is no graph. (Checked only on failure.)
        _needs_autograd(caller)
        raise ValueError(f"{caller}: critic output does not depend on its input (no autograd "
                         "graph: was it computed under torch.no_grad() or detached?); the "
                         "penalty is a gradient of the critic at its input")
    return out


def _input_gradient(critic, x: torch.Tensor, scaler, caller: str) -> torch.Tensor:
    """d sum(critic(x)) / dx, kept differentiable (create_graph) for the penalty's backward."""
    try:
        out = critic(x)
    except TypeError:
        # Checked only once the call has failed (no cost to a valid call). The likely slip:
        # the critic's output passed in its place, as in `r1_penalty(real_pred, real_img)`
        # ports of StyleGAN code, which Python reports as "'Tensor' object is not callable".
        if callable(critic):
            raise
        raise TypeError(f"{caller}: critic must be callable, the critic module (or a closure "
                        f"such as `lambda x: D(x, labels)`) that the penalty runs on its own "
                        f"input, not its output; got {type(critic).__name__}") from None
    out = _check_critic_output(out, x.shape[0], caller).sum()
    if scaler is not None:
        out = scaler.scale(out)
    (grad,) = torch.autograd.grad(out, x, create_graph=True, allow_unused=True)
    if grad is None:  # say so, rather than autograd's advice to pass allow_unused
        raise ValueError(f"{caller}: critic output does not depend on its input: the critic "
                         "must compute its score from the images it is given (a closure such "
                         "as `lambda x: D(x, labels)` passes them on)")
    if scaler is not None:
        grad = grad * (1.0 / scaler.get_scale())
    return grad


def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor, *, weight: float = 10.0,
                     center: float = 1.0, alpha: torch.Tensor | None = None,
                     backend: str = "auto", scaler=None) -> torch.Tensor:
    """WGAN-GP: weight * mean_b (||grad_x critic(x_hat)_b|| - center)^2.

    x_hat = alpha[b] * real + (1 - alpha[b]) * fake with alpha ~ U(0, 1) per sample unless
    given (shape [B], or [B, 1, ..., 1] as the canonical code shapes it); real and fake of
    different float dtypes (an autocast generator's fakes) are promoted, as in that expression;
    x_hat has their dtype (alpha's does not promote it).
    The critic returns [B, ...] ([B], [B, 1], a PatchGAN's [B, 1, H, W]: its scores are summed
    per sample). Returns a scalar in fp32 (fp64 for fp64 inputs) whose backward reaches the
    critic's parameters, and real/fake when they require grad; under torch.no_grad, its value
    without a graph.

    `critic` is any callable of the images: a conditional critic takes its labels through a
    closure, `gradient_penalty(lambda x: D(x, labels), real, fake)`. weight is a finite number
    >= 0 (0: no penalty), center a finite number.
    """
    check_number(weight, "gradient_penalty: weight", nonnegative=True)
    check_number(center, "gradient_penalty: center")
    _check_scaler(scaler, "gradient_penalty")
    if not torch.is_grad_enabled():  # under no_grad (logging, say): its value, without a graph
        _needs_autograd("gradient_penalty")
        with torch.enable_grad():
            return gradient_penalty(critic, real, fake, weight=weight, center=center,
                                    alpha=alpha, backend=backend, scaler=scaler).detach()
    if alpha is None:
        check_float_tensor(real, "gradient_penalty: real")  # its batch and device draw alpha
        alpha = torch.rand(real.shape[0], device=real.device)
    real, fake, alpha = interpolation_inputs(real, fake, alpha, "gradient_penalty")
    _check_batch(real, "gradient_penalty: real")
    backend = backends.resolve(OP, backend, real.is_cuda, "gradient_penalty")

    x_hat = interpolate_with(backend, real, fake, alpha)
    if not x_hat.requires_grad:  # real and fake are data: x_hat is the leaf we differentiate at
        x_hat.requires_grad_(True)
    grad = _input_gradient(critic, x_hat, scaler, "gradient_penalty")
    return norm_penalty_with(backend, grad, weight, center)


def r1_penalty(critic, x: torch.Tensor, *, gamma: float = 10.0, backend: str = "auto",
               scaler=None) -> torch.Tensor:
    """R1: gamma / 2 * mean_b ||grad_x critic(x)_b||^2 at the reals (R2: pass the fakes).

    `x` is detached: the penalty's backward reaches the critic's parameters only. `critic` as
    in gradient_penalty (a closure for a conditional one: `lambda x: D(x, labels)`). gamma is
    a finite number >= 0.
    """
    check_float_tensor(x, "r1_penalty: x")
    _check_batch(x, "r1_penalty: x")
    check_number(gamma, "r1_penalty: gamma", nonnegative=True)
    _check_scaler(scaler, "r1_penalty")
    if not torch.is_grad_enabled():  # as gradient_penalty
        _needs_autograd("r1_penalty")
        with torch.enable_grad():
            return r1_penalty(critic, x, gamma=gamma, backend=backend, scaler=scaler).detach()
    backend = backends.resolve(OP, backend, x.is_cuda, "r1_penalty")
    # (an inference-mode tensor cannot require grad: its copy can)
    x = (x.clone() if x.is_inference() else x.detach()).requires_grad_(True)
    grad = _input_gradient(critic, x, scaler, "r1_penalty")
    return norm_penalty_with(backend, grad, gamma / 2, 0.0)
