"""Gradient penalty on a CUDA device: every backend against the reference in every dtype,
odd shapes and layouts, the full penalty with double backward, compile, opcheck, and a
tensor past 2^31 elements. Skipped without CUDA (see conftest.py)."""

import copy

import pytest
import torch

import ganfast
from ganfast import backends
from ganfast.ops._library import kernel
from ganfast.ops.gradient_penalty import (
    interpolate_reference,
    interpolate_with,
    norm_backward_reference,
    norm_penalty_with,
    penalty_reference,
    per_sample_norm_with,
)

from . import canonical

pytestmark = pytest.mark.gpu

GPU_BACKENDS = ["cuda", "triton"]
SHAPES = [(5,), (1, 1), (3, 7), (5, 3, 17, 13), (2, 1023), (7, 4097), (64, 3, 64, 64), (3, 2, 3, 5, 7)]
DTYPE_TOL = [(torch.float32, 1e-5), (torch.float16, 2e-3), (torch.bfloat16, 1.6e-2),
             (torch.float64, 1e-12)]


def _interpolate(real, fake, alpha, backend):
    return interpolate_with(backend, real, fake, alpha)


def _per_sample_norm(x, backend):
    return per_sample_norm_with(backend, x)


def _per_sample_norm_backward(grad_norm, x, norm, backend):
    return kernel(backend, "norm_backward")(grad_norm, x, norm, 0.0, 1.0)


def per_sample_norm_backward_reference(grad_norm, x, norm):
    return norm_backward_reference(grad_norm, x, norm, 0.0, 1.0)


def _require(backend):
    why = backends.unavailable_reason(backend, torch.device("cuda"))
    if why:
        pytest.fail(f"backend {backend} unavailable on this GPU machine: {why}")


@pytest.mark.parametrize("backend", GPU_BACKENDS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype,tol", DTYPE_TOL)
def test_interpolate_matches_reference(backend, shape, dtype, tol):
    _require(backend)
    real = torch.randn(shape, device="cuda", dtype=dtype)
    fake = torch.randn(shape, device="cuda", dtype=dtype)
    alpha = torch.rand(shape[0], device="cuda", dtype=torch.float64 if dtype == torch.float64
                       else torch.float32)
    got = _interpolate(real, fake, alpha, backend)
    expected = interpolate_reference(real.double(), fake.double(), alpha.double())
    assert got.dtype == dtype
    torch.testing.assert_close(got.double(), expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("backend", GPU_BACKENDS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype,tol", DTYPE_TOL)
def test_per_sample_norm_and_backward_match_reference(backend, shape, dtype, tol):
    _require(backend)
    x = torch.randn(shape, device="cuda", dtype=dtype)
    norm = _per_sample_norm(x, backend)
    expected = x.double().reshape(shape[0], -1).norm(dim=1)
    torch.testing.assert_close(norm.double(), expected, rtol=1e-5 if dtype != torch.float64
                               else 1e-12, atol=0)

    grad_norm = torch.randn(shape[0], device="cuda", dtype=norm.dtype)
    got = _per_sample_norm_backward(grad_norm, x, norm, backend)
    ref = per_sample_norm_backward_reference(grad_norm.double(), x.double(), norm.double())
    assert got.dtype == dtype
    torch.testing.assert_close(got.double(), ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("backend", GPU_BACKENDS)
@pytest.mark.parametrize("layout", ["channels_last", "transposed", "strided"])
def test_layouts(backend, layout):
    _require(backend)
    make = {
        "channels_last": lambda t: t.contiguous(memory_format=torch.channels_last),
        "transposed": lambda t: t.transpose(2, 3),
        "strided": lambda t: torch.stack([t, -t], dim=-1)[..., 0],
    }[layout]
    real, fake = (make(torch.randn(4, 6, 9, 5, device="cuda")) for _ in range(2))
    alpha = torch.rand(4, device="cuda")
    x_hat = _interpolate(real, fake, alpha, backend)
    torch.testing.assert_close(x_hat, canonical.interpolation(real, fake, alpha))
    assert x_hat.stride() == torch.empty_like(real).stride()
    norm = _per_sample_norm(real, backend)
    torch.testing.assert_close(norm, real.flatten(1).norm(dim=1))
    back = _per_sample_norm_backward(torch.ones(4, device="cuda"), real, norm, backend)
    torch.testing.assert_close(back, real / norm.view(-1, 1, 1, 1))
    assert back.stride() == torch.empty_like(real).stride()


@pytest.mark.parametrize("backend", GPU_BACKENDS + ["torch"])
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.float64, 1e-10)])
def test_gradient_penalty_end_to_end(backend, dtype, tol, monkeypatch):
    if backend != "torch":
        _require(backend)
    # cuDNN convolutions default to TF32 (~5e-4 relative): the critic itself would miss 1e-4.
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    shape = (6, 3, 16, 16)
    critic64 = canonical.critic_for(shape, torch.float64, "cuda")
    critic = copy.deepcopy(critic64).to(dtype)
    real = torch.randn(shape, device="cuda", dtype=torch.float64)
    fake = torch.randn(shape, device="cuda", dtype=torch.float64)
    alpha = torch.rand(shape[0], device="cuda", dtype=torch.float64)
    expected = canonical.wgan_gp(critic64, real, fake, alpha)
    expected.backward()
    got = ganfast.gradient_penalty(critic, real.to(dtype), fake.to(dtype), alpha=alpha,
                                   backend=backend)
    got.backward()
    torch.testing.assert_close(got.double(), expected, rtol=tol, atol=tol)
    for g, e in zip(canonical.param_grads(critic), canonical.param_grads(critic64), strict=True):
        torch.testing.assert_close(g.double(), e, rtol=tol, atol=tol * max(e.abs().max().item(), 1))

    r1_expected = canonical.r1(critic64, real)
    r1_got = ganfast.r1_penalty(critic, real.to(dtype), backend=backend)
    torch.testing.assert_close(r1_got.double(), r1_expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("backend", GPU_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_batch_past_the_grid_limit(backend, dtype):
    # 70000 samples > 65535: CUDA loops over grid y, Triton splits the launch.
    _require(backend)
    x = torch.randn(70000, 8, device="cuda", dtype=dtype)
    norm = _per_sample_norm(x, backend)
    torch.testing.assert_close(norm.double(), x.double().norm(dim=1), rtol=1e-5, atol=0)
    gn = torch.randn(70000, device="cuda")
    back = _per_sample_norm_backward(gn, x, norm, backend)
    torch.testing.assert_close(back.double(), per_sample_norm_backward_reference(
        gn.double(), x.double(), norm.double()), rtol=2e-3, atol=2e-3)
    alpha = torch.rand(70000, device="cuda")
    y = _interpolate(x, -x, alpha, backend)
    torch.testing.assert_close(y.double(), interpolate_reference(x.double(), -x.double(),
                                                                 alpha.double()),
                               rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_misaligned_rows_fall_back_to_scalar_loads(backend):
    # Row length a multiple of the vector width, base pointer off by one element.
    _require(backend)
    x = torch.randn(4 * 64 + 1, device="cuda", dtype=torch.float16)[1:].view(4, 64)
    assert x.data_ptr() % 16 != 0
    norm = _per_sample_norm(x, backend)
    torch.testing.assert_close(norm.double(), x.double().norm(dim=1), rtol=1e-5, atol=0)
    back = _per_sample_norm_backward(torch.ones(4, device="cuda"), x, norm, backend)
    torch.testing.assert_close(back.float(), (x.float() / norm[:, None]), rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_gradgradcheck_on_gpu(backend):
    _require(backend)
    x = torch.randn(3, 5, 7, device="cuda", dtype=torch.float64, requires_grad=True)
    fn = lambda t: _per_sample_norm(t, backend)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_zero_gradient_is_finite(backend):
    _require(backend)
    x = torch.zeros(3, 4, 5, device="cuda", requires_grad=True)
    norm = _per_sample_norm(x, backend)
    ((norm - 1) ** 2).sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_opcheck_on_gpu(backend):
    _require(backend)
    ops = torch.ops.ganfast_C if backend == "cuda" else torch.ops.ganfast
    x = torch.randn(3, 4, 5, device="cuda")
    cl = torch.randn(3, 4, 5, 6, device="cuda").to(memory_format=torch.channels_last)
    real, fake = torch.randn(3, 4, 5, device="cuda"), torch.randn(3, 4, 5, device="cuda")
    torch.library.opcheck(ops.norm_penalty.default, (x, 10.0, 1.0))
    torch.library.opcheck(ops.norm_penalty.default, (cl, 2.0, 0.0))
    torch.library.opcheck(ops.interpolate.default, (real, fake, torch.rand(3, device="cuda")))
    torch.library.opcheck(ops.norm_backward.default,
                          (torch.randn(3, device="cuda"), x, torch.rand(3, device="cuda") + 0.1,
                           0.0, 1.0))
    torch.library.opcheck(ops.norm_backward.default,
                          (torch.randn((), device="cuda").expand(3), cl,
                           torch.rand(3, device="cuda") + 0.1, 0.5, -0.5))


@pytest.mark.parametrize("backend", GPU_BACKENDS)
@pytest.mark.parametrize("shape", [(1, 5), (6, 3, 17, 13), (64, 3, 64, 64), (70000, 8), (2, 2**20 + 3),
                                   (1, 65536), (3, 5000)])
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 1e-5),
                                       (torch.float64, 1e-12)])
@pytest.mark.parametrize("weight,center", [(10.0, 1.0), (5.0, 0.0), (0.1, 0.7)])
def test_norm_penalty_and_its_backward_match_reference(backend, shape, dtype, tol, weight, center):
    # The fused tail: norms and the penalty out of the kernels, the penalty's scalar gradient
    # folded into norm_backward, against float64 PyTorch on the same (rounded) input.
    _require(backend)
    g = torch.randn(shape, device="cuda", dtype=dtype, requires_grad=True)
    got = norm_penalty_with(backend, g, weight, center)
    (grad_got,) = torch.autograd.grad(got * 1.7, g)
    g64 = g.detach().double().requires_grad_(True)
    expected = weight * ((g64.reshape(shape[0], -1).norm(dim=1) - center) ** 2).mean()
    (grad_expected,) = torch.autograd.grad(expected * 1.7, g64)
    assert got.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    torch.testing.assert_close(got.double(), expected, rtol=tol, atol=0)
    grad_tol = {torch.float32: 1e-5, torch.bfloat16: 1.6e-2, torch.float64: 1e-12}[dtype]
    torch.testing.assert_close(grad_got.double(), grad_expected, rtol=grad_tol,
                               atol=grad_tol * grad_expected.abs().max().item())


@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_kernel_launches_per_penalty(backend):
    # Launch count is a budget (docs/ops.md): interpolate 1; penalty forward 1 on a small
    # input, else 2 (partial sums, then one program for the tail); backward 1. Canonical
    # eager code takes many more.
    _require(backend)
    from torch.profiler import ProfilerActivity, profile

    real, fake = torch.randn(8, 3, 16, 16, device="cuda"), torch.randn(8, 3, 16, 16, device="cuda")
    alpha = torch.rand(8, device="cuda")
    small = torch.randn(8, 3, 16, 16, device="cuda", requires_grad=True)
    large = torch.randn(64, 3, 64, 64, device="cuda", requires_grad=True)
    seed = torch.ones((), device="cuda")

    def launches(fn):
        fn()  # compile/warm caches outside the trace
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            fn()
            torch.cuda.synchronize()
        return sum(1 for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA)

    assert launches(lambda: interpolate_with(backend, real, fake, alpha)) == 1
    for g, expected in ((small, 2), (large, 3)):
        ours = launches(lambda g=g: torch.autograd.grad(norm_penalty_with(backend, g, 10.0, 1.0),
                                                        g, seed))
        assert ours == expected
        canonical_count = launches(lambda g=g: torch.autograd.grad(
            10 * ((g.flatten(1).norm(2, dim=1) - 1) ** 2).mean(), g, seed))
        assert canonical_count > ours


@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_compile_fullgraph_inductor(backend):
    _require(backend)
    from ganfast.ops import interpolate, per_sample_norm

    def penalty(real, fake, alpha, g):
        return interpolate(real, fake, alpha, backend).mean() + (
            (per_sample_norm(g, backend) - 1) ** 2).mean()

    real, fake = torch.randn(4, 3, 8, 8, device="cuda"), torch.randn(4, 3, 8, 8, device="cuda")
    alpha = torch.rand(4, device="cuda")
    g = torch.randn(4, 3, 8, 8, device="cuda", requires_grad=True)
    got = torch.compile(penalty, fullgraph=True)(real, fake, alpha, g)
    expected = penalty(real, fake, alpha, g)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(torch.autograd.grad(got, g)[0], torch.autograd.grad(expected, g)[0])


def test_auto_picks_an_available_gpu_backend():
    x = torch.randn(2, 3, device="cuda")
    chosen = backends.resolve("gradient_penalty", "auto", x.is_cuda)
    assert chosen in backends.auto_order("gradient_penalty")
    assert not backends.unavailable_reason(chosen, x.device)


@pytest.mark.slow
@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_tensor_past_int32_indexing(backend):
    # 2 samples x 2^30 + 3 elements: offsets past 2^31 in both kernels (fp16: 4 GiB a tensor).
    _require(backend)
    free, _ = torch.cuda.mem_get_info()
    row = 2**30 + 3
    if free < 5 * 2 * row * 2:
        pytest.skip(f"needs ~{5 * 2 * row * 2 / 2**30:.0f} GiB free on the GPU, has {free / 2**30:.0f}")
    x = torch.empty(2, row, device="cuda", dtype=torch.float16).uniform_(-1, 1)
    x[1, -5:] = 7.0  # the very end of the tensor must be read
    norm = _per_sample_norm(x, backend)
    expected = torch.stack([torch.linalg.vector_norm(x[i], dtype=torch.float64) for i in range(2)])
    torch.testing.assert_close(norm.double(), expected, rtol=1e-4, atol=0)
    back = _per_sample_norm_backward(torch.ones(2, device="cuda"), x, norm, backend)
    torch.testing.assert_close(back[1, -5:].float(), (7.0 / norm[1]).expand(5).float(),
                               rtol=2e-3, atol=0)
    torch.testing.assert_close(back[0, :1000].float(), x[0, :1000].float() / norm[0],
                               rtol=2e-3, atol=1e-6)
    del back
    y = _interpolate(x, torch.zeros_like(x), torch.tensor([0.5, 0.25], device="cuda"), backend)
    torch.testing.assert_close(y[1, -5:].float(), torch.full((5,), 1.75, device="cuda"))


@pytest.mark.slow
def test_torch_backend_r1_past_int32_elements():
    # The torch backend's R1 is a sum of squares: one dot product over a flat view, which
    # ATen's CUDA dot refuses past 2^31 - 1 elements; such a tensor takes square().sum().
    n = 2**31 + 6
    free, _ = torch.cuda.mem_get_info()
    if free < 3 * n * 4:
        pytest.skip(f"needs ~{3 * n * 4 / 2**30:.0f} GiB free on the GPU, has {free / 2**30:.0f}")
    x = torch.full((2, n // 2), 0.5, device="cuda")
    torch.testing.assert_close(penalty_reference(x, 5.0, 0.0).double(),
                               torch.tensor(5.0 * 0.25 * n / 2, device="cuda", dtype=torch.float64),
                               rtol=1e-5, atol=0)


@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_autocast_fp16_recipe_is_finite_and_close(backend, monkeypatch):
    _require(backend)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    shape = (8, 3, 16, 16)
    critic = canonical.critic_for(shape, device="cuda")
    real, fake = torch.randn(shape, device="cuda"), torch.randn(shape, device="cuda")
    alpha = torch.rand(8, device="cuda")
    expected = ganfast.gradient_penalty(critic, real, fake, alpha=alpha, backend="torch")
    scaler = torch.amp.GradScaler("cuda", init_scale=2.0**10)  # no overflow on step one
    with torch.autocast("cuda", dtype=torch.float16):
        got = ganfast.gradient_penalty(critic, real, fake, alpha=alpha, backend=backend,
                                       scaler=scaler)
    scaler.scale(got).backward()
    assert torch.isfinite(got)
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in critic.parameters())
    torch.testing.assert_close(got.float(), expected, rtol=5e-2, atol=5e-3)
