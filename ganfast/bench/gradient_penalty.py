"""Benchmark cases for the gradient penalty: ganfast's backends beside the canonical PyTorch
code users run today and torch.compile of it.

Modes:
  interp   x_hat = alpha*real + (1-alpha)*fake               bytes: read 2, write 1 tensor
  fwd      10 * mean((||g_b|| - 1)^2) from a gradient g       bytes: read g once
  bwd      the gradient of that penalty w.r.t. g (graph kept)   bytes: read g, write dg
  fwd+bwd  both                                               bytes: read g twice, write dg
  full     a whole WGAN-GP on a DCGAN-64 critic, with backward (time only: the critic dominates)
"""

import functools

import torch

from ..losses import gradient_penalty
from ..ops.gradient_penalty import interpolate, norm_penalty
from ..train.models import DCGANCritic
from .cases import Case

BACKENDS = ("cuda", "triton", "torch")


def canonical_interp(real, fake, alpha):
    a = alpha.view(-1, *([1] * (real.dim() - 1)))
    return a * real + (1 - a) * fake


def canonical_penalty(g):
    return 10 * ((g.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


def ganfast_penalty(backend):
    return lambda g: norm_penalty(g, 10.0, 1.0, backend)


def canonical_wgan_gp(critic, real, fake):
    alpha = torch.rand(real.shape[0], device=real.device, dtype=real.dtype)
    x_hat = canonical_interp(real, fake, alpha).requires_grad_(True)
    (g,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return canonical_penalty(g)


def _forward_backward(penalty, g):
    return lambda: torch.autograd.grad(penalty(g), g)


def _backward_only(penalty, g):
    graph = {}  # built on the first (warm-up) call: a skipped backend never builds one

    def backward():
        if "value" not in graph:
            graph["value"] = penalty(g)
        return torch.autograd.grad(graph["value"], g, retain_graph=True)

    return backward


def cases(shapes, dtypes, device, backends, with_compile=True):
    """Every (mode, shape, dtype) group; each starts with its eager baseline."""
    for shape in shapes:
        for dtype in dtypes:
            yield from _group_cases(shape, dtype, device, backends, with_compile)


def _group_cases(shape, dtype, device, backends, with_compile):
    # A function of its own so that each group's closures hold that group's tensors.
    real = torch.randn(shape, device=device, dtype=dtype)
    fake = torch.randn(shape, device=device, dtype=dtype)
    # alpha in the inputs' dtype: a float32 alpha would promote eager's half-precision
    # interpolation to a float32 result, more work than ganfast's (which keeps the dtype)
    alpha = torch.rand(shape[0], device=device, dtype=dtype)
    g = torch.randn(shape, device=device, dtype=dtype, requires_grad=True)
    size = real.numel() * real.element_size()
    key = dict(shape=list(shape), dtype=str(dtype).removeprefix("torch."))
    interp = {"eager": canonical_interp}
    penalty = {"eager": canonical_penalty}
    if with_compile:
        interp["compile"] = torch.compile(canonical_interp)
        penalty["compile"] = torch.compile(canonical_penalty)
    for b in backends:
        interp[b] = functools.partial(interpolate, backend=b)
        penalty[b] = ganfast_penalty(b)

    for name, fn in interp.items():
        yield Case("interp", key, name, lambda fn=fn: fn(real, fake, alpha), 3 * size)
    for name, fn in penalty.items():
        yield Case("fwd", key, name, lambda fn=fn: fn(g), size)
    for name, fn in penalty.items():
        # A compiled backward donates its buffers and cannot be replayed with retain_graph:
        # compile is timed on fwd and fwd+bwd only.
        if name != "compile":
            yield Case("bwd", key, name, _backward_only(fn, g), 2 * size)
    for name, fn in penalty.items():
        yield Case("fwd+bwd", key, name, _forward_backward(fn, g), 3 * size)


def full_cases(batch, dtype, device, backends, reps=60):
    """A full WGAN-GP with backward on a DCGAN-64 critic, `reps` timed calls each on CPU."""
    critic = DCGANCritic().to(device=device, dtype=dtype)
    real = torch.randn(batch, 3, 64, 64, device=device, dtype=dtype)
    fake = torch.randn(batch, 3, 64, 64, device=device, dtype=dtype)
    key = dict(shape=[batch, 3, 64, 64], dtype=str(dtype).removeprefix("torch."))

    def run(penalty_fn):
        def step():
            critic.zero_grad(set_to_none=True)
            penalty_fn().backward()
        return step

    yield Case("full", key, "eager", run(lambda: canonical_wgan_gp(critic, real, fake)), None, reps)
    for b in backends:
        yield Case("full", key, b,
                   run(lambda b=b: gradient_penalty(critic, real, fake, backend=b)), None, reps)
