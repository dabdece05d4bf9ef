"""The Triton upsample + conv kernel on CPU tensors under TRITON_INTERPRET=1 (tiny shapes: the
interpreter runs each program instance in Python), through its launcher and the triton
backend's eager path (upsample_conv2d_with), against the float64 unfused block
(nn.Upsample + Conv2d): odd sizes, fp32 and fp16, NCHW and channels_last, every epilogue,
every gradient and the double backward."""

import pytest
import torch
from ganfast.kernels import upsample_conv as kernels
from hypothesis import given, settings
from hypothesis import strategies as st

from ganfast.ops import upsample_conv as uc

from . import canonical

pytestmark = pytest.mark.interpreter

DTYPE_TOL = [(torch.float32, 1e-5), (torch.float16, 2e-3)]
ACTIVATIONS = [(None, 0.01), ("relu", 0.01), ("leaky_relu", 0.2)]


def unfused64(x, weight, bias, activation=None, negative_slope=0.01):
    """The canonical block in float64 (tests/canonical.py, independent of ganfast)."""
    bias = bias.double() if bias is not None else None
    return canonical.upsample_conv(x.double(), weight.double(), bias, activation, negative_slope)


def _inputs(b, cin, cout, h, w, dtype, channels_last=False, bias=True):
    # Weights scaled like a conv's init, so fp16 outputs stay O(1).
    x = torch.randn(b, cin, h, w).to(dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    weight = (torch.randn(cout, cin, 3, 3) / (3 * cin**0.5)).to(dtype)
    return x, weight, (torch.randn(cout).to(dtype) if bias else None)


def _assert_close(got, expected, tol):
    scale = max(expected.abs().max().item(), 1.0)
    torch.testing.assert_close(got.double(), expected, rtol=tol, atol=tol * scale)


# ---------------------------------------------------------------- forward (the launcher)

@pytest.mark.parametrize("h", [1, 3, 7])
@pytest.mark.parametrize("w", [1, 3, 7])
@pytest.mark.parametrize("cin,cout", [(1, 1), (3, 3)])
def test_forward_odd_sizes_fp32(h, w, cin, cout):
    x, weight, bias = _inputs(1, cin, cout, h, w, torch.float32)
    got = kernels.upsample_conv_forward(x, weight, bias, None, 0.01)
    assert got.shape == (1, cout, 2 * h, 2 * w) and got.dtype == torch.float32
    _assert_close(got, unfused64(x, weight, bias), 1e-5)


@pytest.mark.parametrize("dtype,tol", DTYPE_TOL)
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("activation,slope", ACTIVATIONS)
@pytest.mark.parametrize("cin,cout,bias", [(1, 3, True), (3, 1, False)])
def test_forward_epilogues_dtypes_layouts(dtype, tol, channels_last, activation, slope, cin,
                                          cout, bias):
    x, weight, b = _inputs(1, cin, cout, 3, 7, dtype, channels_last, bias)
    got = kernels.upsample_conv_forward(x, weight, b, activation, slope)
    assert got.dtype == dtype
    # channels_last in, channels_last out (Cin = 1 is contiguous in both formats: NCHW out)
    expect_cl = channels_last and cin > 1
    assert got.is_contiguous(memory_format=torch.channels_last if expect_cl
                             else torch.contiguous_format)
    _assert_close(got, unfused64(x, weight, b, activation, slope), tol)


def test_forward_several_tiles_in_every_dimension(monkeypatch):
    # 2 x 5 x 7 = 70 source pixels (2 row tiles of 64), 20 output channels and 20 input
    # channels in 16-wide tiles: partial tiles in M, N and K, and a K loop of two steps.
    monkeypatch.setattr(kernels, "MAX_BLOCK_N", 16)
    monkeypatch.setattr(kernels, "MAX_BLOCK_K_BYTES", 16 * 4)  # 16 float32 channels
    x, weight, bias = _inputs(2, 20, 20, 5, 7, torch.float32)
    got = kernels.upsample_conv_forward(x, weight, bias, "leaky_relu", 0.2)
    _assert_close(got, unfused64(x, weight, bias, "leaky_relu", 0.2), 1e-5)


@settings(max_examples=15, deadline=None)
@given(b=st.integers(1, 2), cin=st.integers(1, 5), cout=st.integers(1, 5),
       h=st.integers(1, 7), w=st.integers(1, 7), bias=st.booleans(),
       channels_last=st.booleans(), act=st.sampled_from(ACTIVATIONS))
def test_forward_hypothesis_shapes(b, cin, cout, h, w, bias, channels_last, act):
    x, weight, b_ = _inputs(b, cin, cout, h, w, torch.float32, channels_last, bias)
    got = kernels.upsample_conv_forward(x, weight, b_, *act)
    _assert_close(got, unfused64(x, weight, b_, *act), 1e-5)


@pytest.mark.parametrize("view", ["sliced", "transposed_hw", "expanded_batch"])
def test_forward_reads_strided_inputs_without_copy(view):
    base = torch.randn(3, 6, 7, 6)
    x = {"sliced": base[::2, 1::2, 1:6, ::2],
         "transposed_hw": base.transpose(2, 3),
         "expanded_batch": base[:1].expand(2, -1, -1, -1)}[view]
    weight = torch.randn(2, x.shape[1], 3, 3).transpose(2, 3)  # a non-contiguous weight too
    bias = torch.randn(2)
    got = kernels.upsample_conv_forward(x, weight, bias, None, 0.01)
    assert got.is_contiguous()
    _assert_close(got, unfused64(x, weight, bias), 1e-5)


def test_phase_weights_are_the_transposed_convs_taps():
    weight = torch.randn(2, 3, 3, 3, dtype=torch.float64)
    folded = uc.fold_weight(weight)  # [Cin, Cout, 4, 4]
    packed = uc.phase_weights(weight, torch.float64)  # [phase, tap, Cout, Cin]
    for dy in (0, 1):
        for dx in (0, 1):
            for ty in (0, 1):
                for tx in (0, 1):
                    torch.testing.assert_close(packed[dy * 2 + dx, ty * 2 + tx],
                                               folded[:, :, 3 - dy - 2 * ty, 3 - dx - 2 * tx].t())


def test_launcher_refuses_float64():
    x, weight, bias = _inputs(1, 2, 2, 3, 3, torch.float64)
    with pytest.raises(ValueError, match="float64"):
        kernels.upsample_conv_forward(x, weight, bias, None, 0.01)


def test_empty_batch():
    x, weight, bias = _inputs(0, 2, 3, 3, 3, torch.float32)
    assert kernels.upsample_conv_forward(x, weight, bias, None, 0.01).shape == (0, 3, 6, 6)


# ---------------------------------------------------------------- the triton backend's autograd

@pytest.mark.parametrize("activation,slope", ACTIVATIONS)
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("bias", [True, False])
def test_gradients_equal_the_reference(activation, slope, channels_last, bias):
    x, weight, b = _inputs(2, 3, 2, 3, 5, torch.float32, channels_last, bias)
    leaves = [t.requires_grad_(True) for t in (x, weight, b) if t is not None]
    leaves64 = [t.detach().double().requires_grad_(True) for t in leaves]
    got = uc.upsample_conv2d_with("triton", x, weight, b, activation, slope)
    assert got.grad_fn is not None and "UpsampleConv" in type(got.grad_fn).__name__
    expected = unfused64(*leaves64, *([None] if not bias else []), activation, slope)
    _assert_close(got, expected, 1e-5)
    grad_out = torch.randn_like(expected)
    got_grads = torch.autograd.grad(got, leaves, grad_out.float())
    expected_grads = torch.autograd.grad(expected, leaves64, grad_out)
    for g, e in zip(got_grads, expected_grads, strict=True):
        assert e.abs().sum() > 0 and g.dtype == torch.float32
        _assert_close(g, e, 1e-5)


@pytest.mark.parametrize("weight_layout", ["channels_last", "sliced"])
def test_a_weight_in_any_layout(weight_layout):
    # A model moved to channels_last has channels_last conv weights; a weight can be a slice.
    x, _, b = _inputs(2, 3, 2, 3, 5, torch.float32, channels_last=True)
    weight = torch.randn(2, 6, 3, 3) / 9
    weight = weight[:, ::2] if weight_layout == "sliced" else \
        weight[:, :3].contiguous(memory_format=torch.channels_last)
    assert not weight.is_contiguous()
    leaves = [t.requires_grad_(True) for t in (x, weight, b)]
    got = uc.upsample_conv2d_with("triton", x, weight, b, "relu", 0.01)
    leaves64 = [t.detach().double().requires_grad_(True) for t in leaves]
    expected = unfused64(*leaves64, "relu")
    _assert_close(got, expected, 1e-5)
    grad_out = torch.randn_like(expected)
    for g, e in zip(torch.autograd.grad(got, leaves, grad_out.float()),
                    torch.autograd.grad(expected, leaves64, grad_out), strict=True):
        _assert_close(g, e, 1e-5)


def test_gradient_of_the_weight_only():
    x, weight, bias = _inputs(1, 2, 3, 3, 3, torch.float32)
    weight.requires_grad_(True)
    got = uc.upsample_conv2d_with("triton", x, weight, bias, "relu", 0.01)
    grad_out = torch.randn_like(got)
    (g,) = torch.autograd.grad(got, weight, grad_out)
    w64 = weight.detach().double().requires_grad_(True)
    (e,) = torch.autograd.grad(unfused64(x, w64, bias, "relu"), w64, grad_out.double())
    _assert_close(g, e, 1e-5)


@pytest.mark.parametrize("activation,slope", [(None, 0.01), ("leaky_relu", 0.2)])
def test_double_backward_through_the_reference(activation, slope):
    x, weight, bias = _inputs(1, 2, 2, 3, 3, torch.float32)
    leaves = [t.requires_grad_(True) for t in (x, weight, bias)]
    leaves64 = [t.detach().double().requires_grad_(True) for t in leaves]
    grad_out = torch.randn(1, 2, 6, 6)

    def second_order(fn, inputs, g):
        out = fn(*inputs)
        grads = torch.autograd.grad(out, inputs, g, create_graph=True)
        penalty = sum((gr * gr).sum() for gr in grads[:2])  # a GP-like function of the grads
        return torch.autograd.grad(penalty, inputs[:2])

    got = second_order(lambda *a: uc.upsample_conv2d_with("triton", *a, activation, slope),
                       leaves, grad_out)
    expected = second_order(lambda *a: unfused64(*a, activation, slope), leaves64,
                            grad_out.double())
    for g, e in zip(got, expected, strict=True):
        _assert_close(g, e, 1e-4)


def test_no_grad_inputs_skip_the_function():
    x, weight, bias = _inputs(1, 2, 2, 3, 3, torch.float32)
    out = uc.upsample_conv2d_with("triton", x, weight, bias, None, 0.01)
    assert out.grad_fn is None
    _assert_close(out, unfused64(x, weight, bias), 1e-5)


def test_float64_never_reaches_the_kernel(monkeypatch):
    # The kernel takes fp32/fp16/bf16: float64 runs the torch backend's formulation instead.
    def no_kernel(*args):
        raise AssertionError("the Triton kernel was called with float64 inputs")

    monkeypatch.setattr(uc, "kernel", no_kernel)
    x, weight, bias = _inputs(1, 2, 2, 3, 3, torch.float64)
    out = uc.upsample_conv2d_with("triton", x, weight, bias, "relu", 0.01)
    torch.testing.assert_close(out, unfused64(x, weight, bias, "relu"), rtol=1e-12, atol=1e-12)
