"""Gradient penalty on CPU: the reference path against float64 canonical code, the ops'
autograd (gradcheck, gradgradcheck), registration (opcheck, torch.compile), edge cases, AMP,
and input validation."""

import copy
import functools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import ganfast
from ganfast import _extension
from ganfast.ops import _library
from ganfast.ops import gradient_penalty as gp
from ganfast.ops.gradient_penalty import interpolate, norm_penalty, per_sample_norm

from . import canonical
from .dispatch_count import RecordOps

ODD_SHAPES = [(1, 3), (3, 7), (2, 3, 5, 7), (5, 1, 9, 3), (3, 2, 3, 4, 5)]
# dtype: tolerance of ganfast's result against the float64 canonical value
DTYPE_TOL = [(torch.float64, 1e-10), (torch.float32, 2e-5), (torch.bfloat16, 5e-2)]


def _pair(shape, dtype=torch.float64):
    return torch.randn(shape, dtype=dtype), torch.randn(shape, dtype=dtype)


# ---------------------------------------------------------------- against canonical code

@pytest.mark.parametrize("shape", ODD_SHAPES)
@pytest.mark.parametrize("dtype,tol", DTYPE_TOL)
def test_gradient_penalty_matches_canonical_float64(shape, dtype, tol):
    real, fake = _pair(shape)
    alpha = torch.rand(shape[0], dtype=torch.float64)
    critic, critic64 = _assert_penalty_matches_canonical(real, fake, alpha, dtype, tol,
                                                         weight=7.0, center=0.5)
    # double backward: the penalty's gradient reaches the critic's parameters
    assert sum(e.abs().sum() for e in canonical.param_grads(critic64)) > 0


def _assert_penalty_matches_canonical(real, fake, alpha, dtype, tol, weight, center):
    """ganfast.gradient_penalty in `dtype` against the float64 canonical WGAN-GP on the same
    critic: the value and, through the double backward, the critic's parameter gradients.
    Returns the two critics, whose gradients stay for further checks."""
    critic64 = canonical.critic_for(tuple(real.shape), torch.float64)
    critic = copy.deepcopy(critic64).to(dtype)
    expected = canonical.wgan_gp(critic64, real, fake, alpha, weight=weight, center=center)
    expected.backward()
    got = ganfast.gradient_penalty(critic, real.to(dtype), fake.to(dtype), alpha=alpha,
                                   weight=weight, center=center)
    got.backward()
    torch.testing.assert_close(got.double(), expected, rtol=tol, atol=tol)
    _assert_param_grads_close(critic, critic64, tol)
    return critic, critic64


def _assert_param_grads_close(critic, critic64, tol):
    for g, e in zip(canonical.param_grads(critic), canonical.param_grads(critic64), strict=True):
        torch.testing.assert_close(g.double(), e, rtol=tol, atol=tol * max(e.abs().max().item(), 1))


@pytest.mark.parametrize("shape", ODD_SHAPES)
@pytest.mark.parametrize("dtype,tol", DTYPE_TOL)
def test_r1_penalty_matches_canonical_float64(shape, dtype, tol):
    critic64 = canonical.critic_for(shape, torch.float64)
    critic = copy.deepcopy(critic64).to(dtype)
    x = torch.randn(shape, dtype=torch.float64)

    expected = canonical.r1(critic64, x, gamma=3.0)
    expected.backward()
    got = ganfast.r1_penalty(critic, x.to(dtype), gamma=3.0)
    got.backward()

    torch.testing.assert_close(got.double(), expected, rtol=tol, atol=tol)
    _assert_param_grads_close(critic, critic64, tol)


def _strided(shape, dtype, reverse):
    """A fresh random tensor of `shape`; with reverse, a view whose strides run backwards
    (nothing contiguous about it)."""
    if not reverse:
        return torch.randn(shape, dtype=dtype)
    order = list(reversed(range(len(shape))))
    return torch.randn([shape[d] for d in order], dtype=dtype).permute(order)


@settings(max_examples=40, deadline=None)
@given(shape=st.lists(st.integers(1, 6), min_size=2, max_size=5),
       dtype_tol=st.sampled_from(DTYPE_TOL[:2]), center=st.sampled_from([1.0, 0.0, 0.5]),
       reverse=st.booleans(), seed=st.integers(0, 2**16))
def test_drawn_shapes_and_strides_match_canonical(shape, dtype_tol, center, reverse, seed):
    # The public functions on CPU against the float64 canonical code: the penalty and its
    # gradients (double backward into the critic), R1, and the ops on their own.
    dtype, tol = dtype_tol
    torch.manual_seed(seed)
    real, fake = _strided(shape, torch.float64, reverse), _strided(shape, torch.float64, reverse)
    alpha = torch.rand(shape[0], dtype=torch.float64)
    critic, critic64 = _assert_penalty_matches_canonical(real, fake, alpha, dtype, tol,
                                                         weight=3.0, center=center)

    torch.testing.assert_close(ganfast.r1_penalty(critic, real.to(dtype), gamma=2.0).double(),
                               canonical.r1(critic64, real, gamma=2.0), rtol=tol, atol=tol)

    x = real.to(dtype).requires_grad_(True)
    x64 = real.clone().requires_grad_(True)
    norms, norms64 = per_sample_norm(x), x64.flatten(1).norm(2, dim=1)
    torch.testing.assert_close(norms.double(), norms64, rtol=tol, atol=tol)
    weights = torch.randn(shape[0], dtype=torch.float64)
    (grad,) = torch.autograd.grad(norms, x, weights.to(dtype))
    (grad64,) = torch.autograd.grad(norms64, x64, weights)
    torch.testing.assert_close(grad.double(), grad64, rtol=tol, atol=tol)
    torch.testing.assert_close(interpolate(real.to(dtype), fake.to(dtype), alpha.to(dtype)).double(),
                               canonical.interpolation(real, fake, alpha), rtol=tol, atol=tol)


def test_default_alpha_is_uniform_per_sample():
    # Same seed, same draw: the default alpha is torch.rand(B), as in the canonical code.
    shape = (6, 2, 5, 5)
    critic = canonical.critic_for(shape, torch.float64)
    real, fake = _pair(shape)
    torch.manual_seed(123)
    got = ganfast.gradient_penalty(critic, real, fake)
    torch.manual_seed(123)
    alpha = torch.rand(shape[0])
    expected = canonical.wgan_gp(critic, real, fake, alpha.double())
    torch.testing.assert_close(got, expected)


def test_gradients_reach_real_and_fake_when_they_require_grad():
    shape = (3, 4, 5)
    critic = canonical.critic_for(shape, torch.float64)
    real, fake = (t.requires_grad_(True) for t in _pair(shape))
    alpha = torch.rand(3, dtype=torch.float64)
    ganfast.gradient_penalty(critic, real, fake, alpha=alpha).backward()

    real2, fake2 = (t.detach().clone().requires_grad_(True) for t in (real, fake))
    a = alpha.view(-1, 1, 1)
    x_hat = a * real2 + (1 - a) * fake2  # canonical, with the graph kept to real and fake
    (g,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    (10 * ((g.flatten(1).norm(dim=1) - 1) ** 2).mean()).backward()
    torch.testing.assert_close(real.grad, real2.grad)
    torch.testing.assert_close(fake.grad, fake2.grad)


# ---------------------------------------------------------------- layouts

@pytest.mark.parametrize("make_layout", [
    lambda t: t.contiguous(memory_format=torch.channels_last),
    lambda t: t.transpose(2, 3),                       # non-contiguous, dense
    lambda t: torch.stack([t, -t], dim=-1)[..., 0],    # non-contiguous, not dense
], ids=["channels_last", "transposed", "strided"])
def test_layouts_give_the_contiguous_result(make_layout):
    real, fake = _pair((3, 4, 6, 6))
    alpha = torch.rand(3, dtype=torch.float64)
    x_hat = interpolate(make_layout(real), make_layout(fake), alpha)
    torch.testing.assert_close(x_hat, canonical.interpolation(make_layout(real),
                                                              make_layout(fake), alpha))
    assert x_hat.stride() == torch.empty_like(make_layout(real)).stride()
    g = make_layout(real).requires_grad_(True)
    norms = per_sample_norm(g)
    torch.testing.assert_close(norms, real.flatten(1).norm(dim=1))  # order-free per sample
    (grad,) = torch.autograd.grad(norms.sum(), g)
    torch.testing.assert_close(grad, make_layout(real) / per_sample_norm(real).view(-1, 1, 1, 1))


# ---------------------------------------------------------------- the ops over layouts and dtypes

# Every dtype the ops take, with the tolerance of their result against float64 (of the largest
# magnitude: fp16 and bf16 round the inputs and the result alike)
OP_DTYPE_TOL = {torch.float64: 1e-10, torch.float32: 2e-5, torch.float16: 2e-3,
                torch.bfloat16: 1.6e-2}
LAYOUTS = ["contiguous", "transposed", "stepped", "expanded", "batch inner", "channels_last"]
# 1-D (a score per sample) to 5-D, odd sizes and batches of 1
op_shapes = st.integers(1, 5).flatmap(lambda dims: st.tuples(
    st.sampled_from([1, 2, 3, 5, 7]), *[st.sampled_from([1, 2, 3, 5])] * (dims - 1)))


def _in_layout(shape, dtype, layout, generator):
    """A fresh random tensor of `shape` and `dtype` in a layout: transposed (its last two dims),
    every other element of a larger tensor, expanded (stride 0 along the batch and the last
    dim), its batch dim innermost in memory, or channels_last (4-D and 5-D; else contiguous)."""
    def randn(size):
        return torch.randn(size, dtype=torch.float64, generator=generator).to(dtype)

    if layout == "transposed" and len(shape) >= 2:
        return randn([*shape[:-2], shape[-1], shape[-2]]).transpose(-1, -2)
    if layout == "stepped":
        return randn([2 * n + 1 for n in shape])[tuple(slice(1, None, 2) for _ in shape)]
    if layout == "expanded":
        base = [1, *shape[1:-1], 1] if len(shape) > 1 else [1]
        return randn(base).expand(shape)
    if layout == "batch inner":
        return randn([*shape[1:], shape[0]]).movedim(-1, 0)
    if layout == "channels_last" and len(shape) in (4, 5):
        return randn(shape).contiguous(memory_format=torch.channels_last if len(shape) == 4
                                       else torch.channels_last_3d)
    return randn(shape)


def _assert_close_to(got, expected, tol, what):
    scale = max(float(expected.detach().abs().max()) if expected.numel() else 0.0, 1.0)
    torch.testing.assert_close(got.double(), expected, rtol=tol, atol=tol * scale,
                               msg=lambda message: f"{what}: {message}")


@settings(max_examples=60, deadline=None)
@given(shape=op_shapes, dtype=st.sampled_from(list(OP_DTYPE_TOL)),
       real_layout=st.sampled_from(LAYOUTS), fake_layout=st.sampled_from(LAYOUTS),
       alpha_dtype=st.sampled_from(list(OP_DTYPE_TOL)), alpha_broadcast=st.booleans(),
       seed=st.integers(0, 2**30))
def test_interpolate_over_layouts_and_dtypes_matches_float64(shape, dtype, real_layout,
                                                             fake_layout, alpha_dtype,
                                                             alpha_broadcast, seed):
    # Values and the gradients to real, fake and alpha, real and fake in layouts of their own;
    # alpha [B] or [B, 1, ..., 1] of any dtype, which does not promote the result.
    gen = torch.Generator().manual_seed(seed)
    real = _in_layout(shape, dtype, real_layout, gen).requires_grad_(True)
    fake = _in_layout(shape, dtype, fake_layout, gen).requires_grad_(True)
    alpha64 = torch.rand(shape[0], dtype=torch.float64, generator=gen)
    per_sample = [-1] + [1] * (len(shape) - 1)
    alpha = alpha64.to(alpha_dtype)
    alpha = (alpha.view(per_sample) if alpha_broadcast else alpha).requires_grad_(True)
    out = interpolate(real, fake, alpha)
    assert out.dtype == dtype and out.shape == real.shape

    real64, fake64, alpha64 = (t.detach().double().requires_grad_(True)
                               for t in (real, fake, alpha.reshape(-1)))
    a = alpha64.view(per_sample)
    expected = a * real64 + (1 - a) * fake64
    tol = max(OP_DTYPE_TOL[dtype], OP_DTYPE_TOL[alpha_dtype])
    _assert_close_to(out, expected, 2 * tol, "interpolate")
    upstream = torch.randn(shape, dtype=torch.float64, generator=gen)
    grads = torch.autograd.grad(out, (real, fake, alpha), upstream.to(dtype))
    expected_grads = torch.autograd.grad(expected, (real64, fake64, alpha64), upstream)
    assert [g.dtype for g in grads] == [dtype, dtype, alpha_dtype] and grads[2].shape == alpha.shape
    _assert_close_to(grads[0], expected_grads[0], 2 * tol, "grad of real")
    _assert_close_to(grads[1], expected_grads[1], 2 * tol, "grad of fake")
    # alpha's gradient sums a sample's elements: its rounding grows with their number
    per_sample_elements = upstream[0].numel()
    _assert_close_to(grads[2].reshape(-1), expected_grads[2], 4 * tol * per_sample_elements ** 0.5,
                     "grad of alpha")


@settings(max_examples=60, deadline=None)
@given(shape=op_shapes, dtype=st.sampled_from(list(OP_DTYPE_TOL)), layout=st.sampled_from(LAYOUTS),
       center=st.sampled_from([1.0, 0.0, 0.5, -0.3]), weight=st.sampled_from([10.0, 2.5, 0.0]),
       zero_sample=st.booleans(), seed=st.integers(0, 2**30))
def test_norm_ops_over_layouts_and_dtypes_match_float64(shape, dtype, layout, center, weight,
                                                        zero_sample, seed):
    # per_sample_norm and norm_penalty on gradients in every layout and dtype: values, first
    # derivatives and, away from a zero sample (where the norm has none), Hessian-vector
    # products; a zero sample's first derivative is 0, and finite (center 0 is smooth there).
    gen = torch.Generator().manual_seed(seed)
    x = _in_layout(shape, dtype, layout, gen)
    zero_sample = zero_sample and shape[0] > 1 and layout != "expanded"  # (expanded: all alike)
    if zero_sample:
        x = x.clone()  # (keeps the layout)
        x[0] = 0
    x.requires_grad_(True)
    x64 = x.detach().double().requires_grad_(True)
    tol = OP_DTYPE_TOL[dtype]
    direction = torch.randn(shape, dtype=torch.float64, generator=gen)

    norms, norms64 = per_sample_norm(x), x64.reshape(shape[0], -1).norm(2, dim=1)
    assert norms.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    _assert_close_to(norms, norms64, tol, "per_sample_norm")
    weights = torch.randn(shape[0], dtype=torch.float64, generator=gen)
    (grad,) = torch.autograd.grad(norms, x, weights.to(norms.dtype), create_graph=True)
    (grad64,) = torch.autograd.grad(norms64, x64, weights, create_graph=True)
    assert grad.dtype == dtype and torch.isfinite(grad).all()
    _assert_close_to(grad, grad64, 2 * tol, "per_sample_norm's gradient")
    if not zero_sample:
        (hvp,) = torch.autograd.grad((grad.double() * direction).sum(), x)
        (hvp64,) = torch.autograd.grad((grad64 * direction).sum(), x64)
        _assert_close_to(hvp, hvp64, 20 * tol, "per_sample_norm's Hessian-vector product")

    penalty = norm_penalty(x, weight=weight, center=center)
    flat64 = x64.reshape(shape[0], -1)
    penalty64 = weight * (flat64.square().sum(1) if center == 0
                          else (flat64.norm(2, dim=1) - center) ** 2).mean()
    assert penalty.dtype == norms.dtype and penalty.dim() == 0
    _assert_close_to(penalty, penalty64, 4 * tol, "norm_penalty")
    (grad,) = torch.autograd.grad(penalty, x, create_graph=True)
    (grad64,) = torch.autograd.grad(penalty64, x64, create_graph=True)
    assert grad.dtype == dtype and torch.isfinite(grad).all()
    _assert_close_to(grad, grad64, 4 * tol, "norm_penalty's gradient")
    if not zero_sample or center == 0:
        (hvp,) = torch.autograd.grad((grad.double() * direction).sum(), x)
        (hvp64,) = torch.autograd.grad((grad64 * direction).sum(), x64)
        assert torch.isfinite(hvp).all()
        _assert_close_to(hvp, hvp64, 40 * tol, "norm_penalty's Hessian-vector product")


# ---------------------------------------------------------------- zero gradients

def test_zero_gradient_gives_finite_penalty_and_gradients():
    # A critic whose output does not depend on its input: ||grad|| = 0 for every sample.
    class ConstantCritic(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bias = torch.nn.Parameter(torch.ones(1))
            self.scale = torch.nn.Parameter(torch.ones(1))

        def forward(self, x):
            return self.scale * (x * 0).flatten(1).sum(1) + self.bias

    critic = ConstantCritic()
    real, fake = _pair((4, 3, 5), torch.float32)
    penalty = ganfast.gradient_penalty(critic, real, fake, weight=10.0, center=1.0)
    penalty.backward()
    assert penalty.item() == pytest.approx(10.0)
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in critic.parameters())

    r1 = ganfast.r1_penalty(critic, real)
    assert r1.item() == 0.0


def test_nan_gradient_propagates_instead_of_vanishing():
    x = torch.tensor([[float("nan"), 1.0], [3.0, 4.0]], requires_grad=True)
    ((per_sample_norm(x) - 1) ** 2).sum().backward()
    assert torch.isnan(x.grad[0]).all() and torch.isfinite(x.grad[1]).all()


def test_per_sample_norm_gradient_at_zero_is_zero():
    x = torch.zeros(3, 5, dtype=torch.float64, requires_grad=True)
    norms = per_sample_norm(x)
    ((norms - 1) ** 2).sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


# ---------------------------------------------------------------- the kernel path on CPU
#
# With backend "cuda" or "triton", the public functions run a torch.autograd.Function around
# the kernel ops. On CPU the same Function runs through the dispatcher: ganfast_C's ops (when
# the extension is built) and ganfast's ops (as under torch.compile) have the PyTorch reference
# as their CPU kernel, so the autograd, the registration and the layouts of the GPU path are
# tested here; tests/test_gradient_penalty_gpu.py checks the kernels themselves.

def _kernel_backends():
    yield pytest.param("triton", id="ganfast-ops")
    yield pytest.param("cuda", id="ganfast_C-ops", marks=pytest.mark.skipif(
        not _extension.load()[0], reason="ganfast._C not built"))


@pytest.fixture(params=list(_kernel_backends()))
def kernel_backend(request, monkeypatch):
    # "triton" outside torch.compile calls the launcher directly; make it take the registered
    # op instead, as it does under compile.
    monkeypatch.setattr(_library, "is_compiling", lambda: True)
    return request.param


def test_kernel_path_matches_canonical(kernel_backend):
    shape = (5, 3, 4, 6)
    critic64 = canonical.critic_for(shape, torch.float64)
    real, fake = _pair(shape)
    alpha = torch.rand(shape[0], dtype=torch.float64)
    expected = canonical.wgan_gp(critic64, real, fake, alpha, weight=3.0, center=0.5)
    expected.backward()
    expected_grads = canonical.param_grads(critic64)
    critic64.zero_grad()
    # gradient_penalty resolves its backend for CPU tensors; the _with functions take it as is.
    x_hat = gp.interpolate_with(kernel_backend, real, fake, alpha).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic64(x_hat).sum(), x_hat, create_graph=True)
    got = gp.norm_penalty_with(kernel_backend, grad, 3.0, 0.5)
    got.backward()
    torch.testing.assert_close(got, expected)
    for g, e in zip(canonical.param_grads(critic64), expected_grads, strict=True):
        torch.testing.assert_close(g, e)


def test_gradcheck_interpolate(kernel_backend):
    real, fake = (t.requires_grad_(True) for t in _pair((3, 2, 5)))
    alpha = torch.rand(3, dtype=torch.float64, requires_grad=True)
    for backend in ("torch", kernel_backend):
        fn = functools.partial(gp.interpolate_with, backend)
        assert torch.autograd.gradcheck(fn, (real, fake, alpha))
        assert torch.autograd.gradgradcheck(fn, (real, fake, alpha))


def test_gradcheck_per_sample_norm(kernel_backend):
    x = torch.randn(4, 3, 5, dtype=torch.float64, requires_grad=True)
    for backend in ("torch", kernel_backend):
        fn = functools.partial(gp.per_sample_norm_with, backend)
        assert torch.autograd.gradcheck(fn, (x,))
        assert torch.autograd.gradgradcheck(fn, (x,))


@pytest.mark.parametrize("center", [1.0, 0.0, -0.3])
def test_gradcheck_norm_penalty(kernel_backend, center):
    x = torch.randn(4, 3, 5, dtype=torch.float64, requires_grad=True)
    for backend in ("torch", kernel_backend):
        fn = lambda t, b=backend: gp.norm_penalty_with(b, t, 7.0, center)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (x,))
        assert torch.autograd.gradgradcheck(fn, (x,))


@pytest.mark.parametrize("backend", ["triton", "cuda"])
def test_torch_func_and_forward_ad_run_the_reference(backend, monkeypatch):
    # The kernel path's autograd.Function cannot run under torch.func transforms or carry
    # forward-AD tangents: there the GPU backends run the reference, as the torch backend does.
    def unreachable(*args):
        raise AssertionError("a kernel ran under a transform")

    monkeypatch.setattr(gp, "kernel", lambda backend, name: unreachable)
    x = torch.randn(4, 3, 5, dtype=torch.float64)
    real, fake = _pair((4, 3, 5))
    alpha, tangent = torch.rand(4, dtype=torch.float64), torch.randn(4, 3, 5, dtype=torch.float64)

    def canonical_penalty(t):
        return 10 * ((t.flatten(1).norm(2, dim=1) - 1) ** 2).mean()

    got = torch.func.grad(lambda t: gp.norm_penalty_with(backend, t, 10.0, 1.0))(x)
    torch.testing.assert_close(got, torch.func.grad(canonical_penalty)(x))
    got = torch.func.vmap(lambda t: gp.per_sample_norm_with(backend, t))(x)  # [3, 5] per call
    torch.testing.assert_close(got, x.norm(dim=2))
    out, out_tangent = torch.func.jvp(lambda r: gp.interpolate_with(backend, r, fake, alpha),
                                      (real,), (tangent,))
    a = alpha.view(-1, 1, 1)
    torch.testing.assert_close(out, a * real + (1 - a) * fake)
    torch.testing.assert_close(out_tangent, a * tangent)
    with torch.autograd.forward_ad.dual_level():
        dual = torch.autograd.forward_ad.make_dual(x, tangent)
        got = torch.autograd.forward_ad.unpack_dual(gp.norm_penalty_with(backend, dual, 10.0, 1.0))
    value, expected_tangent = torch.func.jvp(canonical_penalty, (x,), (tangent,))
    torch.testing.assert_close(got.primal, value)
    torch.testing.assert_close(got.tangent, expected_tangent)


def test_norm_backward_reference_matches_autograd():
    # The kernels' backward formula, grad * (slope + offset / n) * x, against autograd of the
    # function it claims to differentiate: sum_b grad_b * f(n_b) with f'(n) = slope*n + offset.
    x = torch.randn(5, 2, 7, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(5, dtype=torch.float64)
    slope, offset = 0.7, -1.3
    n = x.flatten(1).norm(dim=1)
    (expected,) = torch.autograd.grad((grad * (slope * n**2 / 2 + offset * n)).sum(), x)
    got = gp.norm_backward_reference(grad, x.detach(), n.detach(), slope, offset)
    torch.testing.assert_close(got, expected)


def test_gradgradcheck_penalty_through_critic():
    # The whole WGAN-GP as a function of the critic's weight: its second derivative
    # (differentiating the penalty's gradient again) matches finite differences.
    real, fake = _pair((3, 5))
    alpha = torch.rand(3, dtype=torch.float64)
    weight = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)

    def penalty(w):
        critic = lambda x: torch.tanh(x @ w.t()).sum(1)  # noqa: E731
        return ganfast.gradient_penalty(critic, real, fake, alpha=alpha)

    assert torch.autograd.gradcheck(penalty, (weight,))
    assert torch.autograd.gradgradcheck(penalty, (weight,))


def _r1_with_a_flat_sample(penalty):
    """R1 of a ReLU critic whose first sample sits where the critic is flat (its input gradient
    is exactly 0), as a function of the critic's parameters, and its Hessian there."""
    x = torch.randn(3, 4, dtype=torch.float64)
    shift = torch.tensor([-100.0, 0.0, 0.0], dtype=torch.float64)  # sample 0: a dead unit
    params = torch.tensor([0.5, -1.0, 0.3, 0.8, 5.0], dtype=torch.float64)

    def r1(p):
        xx = x.clone().requires_grad_(True)
        critic = lambda t: torch.relu(t @ p[:4] + shift + p[4])  # noqa: E731
        (g,) = torch.autograd.grad(critic(xx).sum(), xx, create_graph=True)
        assert g[0].abs().max() == 0 and g[1:].abs().min() > 0
        return penalty(g)

    return r1(params), torch.autograd.functional.hessian(r1, params)


def test_r1_is_twice_differentiable_at_a_zero_gradient(kernel_backend):
    # R1 is gamma/2 * mean ||g||^2, smooth everywhere: its Hessian (a Hessian-vector product
    # through the penalty, say) must stay finite and equal the sum-of-squares form's where a
    # sample's gradient is 0, though the norm's own second derivative is NaN there.
    expected, expected_hessian = _r1_with_a_flat_sample(lambda g: 5.0 * g.square().sum(1).mean())
    assert expected_hessian.abs().sum() > 0
    for backend in ("torch", kernel_backend):
        value, hessian = _r1_with_a_flat_sample(lambda g, b=backend: gp.norm_penalty_with(
            b, g, 5.0, 0.0))
        torch.testing.assert_close(value, expected)
        torch.testing.assert_close(hessian, expected_hessian)
    critic = torch.nn.Sequential(torch.nn.Linear(4, 1), torch.nn.ReLU())
    with torch.no_grad():
        critic[0].bias.fill_(-100.0)  # flat at every sample: R1 0, its gradient 0, not NaN
    ganfast.r1_penalty(critic, torch.randn(3, 4)).backward()
    assert torch.equal(critic[0].weight.grad, torch.zeros_like(critic[0].weight))


def test_penalty_ops_and_launches_are_counted(kernel_backend):
    # The kernel path's penalty forward + backward is two ganfast ops (one launch each way on
    # a GPU, plus the finalize program of norm_penalty; docs/ops.md) and no ATen compute op:
    # the [B]-sized tail is inside the kernels. This must not grow unnoticed.
    g = torch.randn(4, 3, 5, 5, requires_grad=True)
    with RecordOps() as ops:
        torch.autograd.grad(gp.norm_penalty_with(kernel_backend, g, 10.0, 1.0), g)
    namespace = "ganfast_C" if kernel_backend == "cuda" else "ganfast"
    kernels = [name for name in ops.names if name.split("::")[0] in ("ganfast", "ganfast_C")]
    assert kernels == [f"{namespace}::norm_penalty", f"{namespace}::norm_backward"]
    # autograd's seed (ones_like) is the only other op that computes anything
    assert [n for n in ops.names if n not in kernels and n not in ops.views] == ["aten::ones_like"]


def test_torch_backend_runs_fewer_ops_than_canonical():
    g = torch.randn(4, 3, 5, 5, requires_grad=True)
    with RecordOps() as ours:
        torch.autograd.grad(gp.norm_penalty_with("torch", g, 10.0, 1.0), g)
    with RecordOps() as theirs:
        torch.autograd.grad(10 * ((g.flatten(1).norm(2, dim=1) - 1) ** 2).mean(), g)
    # The mean of squares is one dot product (docs/ops.md): 4 + 8 ops against 5 + 9.
    assert len(ours.compute_ops()) < len(theirs.compute_ops())


# ---------------------------------------------------------------- registration

def _op_samples():
    real, fake = _pair((3, 4, 5), torch.float32)
    alpha = torch.rand(3)
    x = torch.randn(2, 3, 7)
    cl = torch.randn(2, 3, 4, 5).to(memory_format=torch.channels_last)
    sliced = torch.randn(2, 3, 8)[:, :, ::2]
    yield "interpolate", (real, fake, alpha)
    yield "interpolate", (real.to(memory_format=torch.contiguous_format), fake.transpose(1, 2)
                          .contiguous().transpose(1, 2), alpha)
    yield "norm_penalty", (x, 10.0, 1.0)
    yield "norm_penalty", (cl, 10.0, 1.0)
    yield "norm_penalty", (sliced, 0.5, 0.0)
    yield "norm_backward", (torch.randn(2), x, torch.rand(2) + 0.1, 0.0, 1.0)
    yield "norm_backward", (torch.randn(()).expand(2), cl, torch.rand(2) + 0.1, 0.3, -0.2)
    yield "norm_backward", (torch.randn(2), sliced, torch.rand(2) + 0.1, 0.0, 1.0)


def _namespaces():
    yield "ganfast"
    if _extension.load()[0]:
        yield "ganfast_C"


@pytest.mark.parametrize("namespace", list(_namespaces()))
@pytest.mark.parametrize("name,args", list(_op_samples()))
def test_opcheck(namespace, name, args):
    # The ops have no autograd kernel by design (autograd lives in the Functions): opcheck
    # them with inputs that do not require grad.
    torch.library.opcheck(getattr(getattr(torch.ops, namespace), name).default, args)


@pytest.mark.slow
@pytest.mark.parametrize("compiler", ["aot_eager", "inductor"])
@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_compiles_fullgraph_and_matches_eager(compiler, backend):
    # Under compile, "triton" goes through the registered ganfast:: ops; on CPU tensors their
    # CPU kernel is the reference, so this checks the Function + op + fake impl path.
    def penalty_from(real, fake, alpha, g):
        x_hat = gp.interpolate_with(backend, real, fake, alpha)
        return x_hat.square().mean() + gp.norm_penalty_with(backend, g, 10.0, 1.0) + \
            gp.per_sample_norm_with(backend, g).sum()

    real, fake = _pair((4, 3, 5, 5), torch.float32)
    alpha = torch.rand(4)
    g = torch.randn(4, 3, 5, 5, requires_grad=True)
    compiled = torch.compile(penalty_from, fullgraph=True, backend=compiler)
    got = compiled(real, fake, alpha, g)
    (grad_got,) = torch.autograd.grad(got, g)
    eager_backend = "torch"
    expected = (gp.interpolate_with(eager_backend, real, fake, alpha).square().mean()
                + gp.norm_penalty_with(eager_backend, g, 10.0, 1.0)
                + gp.per_sample_norm_with(eager_backend, g).sum())
    (grad_expected,) = torch.autograd.grad(expected, g)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(grad_got, grad_expected)


def test_norm_penalty_compiles_with_a_weight_and_center_that_change():
    # Numbers that change between calls of a compiled function become symbolic floats, which
    # check_number's math.isfinite could not read ("torch.* op returned non-Tensor").
    g = torch.randn(4, 3, 5, requires_grad=True)
    compiled = torch.compile(lambda g, weight, center: gp.norm_penalty(g, weight, center),
                             backend="aot_eager", fullgraph=True)
    for weight, center in ((10.0, 1.0), (5.0, 0.5), (2.5, -0.3), (1.0, 0.0)):
        expected = weight * ((g.detach().double().flatten(1).norm(dim=1) - center) ** 2).mean()
        torch.testing.assert_close(compiled(g, weight, center).double(), expected)


def test_backend_resolution_traces_under_compile():
    # On a GPU the ops resolve "auto"/"cuda"/"triton" inside compiled code; that resolution
    # reads files and imports modules, so it must be a constant to dynamo, not a graph break.
    from ganfast import backends

    def f(x):  # as the public functions call it (x.is_cuda), and as a CUDA tensor would
        return x * len(backends.resolve("gradient_penalty", "auto", x.is_cuda)) + \
            len(backends.resolve("gradient_penalty", "auto", True))

    x = torch.randn(3)
    torch.testing.assert_close(torch.compile(f, fullgraph=True, backend="eager")(x), f(x))


def test_public_penalty_compiles_with_a_symbolic_batch():
    # The public call traced whole (backend resolution included) with dynamic shapes: the
    # torch backend's weight / B is then symbolic. Batch sizes after the first reuse the graph.
    def penalty(g):
        return gp.norm_penalty(g, 10.0, 1.0) + gp.per_sample_norm(g).sum()

    compiled = torch.compile(penalty, fullgraph=True, dynamic=True, backend="aot_eager")
    for batch in (3, 5, 7):
        g = torch.randn(batch, 2, 3, dtype=torch.float64, requires_grad=True)
        got = compiled(g)
        norms = g.flatten(1).norm(2, dim=1)
        expected = 10 * ((norms - 1) ** 2).mean() + norms.sum()
        torch.testing.assert_close(got, expected)
        torch.testing.assert_close(torch.autograd.grad(got, g)[0],
                                   torch.autograd.grad(expected, g)[0])


# ---------------------------------------------------------------- mixed precision

def test_autocast_recipe_with_grad_scaler_is_finite_and_close():
    shape = (4, 3, 8, 8)
    critic = canonical.critic_for(shape)
    real, fake = _pair(shape, torch.float32)
    alpha = torch.rand(4)
    expected = ganfast.gradient_penalty(critic, real, fake, alpha=alpha)

    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = ganfast.gradient_penalty(critic, real, fake, alpha=alpha, scaler=scaler)
    scaler.scale(got).backward()
    assert torch.isfinite(got)
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in critic.parameters())
    torch.testing.assert_close(got.float(), expected, rtol=5e-2, atol=5e-3)


# ---------------------------------------------------------------- bad input

def _mlp():
    return canonical.MLPCritic(12)


def _two(*shape, **kw):
    return dict(real=torch.randn(*shape, **kw), fake=torch.randn(*shape, **kw))


@pytest.mark.parametrize("name,call", [
    ("gradient_penalty", lambda b: ganfast.gradient_penalty(_mlp(), **_two(2, 12), backend=b)),
    ("r1_penalty", lambda b: ganfast.r1_penalty(_mlp(), torch.randn(2, 12), backend=b)),
    ("interpolate", lambda b: ganfast.ops.interpolate(*_two(2, 12).values(), torch.rand(2),
                                                      backend=b)),
    ("per_sample_norm", lambda b: ganfast.ops.per_sample_norm(torch.randn(2, 12), backend=b)),
    ("norm_penalty", lambda b: ganfast.ops.norm_penalty(torch.randn(2, 12), backend=b)),
])
def test_an_unknown_backend_is_refused_under_the_function_called(name, call):
    with pytest.raises(ValueError, match=f"^{name}: backend must be one of auto, cuda, triton, "
                                         "torch; got 'nope'$"):
        call("nope")


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(real=torch.randn(2, 12), fake=torch.randn(3, 12)), ValueError,
     "real and fake must have the same shape"),
    (dict(real=torch.randn(2, 12), fake=torch.randn(2, 12, device="meta")), ValueError,
     "same device"),
    (dict(real=torch.ones(2, 12, dtype=torch.int64), fake=torch.ones(2, 12, dtype=torch.int64)),
     TypeError, "real must have a floating-point dtype"),
    (_two(0, 12), ValueError, "real must have a non-empty batch"),
    (dict(real=torch.tensor(1.0), fake=torch.tensor(2.0)), ValueError, "real must have a batch"),
    (dict(**_two(2, 12), alpha=torch.rand(2, 2)), ValueError, r"alpha must have shape \[B\] = \[2\]"),
    (dict(**_two(2, 12), alpha=torch.rand(3)), ValueError, r"alpha must have shape \[B\] = \[2\]"),
    (dict(**_two(2, 12), alpha=0.5), TypeError, "alpha must be a torch.Tensor"),
    (dict(**_two(2, 12), alpha=torch.rand(2, device="meta")), ValueError, "alpha must be on cpu"),
    (dict(**_two(2, 12), backend="fast"), ValueError,
     "^gradient_penalty: backend must be one of auto, cuda, triton, torch; got 'fast'$"),
    (dict(**_two(2, 12), weight=None), TypeError, "weight must be a real number"),
    (dict(**_two(2, 12), weight="10"), TypeError, "weight must be a real number"),
    (dict(**_two(2, 12), weight=torch.tensor(10.0, requires_grad=True)), TypeError,
     "weight must be a real number"),
    (dict(**_two(2, 12), center="one"), TypeError, "center must be a real number"),
    (dict(**_two(2, 12), center=float("nan")), ValueError, "center must be finite, got nan"),
    (dict(**_two(2, 12), weight=torch.tensor(float("inf"))), ValueError,
     "weight must be finite, got inf"),
    (dict(**_two(2, 12), alpha=torch.rand(2, 1, 1)), ValueError,
     r"alpha must have shape .* at most real's 2 dims"),
    (dict(**_two(2, 12), backend=["torch"]), ValueError, "backend must be one of"),
    (dict(**_two(2, 12), scaler=object()), TypeError, "scaler must be the torch.amp.GradScaler"),
    # a negative weight makes the penalty a reward for steep critics: refused, not trained on
    (dict(**_two(2, 12), weight=-10.0), ValueError,
     r"^gradient_penalty: weight must be >= 0 .* got -10.0$"),
    (dict(**_two(2, 12), weight=torch.tensor(-1.0)), ValueError,
     "gradient_penalty: weight must be >= 0"),
    # the class itself has .scale and .get_scale; it failed inside the penalty, after the critic
    (dict(**_two(2, 12), scaler=torch.amp.GradScaler), TypeError,
     "gradient_penalty: scaler must be the torch.amp.GradScaler instance .* got the class"),
])
def test_gradient_penalty_rejects_bad_input(kwargs, error, match):
    critic_calls = []
    with pytest.raises(error, match=match):
        ganfast.gradient_penalty(lambda x: critic_calls.append(x) or _mlp()(x), **kwargs)
    assert not critic_calls  # refused before the critic's forward and double backward


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(gamma=None), TypeError, "gamma must be a real number"),
    (dict(gamma=True), TypeError, "gamma must be a real number"),
    (dict(gamma=float("-inf")), ValueError, "gamma must be finite"),
    (dict(scaler=object()), TypeError, "scaler must be the torch.amp.GradScaler"),
    (dict(x=torch.ones(2, 12, dtype=torch.int64)), TypeError, "x must have a floating-point"),
    (dict(x=torch.randn(0, 12)), ValueError, "x must have a non-empty batch"),
    (dict(gamma=-1.0), ValueError, r"^r1_penalty: gamma must be >= 0 .* got -1.0$"),
    (dict(scaler=torch.amp.GradScaler), TypeError,
     "r1_penalty: scaler must be the torch.amp.GradScaler instance"),
])
def test_r1_penalty_rejects_bad_input(kwargs, error, match):
    critic_calls = []
    kwargs = {"x": torch.randn(2, 12), **kwargs}
    with pytest.raises(error, match=match):
        ganfast.r1_penalty(lambda x: critic_calls.append(x) or _mlp()(x), **kwargs)
    assert not critic_calls


@pytest.mark.parametrize("args,error,match", [
    ((torch.randn(4, 3), torch.randn(1, 3), torch.rand(4)), ValueError, "same shape"),
    ((torch.randn(4, 3), torch.randn(4, 3), torch.rand(4, 2)), ValueError, "alpha must have shape"),
    ((torch.randn(4, 3), torch.randn(4, 3), 0.3), TypeError, "alpha must be a torch.Tensor"),
    ((torch.tensor(1.0), torch.tensor(2.0), torch.rand(1)), ValueError, "real must have a batch"),
    ((torch.randn(4, 3), [0.0] * 12, torch.rand(4)), TypeError, "fake must be a torch.Tensor"),
])
@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_interpolate_rejects_bad_input_before_any_backend(args, error, match, backend):
    # The same refusal on every backend (the triton one would need CUDA tensors: the checks
    # come first), so code tried on CPU does not fail differently on the GPU.
    with pytest.raises(error, match=match):
        ganfast.ops.interpolate(*args, backend=backend)


@pytest.mark.parametrize("call,error,match", [
    (lambda: ganfast.ops.per_sample_norm(torch.tensor(1.0)), ValueError, "x must have a batch"),
    (lambda: ganfast.ops.per_sample_norm(torch.ones(2, 3, dtype=torch.int32)), TypeError,
     "x must have a floating-point"),
    (lambda: ganfast.ops.per_sample_norm([1.0, 2.0]), TypeError, "x must be a torch.Tensor"),
    (lambda: ganfast.ops.norm_penalty(torch.ones(2, 3, dtype=torch.int32)), TypeError,
     "grad must have a floating-point"),
    (lambda: ganfast.ops.norm_penalty(torch.randn(2, 3), weight=None), TypeError,
     "weight must be a real number"),
    (lambda: ganfast.ops.norm_penalty(torch.randn(2, 3), center="1"), TypeError,
     "center must be a real number"),
    (lambda: ganfast.ops.norm_penalty(torch.randn(2, 3), weight=-5.0), ValueError,
     "norm_penalty: weight must be >= 0"),
])
def test_norm_ops_name_the_bad_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_a_zero_weight_turns_the_penalty_off_and_a_negative_center_is_still_taken():
    # Only a negative weight (or gamma) is refused: weight 0 is an ablation, and a center is a
    # target, any finite number.
    critic = canonical.critic_for((3, 2, 5, 5), torch.float64)
    real, fake = _pair((3, 2, 5, 5))
    alpha = torch.rand(3, dtype=torch.float64)
    assert ganfast.gradient_penalty(critic, real, fake, weight=0.0, alpha=alpha).item() == 0.0
    assert ganfast.r1_penalty(critic, real, gamma=0).item() == 0.0
    torch.testing.assert_close(
        ganfast.gradient_penalty(critic, real, fake, center=-0.5, alpha=alpha),
        canonical.wgan_gp(critic, real, fake, alpha, center=-0.5), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("call,error,message", [
    (lambda: ganfast.gradient_penalty(_mlp(), torch.randn(2, 12), torch.randn(3, 12)),
     ValueError, "gradient_penalty: real and fake must have the same shape"),
    (lambda: ganfast.gradient_penalty(_mlp(), torch.randn(2, 12), torch.randn(2, 12),
                                      alpha=torch.rand(3)),
     ValueError, "gradient_penalty: alpha must have shape [B] = [2]"),
    (lambda: ganfast.gradient_penalty(_mlp(), [1.0], torch.randn(2, 12)),
     TypeError, "gradient_penalty: real must be a torch.Tensor"),
    (lambda: ganfast.gradient_penalty(_mlp(), torch.randn(0, 12), torch.randn(0, 12)),
     ValueError, "gradient_penalty: real must have a non-empty batch"),
    (lambda: ganfast.gradient_penalty(_mlp(), torch.randn(2, 12), torch.randn(2, 12),
                                      center=float("nan")),
     ValueError, "gradient_penalty: center must be finite"),
    (lambda: ganfast.gradient_penalty(_mlp(), torch.randn(2, 12), torch.randn(2, 12),
                                      scaler=object()),
     TypeError, "gradient_penalty: scaler must be"),
    (lambda: ganfast.gradient_penalty(lambda x: x.sum(), torch.randn(2, 12), torch.randn(2, 12)),
     ValueError, "gradient_penalty: critic output must have a batch dimension"),
    (lambda: ganfast.gradient_penalty(lambda x: torch.ones(2), torch.randn(2, 12),
                                      torch.randn(2, 12)),
     ValueError, "gradient_penalty: critic output does not depend on its input"),
    (lambda: ganfast.r1_penalty(_mlp(), torch.ones(2, 12, dtype=torch.int64)),
     TypeError, "r1_penalty: x must have a floating-point dtype"),
    (lambda: ganfast.r1_penalty(_mlp(), torch.randn(2, 12), gamma=None),
     TypeError, "r1_penalty: gamma must be a real number"),
    (lambda: ganfast.r1_penalty(lambda x: _mlp()(torch.randn_like(x)), torch.randn(2, 12)),
     ValueError, "r1_penalty: critic output does not depend on its input"),
    (lambda: ganfast.ops.interpolate(torch.randn(2, 3), torch.randn(2, 4), torch.rand(2)),
     ValueError, "interpolate: real and fake must have the same shape"),
    (lambda: ganfast.ops.interpolate(torch.randn(2, 3), torch.randn(2, 3), 0.5),
     TypeError, "interpolate: alpha must be a torch.Tensor"),
    (lambda: ganfast.ops.per_sample_norm(torch.tensor(1.0)),
     ValueError, "per_sample_norm: x must have a batch dimension"),
    (lambda: ganfast.ops.norm_penalty(torch.ones(2, 3, dtype=torch.int32)),
     TypeError, "norm_penalty: grad must have a floating-point dtype"),
    (lambda: ganfast.ops.norm_penalty(torch.randn(2, 3), weight=float("inf")),
     ValueError, "norm_penalty: weight must be finite"),
])
def test_errors_name_the_function_and_the_argument(call, error, message):
    # "x must have a floating-point dtype" alone does not say whose x (r1_penalty's, or the
    # per_sample_norm a loss calls): every refusal starts with the public function's name, as
    # ganfast's other functions word theirs ("upsample_conv2d: ...", "spectral_norm: ...").
    with pytest.raises(error) as info:
        call()
    assert str(info.value).startswith(message), str(info.value)


@pytest.mark.parametrize("name,penalty", [
    ("r1_penalty", lambda critic, x: ganfast.r1_penalty(critic, x)),
    ("gradient_penalty", lambda critic, x: ganfast.gradient_penalty(critic, x, x.flip(0))),
], ids=["r1_penalty", "gradient_penalty"])
def test_critic_output_passed_for_the_critic_is_named(name, penalty):
    # StyleGAN code computes R1 from the critic's output, `d_r1_loss(real_pred, real_img)`; a
    # port passing real_pred here got Python's "'Tensor' object is not callable".
    critic, real = _mlp(), torch.randn(3, 12)
    for not_a_critic, kind in ((critic(real), "Tensor"), (3, "int")):
        with pytest.raises(TypeError, match=rf"^{name}: critic must be callable, .* not its "
                                            rf"output; got {kind}$"):
            penalty(not_a_critic, real)

    # A callable critic's own TypeError is its own: passed on unchanged, not reworded.
    def broken(x):
        raise TypeError("unsupported operand in the user's critic")

    with pytest.raises(TypeError, match="^unsupported operand in the user's critic$"):
        penalty(broken, real)


def test_a_critic_with_several_outputs_is_told_to_pick_its_score():
    # An AC-GAN critic returns (score, class logits): the refusal names the closure to pass,
    # and that closure gives the canonical penalty.
    critic64 = canonical.MLPCritic(12).double()
    head = torch.nn.Linear(12, 5).double()

    def acgan(x):
        return critic64(x), head(x.flatten(1))

    real, fake = _pair((3, 12))
    alpha = torch.rand(3, dtype=torch.float64)
    for call in (lambda c: ganfast.gradient_penalty(c, real, fake, alpha=alpha),
                 lambda c: ganfast.r1_penalty(c, real)):
        with pytest.raises(ValueError, match=r"got tuple; a critic with several outputs .* "
                                             r"`lambda x: D\(x\)\[0\]`"):
            call(acgan)
    torch.testing.assert_close(
        ganfast.gradient_penalty(lambda x: acgan(x)[0], real, fake, alpha=alpha),
        canonical.wgan_gp(critic64, real, fake, alpha), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ganfast.r1_penalty(lambda x: acgan(x)[0], real),
                               canonical.r1(critic64, real), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("fake_dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_mixed_real_and_fake_dtypes_promote_as_the_canonical_expression(fake_dtype):
    # An autocast generator's half fakes beside float32 reals: the canonical expression
    # promotes (alpha * real + (1 - alpha) * fake), and so does ganfast, penalty and gradients.
    torch.manual_seed(0)
    critic = canonical.critic_for((3, 2, 5, 5), torch.float64)
    real, fake = torch.randn(3, 2, 5, 5), torch.randn(3, 2, 5, 5).to(fake_dtype)
    alpha = torch.rand(3)
    x_hat = ganfast.ops.interpolate(real, fake, alpha)
    expected_x_hat = canonical.interpolation(real, fake, alpha)
    assert x_hat.dtype == expected_x_hat.dtype == torch.promote_types(torch.float32, fake_dtype)
    torch.testing.assert_close(x_hat, expected_x_hat, rtol=1e-6, atol=1e-6)
    critic = critic.to(x_hat.dtype)
    got = ganfast.gradient_penalty(critic, real, fake, alpha=alpha)
    got.backward()
    got_grads = canonical.param_grads(critic)
    critic.zero_grad()
    expected = canonical.wgan_gp(critic, real, fake, alpha)
    expected.backward()
    expected_grads = canonical.param_grads(critic)
    torch.testing.assert_close(got, expected.to(got.dtype), rtol=1e-5, atol=1e-6)
    for a, b in zip(got_grads, expected_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_alpha_in_the_canonical_shape_equals_alpha_per_sample():
    critic = canonical.critic_for((3, 2, 5, 5), torch.float64)
    real, fake = _pair((3, 2, 5, 5))
    alpha = torch.rand(3, dtype=torch.float64)
    flat = ganfast.gradient_penalty(critic, real, fake, alpha=alpha)
    shaped = ganfast.gradient_penalty(critic, real, fake, alpha=alpha.view(3, 1, 1, 1))
    torch.testing.assert_close(shaped, flat, rtol=0, atol=0)
    torch.testing.assert_close(ganfast.ops.interpolate(real, fake, alpha.view(3, 1, 1, 1)),
                               canonical.interpolation(real, fake, alpha), rtol=1e-15, atol=1e-15)


def test_penalties_under_no_grad_give_their_value_and_refuse_inference_mode():
    # A penalty logged in an evaluation loop under no_grad: its value, no graph. Inference
    # mode has no autograd at all: a clear refusal. Tensors made in inference mode (a data
    # pipeline's) work outside it.
    critic = canonical.critic_for((3, 2, 5, 5), torch.float64)
    real, fake = _pair((3, 2, 5, 5))
    alpha = torch.rand(3, dtype=torch.float64)
    expected_gp = canonical.wgan_gp(critic, real, fake, alpha)
    expected_r1 = canonical.r1(critic, real)
    with torch.no_grad():
        gp = ganfast.gradient_penalty(critic, real, fake, alpha=alpha)
        r1 = ganfast.r1_penalty(critic, real)
    assert not gp.requires_grad and not r1.requires_grad
    torch.testing.assert_close(gp, expected_gp.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(r1, expected_r1.detach(), rtol=1e-12, atol=1e-12)
    with torch.inference_mode():
        with pytest.raises(RuntimeError, match="cannot run under torch.inference_mode"):
            ganfast.gradient_penalty(critic, real, fake)
        with pytest.raises(RuntimeError, match="cannot run under torch.inference_mode"):
            ganfast.r1_penalty(critic, real)
        real_inference, fake_inference = real.clone(), fake.clone()
    torch.testing.assert_close(ganfast.r1_penalty(critic, real_inference), expected_r1,
                               rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ganfast.gradient_penalty(critic, real_inference, fake_inference,
                                                        alpha=alpha),
                               expected_gp, rtol=1e-12, atol=1e-12)


def test_inference_mode_with_grad_mode_switched_on_is_refused_as_inference_mode():
    # enable_grad() inside inference_mode() turns grad mode on, so the early refusal did not
    # run, and the critic's output (no graph in inference mode) was reported as "computed
    # under torch.no_grad() or detached?".
    critic = canonical.critic_for((3, 2, 5, 5), torch.float64)
    real, fake = _pair((3, 2, 5, 5))
    with torch.inference_mode(), torch.enable_grad():
        with pytest.raises(RuntimeError, match="^gradient_penalty takes an input gradient, .* "
                                               "cannot run under torch.inference_mode"):
            ganfast.gradient_penalty(critic, real, fake)
        with pytest.raises(RuntimeError, match="^r1_penalty takes an input gradient, .* "
                                               "cannot run under torch.inference_mode"):
            ganfast.r1_penalty(critic, real)


@pytest.mark.parametrize("critic", [
    lambda x: x.flatten(),
    lambda x: x.sum(),
    lambda x: (x.flatten(1).sum(1),),
], ids=["[B*D]", "scalar-for-B-3", "tuple"])
def test_critic_output_must_be_per_sample(critic):
    with pytest.raises(ValueError, match=r"critic output must have a batch dimension first"):
        ganfast.gradient_penalty(critic, torch.randn(3, 4), torch.randn(3, 4))
    with pytest.raises(ValueError, match=r"critic output must have a batch dimension first"):
        ganfast.r1_penalty(critic, torch.randn(3, 4))


@pytest.mark.parametrize("critic,why", [
    (lambda x: torch.ones(x.shape[0]), "no autograd graph"),
    (lambda x: _mlp()(torch.randn_like(x)), "must compute its score from the images"),
], ids=["constant", "ignores-its-input"])
def test_critic_that_ignores_its_input_is_named(critic, why):
    # The canonical code fails inside autograd.grad, advising allow_unused=True (an option of
    # torch.autograd.grad that a penalty's caller does not have).
    for penalty in (lambda: ganfast.gradient_penalty(critic, *_pair((3, 12), torch.float32)),
                    lambda: ganfast.r1_penalty(critic, torch.randn(3, 12))):
        with pytest.raises(ValueError, match=f"critic output does not depend on its input.*{why}"):
            penalty()


def test_a_batch_of_one_takes_a_squeezed_score():
    # D(x).squeeze() of a [1, 1] score is a scalar: unambiguous for one sample, as the
    # canonical code takes it.
    critic64 = canonical.MLPCritic(12).double()
    real, fake = _pair((1, 12))
    alpha = torch.rand(1, dtype=torch.float64)
    got = ganfast.gradient_penalty(lambda x: critic64(x).squeeze(), real, fake, alpha=alpha)
    torch.testing.assert_close(got, canonical.wgan_gp(critic64, real, fake, alpha))
    got = ganfast.r1_penalty(lambda x: critic64(x).squeeze(), real)
    torch.testing.assert_close(got, canonical.r1(critic64, real))


class _MapCritic(torch.nn.Module):
    """DCGAN's final conv ([B, 1, 1, 1]) or a PatchGAN's ([B, 1, H', W']) score map."""

    def __init__(self, kernel):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Softplus(),
                                        torch.nn.Conv2d(4, 1, kernel))

    def forward(self, x):
        return self.body(x)


@pytest.mark.parametrize("kernel,out_shape", [(6, [5, 1, 1, 1]), (3, [5, 1, 4, 4])],
                         ids=["dcgan", "patchgan"])
def test_score_map_critics_match_canonical(kernel, out_shape):
    critic64 = _MapCritic(kernel).double()
    critic = copy.deepcopy(critic64)
    real, fake = _pair((5, 3, 6, 6))
    alpha = torch.rand(5, dtype=torch.float64)
    assert list(critic64(real).shape) == out_shape
    for ours, theirs in ((lambda c: ganfast.gradient_penalty(c, real, fake, alpha=alpha),
                          lambda c: canonical.wgan_gp(c, real, fake, alpha)),
                         (lambda c: ganfast.r1_penalty(c, real), lambda c: canonical.r1(c, real))):
        for c in (critic, critic64):
            c.zero_grad()
        got, expected = ours(critic), theirs(critic64)
        got.backward()
        expected.backward()
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
        _assert_param_grads_close(critic, critic64, 1e-12)


# ---------------------------------------------------------------- backends

def test_unavailable_backend_says_why():
    x = torch.randn(2, 3)
    for name in ("cuda", "triton"):
        with pytest.raises(ganfast.BackendUnavailable, match=f"'{name}' cannot run .*CUDA tensors"):
            per_sample_norm(x, backend=name)


def test_global_backend_setting_and_environment(monkeypatch):
    x = torch.randn(2, 3)
    ganfast.set_backend("cuda")
    with pytest.raises(ganfast.BackendUnavailable):
        per_sample_norm(x)
    assert per_sample_norm(x, backend="torch").shape == (2,)  # per call beats global
    ganfast.set_backend(None)  # back to the environment's choice
    monkeypatch.setenv("GANFAST_BACKEND", "triton")
    assert per_sample_norm(x).shape == (2,)  # read at import and by set_backend(), not per call
    ganfast.set_backend(None)
    with pytest.raises(ganfast.BackendUnavailable, match="needs CUDA tensors; the inputs are not on CUDA"):
        per_sample_norm(x)
    monkeypatch.setenv("GANFAST_BACKEND", "nope")
    ganfast.set_backend(None)
    with pytest.raises(ValueError, match="GANFAST_BACKEND must be one of"):
        per_sample_norm(x)
    with pytest.raises(ValueError, match=r"set_backend\(name\) must be one of"):
        ganfast.set_backend("fastest")


def test_kernel_path_edge_shapes(kernel_backend):
    # 1-D samples with a gradient on alpha, and an empty batch: the Function path gives what
    # the torch backend gives.
    real, fake = torch.randn(5, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    alpha = torch.rand(5, dtype=torch.float64, requires_grad=True)
    for backend in ("torch", kernel_backend):
        (grad_alpha,) = torch.autograd.grad(gp.interpolate_with(backend, real, fake, alpha).sum(),
                                            alpha)
        torch.testing.assert_close(grad_alpha, real - fake)
    empty = torch.randn(0, 3, requires_grad=True)
    for backend in ("torch", kernel_backend):
        penalty = gp.norm_penalty_with(backend, empty, 10.0, 1.0)
        assert torch.isnan(penalty)
        (grad,) = torch.autograd.grad(penalty, empty)
        assert grad.shape == (0, 3)
