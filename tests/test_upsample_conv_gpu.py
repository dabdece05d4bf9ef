"""Fused upsample + conv on CUDA: every backend (torch: folded transposed conv through cuDNN;
triton: the fused forward kernel) in every dtype and layout against the float64 unfused block,
and the peak memory of forward + backward against the unfused block's."""

from functools import partial

import pytest
import torch
from torch import nn

from ganfast.nn.functional import upsample_conv2d
from ganfast.ops.upsample_conv import upsample_conv2d_unfused

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

DTYPE_TOL = [(torch.float32, 1e-4), (torch.float16, 1e-2), (torch.bfloat16, 4e-2)]
BACKENDS = ["torch", "triton"]


@pytest.fixture(autouse=True)
def _no_tf32():
    old = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False  # fp32 means fp32 in the comparison
    yield
    torch.backends.cudnn.allow_tf32 = old


@pytest.mark.parametrize("dtype,tol", DTYPE_TOL)
# "model": x and the weight channels_last, as after model.to(memory_format=torch.channels_last)
@pytest.mark.parametrize("layout", ["nchw", "channels_last", "model"])
@pytest.mark.parametrize("shape", [(1, 3, 1, 7), (3, 5, 7, 3), (4, 64, 9, 11)])
@pytest.mark.parametrize("activation", [None, "leaky_relu"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_matches_unfused_float64(dtype, tol, layout, shape, activation, backend):
    b, cin, h, w = shape
    channels_last = layout != "nchw"
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x64 = torch.randn(shape, dtype=torch.float64, device="cuda")
    w64 = torch.randn(6, cin, 3, 3, dtype=torch.float64, device="cuda") / (3 * cin**0.5)
    b64 = torch.randn(6, dtype=torch.float64, device="cuda")
    leaves64 = [t.requires_grad_(True) for t in (x64, w64, b64)]
    leaves = [t.detach().to(dtype).requires_grad_(True) for t in leaves64]
    leaves[0] = leaves[0].detach().to(memory_format=fmt).requires_grad_(True)
    if layout == "model":
        leaves[1] = leaves[1].detach().to(memory_format=fmt).requires_grad_(True)
    expected = nn.functional.conv2d(nn.Upsample(scale_factor=2)(x64), w64, b64, padding=1)
    if activation:
        expected = nn.functional.leaky_relu(expected, 0.2)
    got = upsample_conv2d(*leaves, activation=activation, negative_slope=0.2, backend=backend)
    assert got.dtype == dtype
    if channels_last and cin > 1:
        assert got.is_contiguous(memory_format=torch.channels_last)
    scale = expected.abs().max().item()
    torch.testing.assert_close(got.double(), expected, rtol=tol, atol=tol * scale)
    grad_out = torch.randn_like(expected)
    expected_grads = torch.autograd.grad(expected, leaves64, grad_out)
    got_grads = torch.autograd.grad(got, leaves, grad_out.to(dtype))
    for g, e in zip(got_grads, expected_grads, strict=True):
        torch.testing.assert_close(g.double(), e, rtol=tol, atol=tol * e.abs().max().item())


def _peak_bytes(fn, x, weight, bias):
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = torch.cuda.memory_allocated()
    out = fn(x, weight, bias)
    forward_peak = torch.cuda.max_memory_allocated() - start
    out.backward(torch.ones_like(out))
    torch.cuda.synchronize()
    return forward_peak, torch.cuda.max_memory_allocated() - start, out.numel() * out.element_size()


@pytest.mark.parametrize("dtype,tol", DTYPE_TOL)
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("activation", [None, "relu"])
def test_triton_generator_block_matches_the_torch_backend(dtype, tol, channels_last, activation):
    # A DCGAN block (256 -> 128 at 8x8, batch 16): many tiles in M, N and K.
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(16, 256, 8, 8, device="cuda", dtype=dtype).to(memory_format=fmt)
    weight = torch.randn(128, 256, 3, 3, device="cuda", dtype=dtype) / 48
    bias = torch.randn(128, device="cuda", dtype=dtype)
    expected = upsample_conv2d(x.double(), weight.double(), bias.double(), activation=activation)
    got = upsample_conv2d(x, weight, bias, activation=activation, backend="triton")
    scale = expected.abs().max().item()
    torch.testing.assert_close(got.double(), expected, rtol=tol, atol=tol * scale)


@pytest.mark.parametrize("backend", BACKENDS)
def test_peak_activation_memory_is_the_output(backend):
    # A generator block (SNGAN-32, 256 -> 256 at 8x8, batch 64, bf16): the fused forward holds
    # the output and the small folded weight only; the unfused one the upsampled input too.
    x = torch.randn(64, 256, 8, 8, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    weight = torch.randn(256, 256, 3, 3, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    bias = torch.randn(256, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    fused = partial(upsample_conv2d, backend=backend)
    fused_fwd, fused_total, out_bytes = _peak_bytes(fused, x, weight, bias)
    x.grad = weight.grad = bias.grad = None
    unfused_fwd, unfused_total, _ = _peak_bytes(upsample_conv2d_unfused, x, weight, bias)
    folded_bytes = weight.numel() * 16 // 9 * weight.element_size()
    print(f"peak forward: fused {fused_fwd} B, unfused {unfused_fwd} B (output {out_bytes} B)")
    assert fused_fwd <= out_bytes + 3 * folded_bytes  # folding's temporaries are weight-sized
    assert fused_fwd < unfused_fwd
    assert fused_total <= unfused_total


@pytest.mark.parametrize("api", ["set_float32_matmul_precision", "fp32_precision"])
def test_tf32_matmuls_leave_the_folded_weights_exact(api):
    # TF32 on for matmuls, by the legacy or the new API: the fold's matmuls (0/1 entries, at
    # most four taps a sum) must still give the float32 rounding of the exact sums, as the
    # float64 fold does, in the forward's folds and the weight gradient's unfold.
    if api == "fp32_precision":
        old = torch.backends.cuda.matmul.fp32_precision
        torch.backends.cuda.matmul.fp32_precision = "tf32"
    else:
        old = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("high")
    try:
        check_folds_exact()
    finally:
        if api == "fp32_precision":
            torch.backends.cuda.matmul.fp32_precision = old
        else:
            torch.set_float32_matmul_precision(old)


def check_folds_exact():
    from ganfast.ops.upsample_conv import _unfold_grad, fold_weight, phase_weights

    weight = torch.randn(96, 80, 3, 3, device="cuda")
    grad_folded = torch.randn(80, 96, 4, 4, device="cuda")
    exact = dict(rtol=0, atol=0)
    torch.testing.assert_close(fold_weight(weight), fold_weight(weight.double()).float(), **exact)
    torch.testing.assert_close(phase_weights(weight, torch.float32),
                               phase_weights(weight.double(), torch.float32), **exact)
    torch.testing.assert_close(_unfold_grad(grad_folded, weight),
                               _unfold_grad(grad_folded.double(), weight.double()).float(), **exact)
