"""Spectral norm on a GPU: the fused routes, Triton and CUDA (per layer and grouped), against
PyTorch's parametrization in every parameter dtype, and their launch counts."""

import copy

import pytest
import torch
from torch.nn.utils import parametrizations

import ganfast
from ganfast import backends
from ganfast.bench.spectral_norm import SNGANDiscriminator32

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

TOL = {torch.float64: 1e-12, torch.float32: 1e-5, torch.bfloat16: 3e-2, torch.float16: 5e-3}


@pytest.fixture(autouse=True)
def _no_tf32():
    # fp32 means fp32: the two models' weights differ by rounding, which TF32 convs would amplify.
    old = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32 = old


@pytest.fixture(params=["triton", "cuda"])
def fused(request):
    """A fused backend; the CUDA one must be built where CI asks for the extension."""
    why = backends.unavailable_reason(request.param, torch.device("cuda"))
    if why:
        pytest.skip(why)
    return request.param


def models(dtype, memory_format=torch.contiguous_format):
    built = []
    for sn in (parametrizations.spectral_norm, ganfast.nn.spectral_norm):
        torch.manual_seed(0)
        built.append(SNGANDiscriminator32(sn, channels=16).to("cuda", dtype,
                                                               memory_format=memory_format))
    return built


def weights(model):
    return [m.weight for m in model.modules() if hasattr(m, "parametrizations")]


@pytest.mark.parametrize("dtype", list(TOL))
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last],
                         ids=["contiguous", "channels_last"])
def test_per_layer_fused_equals_pytorch(dtype, memory_format, fused):
    theirs, ours = models(dtype, memory_format)
    ganfast.set_backend(fused)
    try:
        for step in range(3):
            for a, b in zip(weights(theirs), weights(ours), strict=True):
                # math in fp32: compare in fp64 against PyTorch's (in the parameter dtype)
                torch.testing.assert_close(b.double(), a.double(), rtol=TOL[dtype], atol=TOL[dtype])
                grad = torch.randn(a.shape, device="cuda", dtype=dtype,
                                   generator=torch.Generator("cuda").manual_seed(step))
                a.backward(grad), b.backward(grad)
        for a, b in zip(theirs.parameters(), ours.parameters(), strict=True):
            if a.grad is not None:
                torch.testing.assert_close(b.grad.double(), a.grad.double(),
                                           rtol=TOL[dtype] * 10, atol=TOL[dtype] * 10)
    finally:
        ganfast.set_backend(None)


@pytest.mark.parametrize("dtype", list(TOL))
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last],
                         ids=["contiguous", "channels_last"])
def test_group_fused_equals_group_torch(dtype, memory_format, fused):
    _, ours = models(dtype, memory_format)
    other = copy.deepcopy(ours)
    x = torch.randn(4, 3, 32, 32, device="cuda", dtype=dtype)
    outputs = []
    for model, backend in ((ours, "torch"), (other, fused)):
        group = ganfast.nn.SpectralNormGroup(model, backend=backend)
        for _ in range(2):
            model.zero_grad()
            with group.once():
                out = model(x).float().sum() + model(x.flip(0)).float().sum()
            out.backward()
        outputs.append([p.grad.double() for p in model.parameters()])
    for a, b in zip(*outputs, strict=True):
        torch.testing.assert_close(b, a, rtol=TOL[dtype] * 10, atol=TOL[dtype] * 10)


def test_group_is_one_launch_forward_and_backward(fused):
    _, ours = models(torch.float32)
    group = ganfast.nn.SpectralNormGroup(ours, backend=fused)
    group.normalize()  # compile the kernels
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        weights = group.normalize()
        torch.autograd.grad(weights, [m.parametrizations.weight.original for m, _, _ in group.layers],
                            [torch.ones_like(w) for w in weights])
        torch.cuda.synchronize()
    names = [e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    sn_kernels = [n for n in names if "normalize_group" in n]
    assert len(sn_kernels) == 2, names  # forward + backward, for all layers


def test_per_access_fused_route_is_two_launches(fused):
    _, ours = models(torch.float32)
    layer = next(m for m in ours.modules() if hasattr(m, "parametrizations"))
    grad = torch.randn_like(layer.weight)
    ganfast.set_backend(fused)
    try:
        layer.weight.backward(grad)  # compile the kernels
        torch.cuda.synchronize()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            layer.weight.backward(grad)
            torch.cuda.synchronize()
    finally:
        ganfast.set_backend(None)
    names = [e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    assert len([n for n in names if "normalize_group" in n]) == 2, names  # forward + backward
    assert not [n for n in names if "cat" in n.lower()], names  # one layer: no concatenation


# Every layout the kernels address: dim 0 (Linear, Conv, Embedding) and dim 1 (ConvTranspose),
# non-square matrices, sizes around the block sizes.
LAYERS = [
    lambda: torch.nn.Linear(37, 19),
    lambda: torch.nn.Conv1d(2, 70, 5),
    lambda: torch.nn.Conv2d(15, 5, 3),
    lambda: torch.nn.Conv3d(2, 3, 2),
    lambda: torch.nn.ConvTranspose1d(3, 6, 3),
    lambda: torch.nn.ConvTranspose2d(4, 33, 3),
    lambda: torch.nn.Embedding(11, 6),
    lambda: torch.nn.Linear(600, 1030),
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("n_power_iterations", [1, 3])
def test_one_launch_for_every_layer_kind_equals_pytorch(dtype, n_power_iterations, fused):
    from ganfast.ops import spectral_norm as ops

    torch.manual_seed(0)
    layers = [parametrizations.spectral_norm(make(), n_power_iterations=n_power_iterations)
              .to("cuda", dtype) for make in LAYERS]
    params = [layer.parametrizations.weight for layer in layers]
    weights = [p.original.detach().requires_grad_(True) for p in params]
    us, vs = [p[0]._u.clone() for p in params], [p[0]._v.clone() for p in params]
    plan = ops.GroupPlan(weights, [p[0].dim for p in params], [n_power_iterations] * len(layers))
    tol = TOL[dtype]
    for _ in range(2):
        got = ops.normalize_group(plan, weights, us, vs, 1e-12, backend=fused)
        for layer, y, u, v in zip(layers, got, us, vs, strict=True):
            sn = layer.parametrizations.weight[0]
            expected = layer.weight  # PyTorch's step: updates its u, v, returns W / sigma
            torch.testing.assert_close(y, expected, rtol=tol, atol=tol)
            torch.testing.assert_close(u, sn._u, rtol=tol, atol=tol)
            torch.testing.assert_close(v, sn._v, rtol=tol, atol=tol)
    grads = [torch.randn_like(y) for y in got]
    got_grads = torch.autograd.grad(got, weights, grads)
    # The reference gradient of W / sigma at the u, v the last step used (PyTorch's).
    for layer, weight, grad, g in zip(layers, weights, grads, got_grads, strict=True):
        sn = layer.parametrizations.weight[0]
        w = weight.detach().requires_grad_(True)
        u, v = sn._u.clone(), sn._v.clone()
        matrix = sn._reshape_weight_to_matrix(w)
        expected = w / torch.vdot(u, torch.mv(matrix, v))
        (e,) = torch.autograd.grad(expected, w, grad)
        torch.testing.assert_close(g, e, rtol=tol * 10, atol=tol * 10)
