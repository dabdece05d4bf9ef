"""The Triton spectral-norm kernels on CPU tensors under TRITON_INTERPRET=1: one launch for
several layers of every kind, against PyTorch's parametrization (same u, v, same steps) and
the float64 reference gradient; SpectralNormGroup's triton route against its torch route."""

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import parametrizations

import ganfast
from ganfast.nn import spectral_norm_group
from ganfast.ops import spectral_norm as ops
from ganfast.ops._library import transformed

from .test_spectral_norm import check_torch_func_matches_pytorch

pytestmark = pytest.mark.interpreter

# Odd sizes around the tiles (32 rows, 128 columns): D > 32, C > 128, dim = 1 layouts.
LAYERS = [
    lambda: nn.Linear(37, 19),
    lambda: nn.Conv1d(2, 70, 5),
    lambda: nn.Conv2d(15, 5, 3),
    lambda: nn.Conv3d(2, 3, 2),
    lambda: nn.ConvTranspose1d(3, 6, 3),
    lambda: nn.ConvTranspose2d(4, 33, 3),
    lambda: nn.Embedding(11, 6),
]
TOL = {torch.float64: 1e-12, torch.float32: 1e-6}


def pytorch_layers(dtype, n_power_iterations=1, seed=0):
    torch.manual_seed(seed)
    return [parametrizations.spectral_norm(make(), n_power_iterations=n_power_iterations).to(dtype)
            for make in LAYERS]


def launch_inputs(layers):
    """Weights, copies of u and v, dims, as the group launch takes them."""
    params = [layer.parametrizations.weight for layer in layers]
    weights = [p.original.detach() for p in params]
    us = [p[0]._u.clone() for p in params]
    vs = [p[0]._v.clone() for p in params]
    return weights, us, vs, [p[0].dim for p in params]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("n_power_iterations", [1, 3])
def test_training_steps_equal_pytorch(dtype, n_power_iterations):
    layers = pytorch_layers(dtype, n_power_iterations)
    weights, us, vs, dims = launch_inputs(layers)
    plan = ops.GroupPlan(weights, dims, [n_power_iterations] * len(layers))
    for _ in range(2):
        got = ops.normalize_group(plan, weights, us, vs, 1e-12)
        for layer, y, u, v in zip(layers, got, us, vs, strict=True):
            expected = layer.weight  # PyTorch's step: updates its u, v, returns W / sigma
            sn = layer.parametrizations.weight[0]
            torch.testing.assert_close(y, expected.detach(), rtol=TOL[dtype], atol=TOL[dtype])
            torch.testing.assert_close(u, sn._u, rtol=TOL[dtype], atol=TOL[dtype])
            torch.testing.assert_close(v, sn._v, rtol=TOL[dtype], atol=TOL[dtype])
            assert y.dtype == dtype and y.shape == expected.shape


def test_eval_computes_sigma_without_update():
    layers = [layer.eval() for layer in pytorch_layers(torch.float64)]
    weights, us, vs, dims = launch_inputs(layers)
    before = [u.clone() for u in us]
    got = ops.normalize_group(ops.GroupPlan(weights, dims, [0] * len(layers)), weights, us, vs,
                              1e-12)
    for layer, y, u, u0 in zip(layers, got, us, before, strict=True):
        torch.testing.assert_close(y, layer.weight.detach(), rtol=1e-12, atol=1e-12)
        assert torch.equal(u, u0)


def test_half_weights_use_float32_math():
    layers = pytorch_layers(torch.float64)
    weights, us, vs, dims = launch_inputs(layers)
    half = [w.half() for w in weights]
    us_h, vs_h = [u.half() for u in us], [v.half() for v in vs]
    got = ops.normalize_group(ops.GroupPlan(half, dims, [1] * len(layers)), half, us_h, vs_h,
                              1e-12)
    for layer, y in zip(layers, got, strict=True):  # oracle: float64 from the same (rounded) start
        assert y.dtype == torch.float16
        torch.testing.assert_close(y.double(), layer.weight.detach(), rtol=2e-2, atol=2e-3)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_backward_equals_the_reference_gradient(dtype):
    layers = pytorch_layers(dtype)
    weights, us, vs, dims = launch_inputs(layers)
    weights = [w.clone().requires_grad_() for w in weights]
    grads = [torch.randn_like(w) for w in weights]
    got = ops.normalize_group(ops.GroupPlan(weights, dims, [1] * len(layers)), weights, us, vs,
                              1e-12)
    got_grads = torch.autograd.grad(got, weights, grads)
    for weight, u, v, dim, grad, got_grad in zip(weights, us, vs, dims, grads, got_grads, strict=True):
        w = weight.detach().double().requires_grad_()
        # u, v after the step (as the forward used them), constants: PyTorch's graph
        y = ops.normalize_by_sigma_reference(w, u.double(), v.double(), dim)
        (expected,) = torch.autograd.grad(y, w, grad.double())
        torch.testing.assert_close(got_grad.double(), expected, rtol=TOL[dtype] * 10,
                                   atol=TOL[dtype] * 10)


def test_double_backward_through_create_graph():
    layers = pytorch_layers(torch.float64)[:3]
    weights, us, vs, dims = launch_inputs(layers)
    weights = [w.clone().requires_grad_() for w in weights]
    plan = ops.GroupPlan(weights, dims, [0] * len(layers))  # eval: u, v fixed, comparable
    y = ops.normalize_group(plan, weights, us, vs, 1e-12)
    first = torch.autograd.grad(sum((t ** 3).sum() for t in y), weights, create_graph=True)
    second = torch.autograd.grad(sum(g.square().sum() for g in first), weights)
    for weight, u, v, dim, got in zip(weights, us, vs, dims, second, strict=True):
        w = weight.detach().requires_grad_()
        ref = ops.normalize_by_sigma_reference(w, u, v, dim)
        (g,) = torch.autograd.grad((ref ** 3).sum(), w, create_graph=True)
        (expected,) = torch.autograd.grad(g.square().sum(), w)
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
def test_group_triton_route_equals_torch_route(monkeypatch, channels_last):
    from ganfast.bench.spectral_norm import SNGANDiscriminator32

    torch.manual_seed(0)
    torch_model = SNGANDiscriminator32(ganfast.nn.spectral_norm, channels=4).double()
    if channels_last:  # conv weights channels_last: the launch reads contiguous copies
        torch_model.to(memory_format=torch.channels_last)
        assert not torch_model.blocks[0].residual[0].parametrizations.weight.original.is_contiguous()
    triton_model = copy.deepcopy(torch_model)
    real, fake = torch.randn(2, 2, 3, 32, 32, dtype=torch.float64)
    groups = {"torch": ganfast.nn.SpectralNormGroup(torch_model, backend="torch"),
              "triton": ganfast.nn.SpectralNormGroup(triton_model, backend="triton")}
    # The triton backend on CPU tensors: the interpreter runs it.
    monkeypatch.setattr(spectral_norm_group, "resolve", lambda op, backend, on_cuda: backend)
    for model, group in zip((torch_model, triton_model), groups.values(), strict=True):
        for _ in range(2):
            model.zero_grad()
            with group.once():
                loss = (1 - model(real)).relu().mean() + (1 + model(fake)).relu().mean()
            loss.backward()
    for a, b in zip(torch_model.parameters(), triton_model.parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-10, atol=1e-12)
    for a, b in zip(torch_model.buffers(), triton_model.buffers(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("make", LAYERS[:6])
def test_per_access_triton_route_equals_pytorch(make):
    # What a layer's parametrization runs on CUDA with backend "triton": a group of one.
    torch.manual_seed(0)
    theirs = parametrizations.spectral_norm(make()).double()
    torch.manual_seed(0)
    ours = ganfast.nn.spectral_norm(make()).double()
    sn = ours.parametrizations.weight[0]
    original = ours.parametrizations.weight.original
    for training in (True, True, False):
        theirs.train(training)
        sn.train(training)
        got = sn._normalize_fused(original, "triton")
        torch.testing.assert_close(got, theirs.weight, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(sn._u, theirs.parametrizations.weight[0]._u, rtol=1e-12, atol=1e-12)
    (grad,) = torch.autograd.grad(got.square().sum(), original)
    (expected,) = torch.autograd.grad(theirs.weight.square().sum(),
                                      theirs.parametrizations.weight.original)
    torch.testing.assert_close(grad, expected, rtol=1e-10, atol=1e-12)


def test_channels_last_weight_keeps_one_address_from_call_to_call():
    # A channels_last conv weight is copied for the kernel into a buffer the plan keeps: the
    # address tables are built once, not on every call where a fresh copy lands elsewhere.
    torch.manual_seed(0)
    theirs = parametrizations.spectral_norm(nn.Conv2d(5, 7, 3)).double()
    torch.manual_seed(0)
    ours = ganfast.nn.spectral_norm(nn.Conv2d(5, 7, 3)).double()
    for layer in (theirs, ours):
        layer.to(memory_format=torch.channels_last)
    sn = ours.parametrizations.weight[0]
    original = ours.parametrizations.weight.original
    assert not original.is_contiguous()
    tables = set()
    for _ in range(3):
        got = sn._normalize_fused(original, "triton")
        plan = sn._fused_plans[(1, original.get_device())]
        tables.add(id(plan.tables))
        assert plan.tables[0][0, 0].item() == plan.copies[0].data_ptr()
        torch.testing.assert_close(got, theirs.weight, rtol=1e-12, atol=1e-12)
    assert len(tables) == 1


def test_torch_func_transforms_leave_the_fused_route(monkeypatch):
    # With the fused route chosen (set_backend("triton") on CUDA), torch.func.grad, vmap and
    # forward-mode AD cannot run the kernels' Function: they must give PyTorch's results.
    import importlib

    sn_module = importlib.import_module("ganfast.nn.spectral_norm")  # (the function shadows it)
    launch, under_transform = ops._launch, []

    def recording_launch(backend, plan, weights, *args):
        under_transform.append(transformed(*weights))
        return launch(backend, plan, weights, *args)

    monkeypatch.setattr(sn_module, "resolve", lambda op, backend, on_cuda: "triton")
    monkeypatch.setattr(ops, "_launch", recording_launch)
    check_torch_func_matches_pytorch()
    assert under_transform and not any(under_transform)  # the plain calls launched, no other


# A weight: 2 or 3 dims (with dim 1 and 3 dims, columns split into K-sized runs as in a
# ConvTranspose), normalized along dim 0 or 1, sizes around the kernels' tiles (32 rows, 128
# columns) and small enough for the interpreter.
_WEIGHT = st.lists(st.integers(1, 40), min_size=2, max_size=3).flatmap(
    lambda shape: st.tuples(st.just(tuple(shape)), st.integers(0, 1)))


@settings(max_examples=12, deadline=None)
@given(layers=st.lists(_WEIGHT, min_size=1, max_size=3), n_iter=st.integers(1, 3),
       training=st.booleans(), dtype=st.sampled_from([torch.float64, torch.float32]),
       seed=st.integers(0, 2**16))
def test_one_launch_on_drawn_layers_equals_pytorch(layers, n_iter, training, dtype, seed):
    # Each layer against PyTorch's own parametrization module from the same u, v: W / sigma,
    # u and v after the step (training) or unchanged (eval), and the gradient of W / sigma.
    from torch.nn.utils.parametrizations import _SpectralNorm

    torch.manual_seed(seed)
    weights = [torch.randn(shape, dtype=dtype) for shape, _ in layers]
    dims = [dim for _, dim in layers]
    theirs = [_SpectralNorm(w, n_iter, dim, 1e-12).train(training)
              for w, dim in zip(weights, dims, strict=True)]
    us = [sn._u.clone() for sn in theirs]
    vs = [sn._v.clone() for sn in theirs]
    leaves = [w.clone().requires_grad_(True) for w in weights]
    plan = ops.GroupPlan(leaves, dims, [n_iter if training else 0] * len(layers))
    got = ops.normalize_group(plan, leaves, us, vs, 1e-12)
    tol = TOL[dtype]
    for sn, w, y, u, v in zip(theirs, weights, got, us, vs, strict=True):
        torch.testing.assert_close(y, sn(w), rtol=tol, atol=tol)  # sn(w): PyTorch's step
        torch.testing.assert_close(u, sn._u, rtol=tol, atol=tol)
        torch.testing.assert_close(v, sn._v, rtol=tol, atol=tol)
    grads = [torch.randn_like(w) for w in weights]
    for sn, leaf, dim, grad, g in zip(theirs, leaves, dims, grads,
                                      torch.autograd.grad(got, leaves, grads), strict=True):
        w = leaf.detach().double().requires_grad_(True)
        y = ops.normalize_by_sigma_reference(w, sn._u.double(), sn._v.double(), dim)
        (expected,) = torch.autograd.grad(y, w, grad.double())
        torch.testing.assert_close(g.double(), expected, rtol=tol * 10, atol=tol * 10)


@pytest.mark.filterwarnings("ignore:Complex modules are a new feature")
def test_group_triton_route_takes_complex_layers_one_by_one(monkeypatch):
    # The kernels' arithmetic is real: a group's complex layer runs its own torch route (as
    # PyTorch's, autograd's gradient) while the real ones share the launch.
    torch.manual_seed(0)
    bases = {"complex": nn.Linear(5, 3).to(torch.complex128), "real": nn.Linear(5, 3).double()}
    models = {}
    for name, apply in (("theirs", parametrizations.spectral_norm),
                        ("ours", ganfast.nn.spectral_norm)):
        torch.manual_seed(1)  # the same u, v draws for both
        models[name] = nn.ModuleDict({k: apply(copy.deepcopy(b)) for k, b in bases.items()})
    group = ganfast.nn.SpectralNormGroup(models["ours"], backend="triton")
    monkeypatch.setattr(spectral_norm_group, "resolve", lambda op, backend, on_cuda: backend)
    for _ in range(2):
        got = group.normalize()
        expected = [models["theirs"][k].weight for k in bases]
        for g, e in zip(got, expected, strict=True):
            torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-12)
        sum(w.abs().square().sum() for w in got).backward()
        sum(w.abs().square().sum() for w in expected).backward()
    for k in bases:
        theirs = models["theirs"][k].parametrizations.weight
        ours = models["ours"][k].parametrizations.weight
        torch.testing.assert_close(ours.original.grad, theirs.original.grad, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(ours[0]._u, theirs[0]._u, rtol=1e-12, atol=1e-12)
