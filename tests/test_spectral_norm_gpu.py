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
