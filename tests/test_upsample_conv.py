"""Fused upsample + conv on CPU: the folded form against the unfused PyTorch code
(nn.Upsample + nn.Conv2d) in float64, every gradient, gradcheck/gradgradcheck, layouts,
state_dict compatibility, torch.compile, saved-tensor memory and input validation."""

import itertools

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from torch import nn

import ganfast
from ganfast.nn import UpsampleConv2d
from ganfast.nn.functional import upsample_conv2d
from ganfast.ops import upsample_conv as uc

from .canonical import upsample_conv as unfused  # the oracle, independent of ganfast
from .dispatch_count import RecordOps

# (a negative slope, which LeakyReLU allows, flips the sign that the fused backward reads)
ACTIVATIONS = [(None, 0.01), ("relu", 0.01), ("leaky_relu", 0.2), ("leaky_relu", -0.3)]
SHIPPED_CPU_ROUTE = uc.cpu_route
CPU_ROUTES = ("taps", "folded", "unfused")


@pytest.fixture(autouse=True)
def tap_products_at_every_size(monkeypatch):
    # On CPU the torch backend picks a formulation by size (cpu_route); these tests check the
    # tap-products form, so every size takes it (test_every_cpu_route_* cover the others).
    monkeypatch.setattr(uc, "cpu_route", lambda x, weight: "taps")


def _inputs(b, cin, cout, h, w, dtype=torch.float64, bias=True):
    x = torch.randn(b, cin, h, w, dtype=dtype, requires_grad=True)
    weight = torch.randn(cout, cin, 3, 3, dtype=dtype, requires_grad=True)
    b_ = torch.randn(cout, dtype=dtype, requires_grad=True) if bias else None
    return x, weight, b_


def _check_against_unfused(x, weight, bias, activation=None, slope=0.01, tol=1e-12):
    got = upsample_conv2d(x, weight, bias, activation=activation, negative_slope=slope)
    expected = unfused(x, weight, bias, activation, slope)
    torch.testing.assert_close(got, expected, rtol=tol, atol=tol)
    grad_out = torch.randn_like(expected)
    leaves = [t for t in (x, weight, bias) if t is not None]
    got_grads = torch.autograd.grad(got, leaves, grad_out)
    expected_grads = torch.autograd.grad(expected, leaves, grad_out)
    for g, e in zip(got_grads, expected_grads, strict=True):
        assert e.abs().sum() > 0
        torch.testing.assert_close(g, e, rtol=tol, atol=tol)


# ---------------------------------------------------------------- the same function

@pytest.mark.parametrize("h", [1, 3, 7])
@pytest.mark.parametrize("w", [1, 3, 7])
@pytest.mark.parametrize("cin,cout", [(1, 1), (3, 1), (1, 3), (3, 3)])
def test_matches_unfused_float64_odd_sizes(h, w, cin, cout):
    _check_against_unfused(*_inputs(1, cin, cout, h, w))


@pytest.mark.parametrize("activation,slope", ACTIVATIONS)
@pytest.mark.parametrize("bias", [True, False])
def test_epilogue_matches_unfused(activation, slope, bias):
    _check_against_unfused(*_inputs(2, 3, 5, 7, 3, bias=bias), activation, slope)


def test_fold_weight_sums_the_taps_on_each_source_pixel():
    # Checked tap by tap against the rule in words (independent of the folding matrix): output
    # phase (dy, dx) reads source offset (oy, ox) with the sum of the 3x3 taps (ky, kx) for
    # which floor((d + k - 1) / 2) == o on each axis.
    weight = torch.randn(2, 3, 3, 3, dtype=torch.float64)
    folded = uc.fold_weight(weight)  # [Cin, Cout, 4, 4]; tap t <-> (phase d, offset o)
    tap = {(0, -1): 3, (0, 0): 1, (1, 0): 2, (1, 1): 0}  # output row 2j + t - 1 = 2(j+o) + d
    for (dy, oy), ty in tap.items():
        for (dx, ox), tx in tap.items():
            expected = sum(weight[:, :, ky, kx]
                           for ky in range(3) if (dy + ky - 1) // 2 == oy
                           for kx in range(3) if (dx + kx - 1) // 2 == ox)
            torch.testing.assert_close(folded[:, :, ty, tx], expected.t())


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.bfloat16, 6e-2)])
def test_lower_precision_close_to_float64(dtype, tol):
    x, weight, bias = _inputs(2, 8, 4, 5, 6)
    expected = unfused(x, weight, bias)
    got = upsample_conv2d(x.to(dtype), weight.to(dtype), bias.to(dtype))
    assert got.dtype == dtype
    scale = expected.abs().max().item()
    torch.testing.assert_close(got.double(), expected, rtol=tol, atol=tol * scale)


@settings(max_examples=25, deadline=None)
@given(b=st.integers(1, 3), cin=st.integers(1, 5), cout=st.integers(1, 5),
       h=st.integers(1, 9), w=st.integers(1, 9), bias=st.booleans(),
       act=st.sampled_from(ACTIVATIONS), channels_last=st.booleans())
@example(b=1, cin=1, cout=1, h=1, w=1, bias=True, act=("relu", 0.01), channels_last=True)
def test_matches_unfused_hypothesis_shapes(b, cin, cout, h, w, bias, act, channels_last):
    x, weight, bias_ = _inputs(b, cin, cout, h, w, bias=bias)
    if channels_last:
        x = x.detach().to(memory_format=torch.channels_last).requires_grad_(True)
    if act[0] == "relu":
        # On a few pixels ReLU may zero every output, and every gradient with it: the
        # weights and bias negated then give outputs of which some pass.
        with torch.no_grad():
            if (unfused(x, weight, bias_) <= 0).all():
                for t in (weight, bias_):
                    if t is not None:
                        t.neg_()
    _check_against_unfused(x, weight, bias_, *act)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.bfloat16, 6e-2)])
def test_lower_precision_gradients_close_to_float64(dtype, tol):
    _check_lower_precision_gradients(dtype, tol, 2, 8, 4, 5, 6)


def _check_lower_precision_gradients(dtype, tol, b, cin, cout, h, w):
    # No activation: where a rounded output changes sign the activation's slope flips, which
    # says nothing about the convolution's gradients.
    x, weight, bias = _inputs(b, cin, cout, h, w)
    grad_out = torch.randn(b, cout, 2 * h, 2 * w, dtype=torch.float64)
    expected = torch.autograd.grad(unfused(x, weight, bias), (x, weight, bias), grad_out)
    low = [t.detach().to(dtype).requires_grad_(True) for t in (x, weight, bias)]
    got = torch.autograd.grad(upsample_conv2d(*low), low, grad_out.to(dtype))
    for g, e in zip(got, expected, strict=True):
        assert g.dtype == dtype
        torch.testing.assert_close(g.double(), e, rtol=tol, atol=tol * e.abs().max().item())


@pytest.mark.parametrize("route", ["taps", "folded"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_runs_in_the_autocast_dtype_like_conv2d(monkeypatch, route, dtype):
    monkeypatch.setattr(uc, "cpu_route", lambda x, weight: route)
    x, weight, bias = (t.detach().float().requires_grad_(True) for t in _inputs(2, 8, 4, 5, 6))
    # No activation: where the two roundings differ in sign its slope would flip.
    with torch.autocast("cpu", dtype=dtype):
        got = upsample_conv2d(x, weight, bias)
        expected = unfused(x, weight, bias)
    assert got.dtype == expected.dtype == dtype
    scale = expected.abs().max().item()
    torch.testing.assert_close(got, expected, rtol=3e-2, atol=3e-2 * scale)
    grad_out = torch.randn(got.shape).to(dtype)
    grads = torch.autograd.grad(got, (x, weight, bias), grad_out)
    expected_grads = torch.autograd.grad(expected, (x, weight, bias), grad_out)
    for g, e in zip(grads, expected_grads, strict=True):
        assert g.dtype == e.dtype == torch.float32  # the leaves' own dtype
        torch.testing.assert_close(g, e, rtol=5e-2, atol=5e-2 * e.abs().max().item())


@pytest.mark.parametrize("activation,slope", ACTIVATIONS)
@pytest.mark.parametrize("channels_last", [False, True])
def test_inference_without_graph_matches_unfused(activation, slope, channels_last):
    # Under no_grad (and for inputs that need no gradient) the CPU route skips autograd.
    x, weight, bias = (t.detach() for t in _inputs(2, 3, 4, 5, 3))
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    expected = unfused(x, weight, bias, activation, slope)
    for context in (torch.no_grad(), torch.inference_mode(), torch.enable_grad()):
        with context:
            got = upsample_conv2d(x, weight, bias, activation=activation, negative_slope=slope)
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
        assert got.is_contiguous(memory_format=torch.channels_last if channels_last
                                 else torch.contiguous_format)


@pytest.mark.parametrize("grad_layout", ["channels_last", "sliced", "expanded"])
def test_output_gradient_in_any_layout(grad_layout):
    # No activation: its backward would hand the convolution's backward a fresh contiguous
    # gradient, and the layouts below would never reach it.
    x, weight, bias = _inputs(2, 3, 4, 5, 3)
    out = upsample_conv2d(x, weight, bias)
    base = torch.randn(2, 4, 20, 6, dtype=torch.float64)
    grad_out = {"channels_last": base[:, :, ::2].contiguous(memory_format=torch.channels_last),
                "sliced": base[:, :, ::2],
                "expanded": base[:1, :, ::2].expand(2, -1, -1, -1)}[grad_layout]
    expected = torch.autograd.grad(unfused(x, weight, bias), (x, weight, bias),
                                   grad_out.contiguous())
    got = torch.autograd.grad(out, (x, weight, bias), grad_out)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("activation,slope", ACTIVATIONS)
def test_gradcheck_and_gradgradcheck(activation, slope):
    x, weight, bias = _inputs(2, 2, 3, 3, 4)

    def fn(x, weight, bias):
        return upsample_conv2d(x, weight, bias, activation=activation, negative_slope=slope)

    assert torch.autograd.gradcheck(fn, (x, weight, bias))
    assert torch.autograd.gradgradcheck(fn, (x, weight, bias))


# ---------------------------------------------------------------- layouts

def test_channels_last_input_and_output():
    x, weight, bias = _inputs(2, 3, 4, 5, 7)
    x_cl = x.detach().to(memory_format=torch.channels_last).requires_grad_(True)
    _check_against_unfused(x_cl, weight, bias)
    out = upsample_conv2d(x_cl, weight, bias)
    assert out.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("view", ["sliced", "transposed_hw", "expanded_batch"])
def test_non_contiguous_inputs(view):
    base = torch.randn(3, 6, 9, 8, dtype=torch.float64)
    x = {"sliced": base[::2, 1::2, 1:8, ::2],
         "transposed_hw": base.transpose(2, 3),
         "expanded_batch": base[:1].expand(2, -1, -1, -1)}[view]
    assert not x.is_contiguous()
    x = x.detach().requires_grad_(True)
    weight = torch.randn(5, x.shape[1], 3, 3, dtype=torch.float64).transpose(2, 3)
    weight = weight.requires_grad_(True)  # a non-contiguous weight too
    _check_against_unfused(x, weight, torch.randn(5, dtype=torch.float64, requires_grad=True))


# ---------------------------------------------------------------- the module

def test_module_loads_conv2d_state_dict_both_ways():
    conv = nn.Conv2d(3, 4, 3, padding=1).double()
    fused = UpsampleConv2d(3, 4).double()
    fused.load_state_dict(conv.state_dict())
    x = torch.randn(2, 3, 5, 3, dtype=torch.float64)
    reference = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), conv)
    torch.testing.assert_close(fused(x), reference(x), rtol=1e-12, atol=1e-12)
    back = nn.Conv2d(3, 4, 3, padding=1).double()
    back.load_state_dict(fused.state_dict())
    assert set(fused.state_dict()) == {"weight", "bias"}


def test_module_without_bias_and_with_activation():
    fused = UpsampleConv2d(3, 2, bias=False, activation="leaky_relu", negative_slope=0.2).double()
    assert fused.bias is None
    x = torch.randn(1, 3, 3, 3, dtype=torch.float64)
    torch.testing.assert_close(fused(x), unfused(x, fused.weight, None, "leaky_relu", 0.2))
    assert "leaky_relu" in repr(fused) and "scale_factor=2" in repr(fused)


def test_public_names():
    assert ganfast.nn.UpsampleConv2d is UpsampleConv2d
    assert ganfast.nn.functional.upsample_conv2d is upsample_conv2d


@pytest.mark.parametrize("backend_compiler", ["aot_eager", "inductor"])
def test_compiles_fullgraph(backend_compiler):
    fused = UpsampleConv2d(3, 4, activation="relu")
    compiled = torch.compile(fused, backend=backend_compiler, fullgraph=True)
    x = torch.randn(2, 3, 5, 7, requires_grad=True)
    got = compiled(x)
    expected = unfused(x, fused.weight, fused.bias, "relu")
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    got.sum().backward()


@pytest.mark.parametrize("backend_compiler", ["aot_eager", "inductor"])
def test_compiles_fullgraph_with_a_symbolic_slope(backend_compiler):
    # dynamic=True, or a slope that changes between calls of one compiled function, makes
    # negative_slope a symbolic float, which math.isfinite could not read ("torch.* op
    # returned non-Tensor"). A negative slope takes its own branch (guarded, not a failure).
    x = torch.randn(2, 3, 5, 7, requires_grad=True)
    layer = UpsampleConv2d(3, 4, activation="leaky_relu", negative_slope=0.2)
    got = torch.compile(layer, backend=backend_compiler, fullgraph=True, dynamic=True)(x)
    torch.testing.assert_close(got, unfused(x, layer.weight, layer.bias, "leaky_relu", 0.2),
                               rtol=1e-5, atol=1e-5)
    compiled = torch.compile(lambda x, slope: upsample_conv2d(
        x, layer.weight, layer.bias, activation="leaky_relu", negative_slope=slope),
        backend=backend_compiler, fullgraph=True)
    for slope in (0.2, 0.1, 0.3, -0.5):
        got = compiled(x, slope)
        expected = unfused(x, layer.weight, layer.bias, "leaky_relu", slope)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
        (grad,) = torch.autograd.grad(got.sum(), x)
        torch.testing.assert_close(grad, torch.autograd.grad(expected.sum(), x)[0],
                                   rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- the triton backend's op

def test_kernel_op_opcheck():
    # ganfast::upsample_conv_forward: CPU kernel = the reference, fake impl with the kernel's
    # output layout (channels_last in, channels_last out). No autograd kernel by design.
    op = torch.ops.ganfast.upsample_conv_forward.default
    x = torch.randn(2, 3, 5, 4)
    weight, bias = torch.randn(4, 3, 3, 3), torch.randn(4)
    for args in ((x, weight, bias, None, 0.01),
                 (x.to(memory_format=torch.channels_last), weight, None, "leaky_relu", 0.2),
                 (x[:, :, 1:, ::2], weight, bias, "relu", 0.01)):
        torch.library.opcheck(op, args)
    out = op(x.to(memory_format=torch.channels_last), weight, bias, None, 0.01)
    assert out.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("backend_compiler", ["aot_eager", "inductor"])
def test_triton_backend_compiles_through_the_registered_op(backend_compiler):
    # Under torch.compile the triton backend's Function calls the registered op (its CPU
    # kernel is the reference here), so the graph and its backward are checked without a GPU.
    def fn(x, weight, bias):
        return uc.upsample_conv2d_with("triton", x, weight, bias, "leaky_relu", 0.2)

    compiled = torch.compile(fn, backend=backend_compiler, fullgraph=True)
    x, weight, bias = _inputs(2, 3, 4, 5, 7, dtype=torch.float32)
    got = compiled(x, weight, bias)
    expected = unfused(x, weight, bias, "leaky_relu", 0.2)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    grad_out = torch.randn_like(expected)
    got_grads = torch.autograd.grad(got, (x, weight, bias), grad_out)
    expected_grads = torch.autograd.grad(expected, (x, weight, bias), grad_out)
    for g, e in zip(got_grads, expected_grads, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-4)


def test_global_cuda_choice_falls_back_to_torch():
    # No CUDA C++ kernel for this op: set_backend("cuda") runs torch; naming it is refused.
    ganfast.set_backend("cuda")
    x, weight, bias = _inputs(1, 2, 3, 3, 3)
    torch.testing.assert_close(upsample_conv2d(x, weight, bias), unfused(x, weight, bias))
    with pytest.raises(ganfast.BackendUnavailable, match="no cuda kernel"):
        upsample_conv2d(x, weight, bias, backend="cuda")


# ---------------------------------------------------------------- memory

def test_backward_saves_no_upsampled_tensor():
    # Every tensor autograd keeps for backward is at most the size of the block's output
    # ([B, Cout, 2H, 2W]); the unfused block keeps the 4x input [B, Cin, 2H, 2W] as well.
    for shape, activation in itertools.product(((2, 16, 4, 9, 8), (2, 16, 4, 4, 4)),
                                               (None, "relu")):
        x, weight, bias = _inputs(*shape, dtype=torch.float32)
        upsampled_numel = x.numel() * 4
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(
                lambda t, saved=saved: saved.append(t) or t, lambda t: t):
            out = upsample_conv2d(x, weight, bias, activation=activation)
        assert saved, "autograd saved nothing: the hook did not see the graph"
        assert all(t.numel() < upsampled_numel for t in saved), [t.shape for t in saved]
        # Activations are the batch-sized tensors (batch 2 here; weights lead with 4 or 16).
        activations = [t for t in saved if t.shape[0] == x.shape[0]]
        # the input, plus the output itself when the epilogue's backward needs it
        assert sum(t.numel() for t in activations) == x.numel() + (out.numel() if activation else 0)


def test_cpu_route_rule():
    def route(b, cin, cout, h):
        return SHIPPED_CPU_ROUTE(torch.empty(b, cin, h, h), torch.empty(cout, cin, 3, 3))

    assert route(1, 2, 3, 3) == "unfused"  # tiny: host time decides
    assert route(16, 512, 256, 4) == route(16, 256, 128, 8) == route(4, 256, 128, 64) == "taps"
    # maps of 8x8 and smaller: oneDNN's transposed conv is slow there
    assert route(16, 64, 64, 4) == route(16, 128, 64, 8) == "taps"
    assert route(16, 128, 64, 16) == route(16, 64, 64, 32) == "folded"
    # channels_last from 128 channels: the shifted additions run in memory order
    def route_cl(cin, h):
        x = torch.empty(16, cin, h, h).to(memory_format=torch.channels_last)
        return SHIPPED_CPU_ROUTE(x, torch.empty(64, cin, 3, 3))

    assert route_cl(128, 16) == route_cl(128, 32) == "taps"
    assert route_cl(64, 32) == route_cl(64, 16) == "folded"


@pytest.mark.parametrize("route", CPU_ROUTES)
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("activation,slope", ACTIVATIONS)
def test_every_cpu_route_matches_unfused(monkeypatch, route, channels_last, activation, slope):
    monkeypatch.setattr(uc, "cpu_route", lambda x, weight: route)
    x, weight, bias = _inputs(2, 3, 4, 5, 3)
    if channels_last:
        x = x.detach().to(memory_format=torch.channels_last).requires_grad_(True)
    _check_against_unfused(x, weight, bias, activation, slope)
    out = upsample_conv2d(x, weight, bias, activation=activation, negative_slope=slope)
    assert out.is_contiguous(memory_format=torch.channels_last if channels_last
                             else torch.contiguous_format)


@pytest.mark.parametrize("route", CPU_ROUTES)
@pytest.mark.parametrize("weight_layout", ["channels_last", "sliced"])
def test_every_cpu_route_takes_a_weight_in_any_layout(monkeypatch, route, weight_layout):
    # model.to(memory_format=torch.channels_last) makes a conv's weight channels_last; a weight
    # can also be a slice of a larger one. Values, gradients, and the module's own path.
    monkeypatch.setattr(uc, "cpu_route", lambda x, weight: route)
    x, _, bias = _inputs(2, 3, 4, 5, 3)
    x = x.detach().to(memory_format=torch.channels_last).requires_grad_(True)
    if weight_layout == "channels_last":
        weight = torch.randn(4, 3, 3, 3, dtype=torch.float64).to(memory_format=torch.channels_last)
    else:
        weight = torch.randn(4, 6, 3, 3, dtype=torch.float64)[:, ::2]
    assert not weight.is_contiguous()
    _check_against_unfused(x, weight.requires_grad_(True), bias, "relu")
    block = ganfast.nn.UpsampleConv2d(3, 4, activation="relu").double()
    block.to(memory_format=torch.channels_last)
    assert block.weight.is_contiguous(memory_format=torch.channels_last)
    _check_against_unfused(x, block.weight, block.bias, "relu")
    torch.testing.assert_close(block(x), unfused(x, block.weight, block.bias, "relu"))


@pytest.mark.parametrize("route", ["taps", "folded"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_fused_cpu_routes_partial_gradients_and_no_bias(monkeypatch, route, channels_last):
    # Each subset of (x, weight, bias) asked for alone and in pairs, and a block without bias:
    # the fused backward computes only what autograd asks for (the bias as the gradient's sum).
    monkeypatch.setattr(uc, "cpu_route", lambda x, weight: route)
    x, weight, bias = _inputs(2, 3, 4, 5, 3)
    if channels_last:
        x = x.detach().to(memory_format=torch.channels_last).requires_grad_(True)
    grad_out = torch.randn(2, 4, 10, 6, dtype=torch.float64)
    for with_bias in (True, False):
        leaves = (x, weight, bias) if with_bias else (x, weight)
        expected = torch.autograd.grad(unfused(*leaves[:2], leaves[2] if with_bias else None,
                                               "leaky_relu", 0.2), leaves, grad_out)
        for wanted in ((0,), (1,), (2,), (0, 2), (1, 2), (0, 1)):
            if not with_bias and 2 in wanted:
                continue
            inputs = [t if i in wanted else t.detach() for i, t in enumerate(leaves)]
            out = upsample_conv2d(*inputs[:2], inputs[2] if with_bias else None,
                                  activation="leaky_relu", negative_slope=0.2)
            got = torch.autograd.grad(out, [inputs[i] for i in wanted], grad_out)
            for i, g in zip(wanted, got, strict=True):
                torch.testing.assert_close(g, expected[i], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("route", ["taps", "folded"])
@pytest.mark.parametrize("dtype,tol", [(torch.bfloat16, 6e-2), (torch.float16, 1e-2)])
def test_fused_cpu_routes_lower_precision_gradients(monkeypatch, route, dtype, tol):
    monkeypatch.setattr(uc, "cpu_route", lambda x, weight: route)
    _check_lower_precision_gradients(dtype, tol, 2, 8, 4, 6, 5)


def _products_bytes_per_row(cout, w, dtype=torch.float64):
    return 9 * cout * w * torch.empty((), dtype=dtype).element_size()


@pytest.mark.parametrize("b,h,w,cout,budget_rows", [
    (5, 7, 5, 4, 14),  # whole samples of 7 rows, at most 2 per tile: 1, 2 and 2 samples
    (2, 7, 5, 4, 3),   # bands of one row (3 rows of budget less 2 halo rows)
    (3, 7, 5, 4, 5),   # uneven bands of 3 rows at most: 2, 2 and 3 rows
    (2, 7, 5, 4, 6),   # two bands of 3 and 4 rows
    (2, 1, 5, 4, 0),   # one-row maps: bands without halo rows
    (1, 2, 1, 4, 0),   # two one-row bands of a one-column map
    (3, 7, 1, 1, 5),   # one output channel: an NCHW output is also channels_last
])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("activation,slope", [(None, 0.01), ("leaky_relu", 0.2), ("relu", 0.01)])
def test_tiled_tap_products_match_unfused(monkeypatch, b, h, w, cout, budget_rows, channels_last,
                                          activation, slope):
    # The tap products run in tiles of samples or of row bands with halo rows (TILE_BYTES);
    # a small budget makes these shapes take every kind of tile and edge.
    _small_tiles(monkeypatch, budget_rows * _products_bytes_per_row(cout, w))
    from ganfast.ops import upsample_conv_taps as taps

    assert len(list(taps.tiles(b, h, _products_bytes_per_row(cout, w)))) > 1
    x, weight, bias = _inputs(b, 3, cout, h, w)
    if channels_last:
        x = x.detach().to(memory_format=torch.channels_last).requires_grad_(True)
    _check_against_unfused(x, weight, bias, activation, slope)


def _small_tiles(monkeypatch, budget):
    from ganfast.ops import upsample_conv_taps as taps

    monkeypatch.setattr(taps, "TILE_BYTES", budget)


def test_tiled_partial_gradients_and_inference(monkeypatch):
    _small_tiles(monkeypatch, 3 * _products_bytes_per_row(4, 5))  # bands of one row
    x, weight, bias = _inputs(2, 3, 4, 6, 5)
    grad_out = torch.randn(2, 4, 12, 10, dtype=torch.float64)
    expected = torch.autograd.grad(unfused(x, weight, bias, "relu"), (x, weight), grad_out)
    for wanted, frozen in (((x,), weight), ((weight,), x)):
        inputs = [t if t is not frozen else t.detach() for t in (x, weight, bias)]
        got = torch.autograd.grad(upsample_conv2d(*inputs, activation="relu"), wanted, grad_out)
        torch.testing.assert_close(got[0], expected[0 if wanted[0] is x else 1])
    with torch.no_grad():
        torch.testing.assert_close(upsample_conv2d(x, weight, bias, activation="relu"),
                                   unfused(x, weight, bias, "relu"))


def test_scratch_memory_is_reused_and_never_returned(monkeypatch):
    # The tiles' temporaries live in per-thread scratch kept between calls: a second call reuses
    # it (the same memory), shared by dtypes and sizes; no result aliases it, so an earlier
    # call's output and gradients survive later calls.
    from ganfast.ops import upsample_conv_taps as taps

    monkeypatch.setattr(taps, "SCRATCH_MIN_BYTES", 0)  # these temporaries are small

    x, weight, bias = _inputs(2, 3, 4, 5, 3)
    grad_out = torch.randn(2, 4, 10, 6, dtype=torch.float64)
    first = upsample_conv2d(x, weight, bias, activation="relu")
    first_grads = torch.autograd.grad(first, (x, weight, bias), grad_out)
    kept = {name: t.data_ptr() for name, t in taps._SCRATCH.buffers.items()}
    assert {"products", "rows", "image"} <= set(kept)
    kept_first = [t.clone() for t in (first, *first_grads)]
    for dtype, shape in ((torch.float64, (2, 3, 5, 3)), (torch.float32, (1, 3, 2, 2))):
        x2, weight2, bias2 = (t.detach().to(dtype).requires_grad_(True)
                              for t in _inputs(*shape[:2], 4, *shape[2:]))
        _check_against_unfused(x2, weight2, bias2, "relu", tol=1e-12 if dtype == torch.float64
                               else 1e-5)
    assert {name: t.data_ptr() for name, t in taps._SCRATCH.buffers.items()} == kept
    for got, expected in zip((first, *first_grads), kept_first, strict=True):
        assert torch.equal(got, expected)
        assert all(got.untyped_storage().data_ptr() != ptr for ptr in kept.values())


@pytest.mark.parametrize("limits", [(0, 64), (1 << 20, 1 << 30)])
def test_scratch_outside_its_limits_is_fresh_memory(monkeypatch, limits):
    # Over the upper limit: nothing large kept; under the lower one: malloc's free lists serve.
    from ganfast.ops import upsample_conv_taps as taps

    monkeypatch.setattr(taps, "_SCRATCH", taps._Scratch())
    monkeypatch.setattr(taps, "SCRATCH_MIN_BYTES", limits[0])
    monkeypatch.setattr(taps, "SCRATCH_MAX_BYTES", limits[1])
    _check_against_unfused(*_inputs(2, 3, 4, 5, 3), "leaky_relu", 0.2)
    assert taps._SCRATCH.buffers == {}  # every temporary was over 64 bytes and under 1 MB


@pytest.mark.parametrize("first_in_inference_mode", [True, False])
def test_scratch_made_in_or_out_of_inference_mode_serves_both(monkeypatch,
                                                             first_in_inference_mode):
    # In-place writes into an inference tensor raise outside inference mode: scratch is always
    # a normal tensor, whichever mode made it.
    from ganfast.ops import upsample_conv_taps as taps

    monkeypatch.setattr(taps, "_SCRATCH", taps._Scratch())
    monkeypatch.setattr(taps, "SCRATCH_MIN_BYTES", 0)
    x, weight, bias = (t.detach() for t in _inputs(2, 3, 4, 5, 3))
    expected = unfused(x, weight, bias)
    for inference in (first_in_inference_mode, not first_in_inference_mode):
        with torch.inference_mode(inference):
            torch.testing.assert_close(upsample_conv2d(x, weight, bias), expected)
        assert taps._SCRATCH.buffers and not any(
            t.is_inference() for t in taps._SCRATCH.buffers.values())


def test_fake_tracing_leaves_no_fake_tensor_in_scratch(monkeypatch):
    # make_fx's fake tracing reaches the tap products (it is not torch.compile): its buffers
    # are fresh, so the next eager call on this thread still gets real memory.
    from torch.fx.experimental.proxy_tensor import make_fx

    from ganfast.ops import upsample_conv_taps as taps

    monkeypatch.setattr(taps, "_SCRATCH", taps._Scratch())
    monkeypatch.setattr(taps, "SCRATCH_MIN_BYTES", 0)
    x, weight, bias = (t.detach() for t in _inputs(2, 3, 4, 5, 3, dtype=torch.float32))
    make_fx(lambda x, w: upsample_conv2d(x, w), tracing_mode="fake")(x, weight)
    assert all(type(t) is torch.Tensor for t in taps._SCRATCH.buffers.values())
    torch.testing.assert_close(upsample_conv2d(x, weight, bias), unfused(x, weight, bias))


def test_scratch_is_per_thread(monkeypatch):
    # Two threads running the tap products at once each get their own scratch.
    import threading

    from ganfast.ops import upsample_conv_taps as taps

    monkeypatch.setattr(taps, "SCRATCH_MIN_BYTES", 0)

    results, errors = {}, []

    def run(seed):
        try:
            torch.manual_seed(seed)
            x, weight, bias = (t.detach() for t in _inputs(3, 4, 5, 6, 5))
            for _ in range(20):
                torch.testing.assert_close(upsample_conv2d(x, weight, bias),
                                           unfused(x, weight, bias))
            results[seed] = True
        except Exception as error:  # reported below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=run, args=(seed,)) for seed in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and results == {0: True, 1: True}


@pytest.mark.parametrize("dtype,tol", [(torch.bfloat16, 6e-2), (torch.float16, 1e-2)])
def test_tiled_lower_precision_gradients_close_to_float64(monkeypatch, dtype, tol):
    # The weight's gradient is summed over the tiles (here 12 bands) in float32, rounded once.
    _small_tiles(monkeypatch, 3 * _products_bytes_per_row(4, 6, dtype))
    _check_lower_precision_gradients(dtype, tol, 2, 8, 4, 6, 6)


def _relative_error(got, expected):
    # In the 2-norm: the largest element's error is one rounding's luck, which varies 1.6x
    # between two results rounded once each; the norm sums over every element's.
    return ((got.double() - expected).norm() / expected.norm()).item()


def _rounded_taps_oracle(x, weight, bias, grad_out, dtype, activation=None):
    """In float64 from half-precision values, what the taps route is meant to compute: each
    tap's product rounded to `dtype` once (the GEMM's result), their sums exact, the activation
    on them, rounded once; backward (without the activation), each tap's gathered gradient
    rounded once, the GEMMs' results rounded once (untiled: under tiles each tile's partial of
    the weight's gradient is rounded too). Built from single-tap convolutions of the canonical
    block, not from the route's code."""
    def rounded(t):
        return t.to(dtype).double()

    x, weight, bias, grad_out = (t.double() for t in (x, weight, bias, grad_out))
    c_out = weight.shape[0]
    out = grad_x = grad_weight = 0
    for k in range(9):
        tap = torch.zeros(3, 3, dtype=torch.float64)
        tap.view(-1)[k] = 1
        out = out + rounded(unfused(x, weight * tap, bias if k == 4 else None))
        # The gradient reaching this tap's product P = w_k @ x: the adjoint of placing P
        # (nearest 2x upsampled) under tap k of the output
        products = torch.zeros(x.shape[0], c_out, *x.shape[2:], dtype=torch.float64,
                                requires_grad=True)
        placed = unfused(products, torch.eye(c_out, dtype=torch.float64)[:, :, None, None] * tap,
                         None)
        (grad_p,) = torch.autograd.grad(placed, products, grad_out)
        grad_p = rounded(grad_p)
        w_k = weight[:, :, k // 3, k % 3]
        grad_x = grad_x + torch.einsum("bohw,oc->bchw", grad_p, w_k)
        grad_weight = grad_weight + torch.einsum("bohw,bchw->oc", grad_p, x)[..., None, None] * tap
    if activation == "leaky_relu":
        out = torch.nn.functional.leaky_relu(out, 0.2)
    return rounded(out), rounded(grad_x), rounded(grad_weight)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("b,cin,cout,h,w", [
    (3, 64, 33, 8, 8),   # many channels
    (2, 256, 64, 4, 4),
    (2, 8, 4, 5, 6),
])
@pytest.mark.parametrize("channels_last", [False, True])
def test_half_precision_taps_round_each_product_once_and_sum_exactly(monkeypatch, dtype, b, cin,
                                                                      cout, h, w, channels_last):
    # The taps route in fp16/bf16 runs its GEMMs in the input's dtype (a CPU's half-precision
    # matrix units, as conv2d's) and sums their products in float32, rounding once into the
    # output and the gradients. Its results are the oracle's above but where the GEMMs' own
    # float32 accumulation order tips a rounding: at most 0.73% of the elements over 100 seeds
    # of these shapes, where products summed in the input's dtype at each step differed in
    # 42-61%. Against float64 that is at most 1.5x the error of the stock pair (interpolate +
    # conv2d) in the same dtype: forward 1.03-1.37x (products summed in the input's dtype:
    # 1.3-1.9x), gradients 0.9-1.3x.
    x, weight, bias = (t.detach() for t in _inputs(b, cin, cout, h, w))
    weight = weight / (3 * cin ** 0.5)  # outputs of order one
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    grad_out = torch.randn(b, cout, 2 * h, 2 * w, dtype=torch.float64)
    low = [t.to(dtype).requires_grad_(True) for t in (x, weight, bias)]

    def float64_results(inputs, grad):  # the output and the gradients of x and the weight
        inputs = [t.double().requires_grad_(True) for t in inputs]
        out = unfused(*inputs)
        return (out.detach(), *torch.autograd.grad(out, inputs[:2], grad.double()))

    got = upsample_conv2d(*low)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    assert got.dtype == dtype and got.is_contiguous(memory_format=layout)
    got = (got, *torch.autograd.grad(got, low[:2], grad_out.to(dtype)))
    stock = unfused(*low)
    stock = (stock, *torch.autograd.grad(stock, low[:2], grad_out.to(dtype)))
    oracle = _rounded_taps_oracle(*low, grad_out.to(dtype), dtype)
    float64 = float64_results((x, weight, bias), grad_out)  # of the inputs before rounding
    for result, wanted, float64_result, stock_result in zip(got, oracle, float64, stock,
                                                           strict=True):
        assert result.dtype == dtype
        assert (result.double() != wanted).double().mean() <= 0.02
        assert _relative_error(result, float64_result) <= 1.5 * _relative_error(stock_result,
                                                                                 float64_result)
    # The activation runs on the float32 sums, before their one rounding
    fused = upsample_conv2d(*low, activation="leaky_relu", negative_slope=0.2)
    wanted = _rounded_taps_oracle(*low, grad_out.to(dtype), dtype, "leaky_relu")[0]
    assert (fused.double() != wanted).double().mean() <= 0.02
    # Bands of rows: the output and the input's gradient rounded once all the same
    _small_tiles(monkeypatch, 3 * _products_bytes_per_row(cout, w, torch.float32))
    banded = upsample_conv2d(*low)
    banded = (banded, torch.autograd.grad(banded, low[0], grad_out.to(dtype))[0])
    for result, wanted in zip(banded, oracle[:2], strict=True):
        assert (result.double() != wanted).double().mean() <= 0.02


@given(batch=st.integers(0, 6), height=st.integers(1, 40), row_bytes=st.integers(1, 50),
       budget=st.integers(1, 400))
@settings(max_examples=200, deadline=None)
def test_tiles_cover_every_row_of_every_sample_once(batch, height, row_bytes, budget):
    from ganfast.ops import upsample_conv_taps as taps

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(taps, "TILE_BYTES", budget)
        covered = [(s, r) for b0, b1, r0, r1 in taps.tiles(batch, height, row_bytes)
                   for s in range(b0, b1) for r in range(r0, r1)]
        found = list(taps.tiles(batch, height, row_bytes))
    assert sorted(covered) == [(s, r) for s in range(batch) for r in range(height)]
    assert found  # at least one tile, an empty one for an empty batch
    # within the budget (a band with its 2 halo rows) unless one row and its halo exceed it,
    # and split evenly
    for b0, b1, r0, r1 in found:
        rows = (b1 - b0) * height if r1 - r0 == height else r1 - r0 + 2
        assert rows * row_bytes <= max(budget, 3 * row_bytes), (b0, b1, r0, r1)
        assert r1 > r0 and (b1 > b0 or batch == 0)  # an empty batch: one empty tile
    for extent in ({b1 - b0 for b0, b1, _, _ in found}, {r1 - r0 for _, _, r0, r1 in found}):
        assert max(extent, default=0) - min(extent, default=0) <= 1


@pytest.mark.parametrize("route", CPU_ROUTES)
def test_every_cpu_route_double_backward(monkeypatch, route):
    monkeypatch.setattr(uc, "cpu_route", lambda x, weight: route)
    x, weight, bias = _inputs(1, 2, 2, 3, 2)
    assert torch.autograd.gradgradcheck(
        lambda *a: upsample_conv2d(*a, activation="leaky_relu", negative_slope=0.2),
        (x, weight, bias))


# The work of one call with every gradient (docs/ops.md), counted so that it cannot grow
# unnoticed: the folded route is what the torch backend runs on CUDA (a matmul folding the
# weight, the transposed conv; backward: the bias's sum, the fold again, the conv's backward,
# a copy and a matmul mapping back to the 3x3 weight); the tap products' counts are one tile's.
FOLDED_FORWARD = ["aten::mm", "aten::convolution"]
FOLDED_BACKWARD = ["aten::sum", "aten::mm", "aten::convolution_backward", "aten::clone",
                   "aten::mm"]


@pytest.mark.parametrize("route,forward,backward", [
    ("folded", FOLDED_FORWARD, FOLDED_BACKWARD), ("taps", 17, 23), ("unfused", 2, 2)])
def test_work_per_call_is_counted(monkeypatch, route, forward, backward):
    monkeypatch.setattr(uc, "cpu_route", lambda x, weight: route)
    x, weight, bias = _inputs(1, 2, 3, 3, 3, dtype=torch.float32)
    grad_out = torch.randn(1, 3, 6, 6)
    torch.autograd.grad(upsample_conv2d(x, weight, bias), (x, weight, bias), grad_out)  # caches
    with RecordOps() as forward_ops:
        out = upsample_conv2d(x, weight, bias)
    with RecordOps() as backward_ops:
        torch.autograd.grad(out, (x, weight, bias), grad_out)
    counted = [forward_ops.compute_ops(), backward_ops.compute_ops()]
    if isinstance(forward, int):
        counted = [len(ops) for ops in counted]
    assert counted == [forward, backward]


@pytest.mark.parametrize("route", ["taps", "folded"])
@pytest.mark.parametrize("weight_format", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("x_format", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_weight_gradient_comes_in_the_weights_layout(monkeypatch, route, weight_format, x_format,
                                                     dtype):
    # AccumulateGrad keeps a gradient laid out like its parameter and copies any other: the
    # fused routes hand the weight's gradient over in the weight's layout (taps made a permuted
    # one, the folded route a contiguous one for channels_last weights).
    monkeypatch.setattr(uc, "cpu_route", lambda x, weight: route)
    x, weight, bias = _inputs(2, 5, 4, 3, 3, dtype=dtype)
    x = x.detach().contiguous(memory_format=x_format).requires_grad_(True)
    weight = weight.detach().contiguous(memory_format=weight_format).requires_grad_(True)
    out = upsample_conv2d(x, weight, bias)
    grad_out = torch.randn_like(out)
    (got,) = torch.autograd.grad(out, weight, grad_out)
    assert got.stride() == weight.stride() and got.dtype == dtype
    x64, weight64 = (t.detach().double().requires_grad_(True) for t in (x, weight))
    (expected,) = torch.autograd.grad(unfused(x64, weight64, bias.detach().double()), weight64,
                                      grad_out.double())
    tol = 1e-5 if dtype == torch.float32 else 5e-2
    torch.testing.assert_close(got.double(), expected, rtol=tol, atol=tol)


def test_fused_cpu_routes_save_only_their_inputs(monkeypatch):
    # The fused routes run in _UpsampleConv and save x and the weight (no folded weight, which
    # the folded route's backward rebuilds; the tap products keep their weight-sized tap weight
    # for the input's gradient); only the unfused pair keeps the 4x upsampled input.
    x, weight, bias = _inputs(2, 4, 3, 5, 3)
    for route in CPU_ROUTES:
        monkeypatch.setattr(uc, "cpu_route", lambda x, weight, route=route: route)
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(
                lambda t, saved=saved: saved.append(t) or t, lambda t: t):
            out = upsample_conv2d(x, weight, bias)
        shapes = {tuple(t.shape) for t in saved}
        if route == "unfused":
            assert (2, 4, 10, 6) in shapes
        else:
            assert "UpsampleConv" in type(out.grad_fn).__name__, route
            inputs = {tuple(x.shape), tuple(weight.shape), tuple(bias.shape)}
            assert shapes - inputs == ({(9 * 3, 4)} if route == "taps" else set()), route


@pytest.mark.parametrize("route,budget_rows", [  # taps: the shipped tiles; bands of one row
    ("taps", None), ("taps", 0), ("folded", None)])
def test_empty_batch(monkeypatch, route, budget_rows):
    monkeypatch.setattr(uc, "cpu_route", lambda x, weight: route)
    if budget_rows is not None:
        _small_tiles(monkeypatch, budget_rows)
    x, weight, bias = _inputs(0, 3, 4, 5, 3)
    out = upsample_conv2d(x, weight, bias)
    assert out.shape == (0, 4, 10, 6)
    grads = torch.autograd.grad(out.sum(), (x, weight, bias))
    assert grads[0].shape == x.shape and not grads[1].any() and not grads[2].any()


@pytest.mark.parametrize("route", CPU_ROUTES)
def test_torch_func_and_forward_ad_on_every_cpu_route(monkeypatch, route):
    # torch.func transforms and forward-mode AD take the reference (differentiable ATen ops).
    import torch.autograd.forward_ad as fwAD

    monkeypatch.setattr(uc, "cpu_route", lambda x, weight: route)
    x, weight, bias = (t.detach() for t in _inputs(2, 3, 4, 5, 3))

    def block(x, weight, bias):
        return upsample_conv2d(x, weight, bias, activation="leaky_relu", negative_slope=0.2)

    def canonical(x, weight, bias):
        return unfused(x, weight, bias, "leaky_relu", 0.2)

    def total(fn):
        return lambda x: fn(x, weight, bias).square().sum()

    torch.testing.assert_close(torch.func.grad(total(block))(x), torch.func.grad(total(canonical))(x))
    torch.testing.assert_close(torch.func.vmap(block, in_dims=(0, None, None))(x[:, None], weight, bias),
                               canonical(x, weight, bias)[:, None])
    tangent = torch.randn_like(x)
    with fwAD.dual_level():
        got = fwAD.unpack_dual(block(fwAD.make_dual(x, tangent), weight, bias)).tangent
        expected = fwAD.unpack_dual(canonical(fwAD.make_dual(x, tangent), weight, bias)).tangent
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("name", ["weight", "bias"])
def test_mixed_dtypes_are_refused_naming_the_argument(name):
    x, weight, bias = (t.detach() for t in _inputs(1, 3, 4, 5, 3))
    args = {"weight": weight, "bias": bias, name: {"weight": weight, "bias": bias}[name].float()}
    with pytest.raises(ValueError, match=f"{name} is torch.float32 but x is torch.float64"):
        upsample_conv2d(x, args["weight"], args["bias"])


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("kwargs,name", [({"kernel_size": 1}, "kernel_size"),
                                         ({"padding": 0}, "padding"),
                                         ({"scale_factor": 4}, "scale_factor"),
                                         ({"kernel_size": (3, 5)}, "kernel_size"),
                                         ({"activation": "gelu"}, "activation")])
def test_module_rejects_unsupported_configuration(kwargs, name):
    # Named as UpsampleConv2d's: upsample_conv2d() has no kernel_size, padding or scale_factor.
    with pytest.raises(ValueError, match=f"^UpsampleConv2d: {name}"):
        UpsampleConv2d(3, 4, **kwargs)


@pytest.mark.parametrize("kwargs,message", [
    ({"kernel_size": 3.0}, "kernel_size must be an int or a pair of them, got 3.0"),
    ({"kernel_size": True}, "kernel_size must be an int"),
    ({"padding": True}, "padding must be an int"),
    ({"padding": 1.0}, "padding must be an int"),
    ({"padding": "valid"}, "padding must be an int"),
    ({"kernel_size": (3, torch.tensor(3.0))}, "kernel_size must be an int"),
    ({"scale_factor": 2 + 0j}, "scale_factor must be a number"),
    ({"scale_factor": "2"}, "scale_factor must be a number"),
    ({"scale_factor": 10**400}, "scale_factor must be a number"),
    ({"padding": (1, 1, 1)}, r"padding=\(1, 1, 1\) is not supported"),
    ({"kernel_size": np.array([3, 5])}, r"kernel_size=\[.*\] is not supported")])
def test_module_rejects_configuration_that_only_compares_equal(kwargs, message):
    # A bool or complex passed for 1 or 2, an array's comparison raised numpy's "truth value ...
    # ambiguous", a huge int float()'s OverflowError naming nothing.
    with pytest.raises(ValueError, match=f"^UpsampleConv2d: {message}"):
        UpsampleConv2d(3, 4, **kwargs)


def test_module_takes_the_supported_configuration_however_given():
    conv = nn.Conv2d(3, 4, 3, padding=1).double()
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    expected = conv(nn.Upsample(scale_factor=2, mode="nearest")(x))
    # what nn.Conv2d (and nn.Upsample, for the scale) take: numpy and 0-dim tensor numbers, alone
    # or in pairs
    for kwargs in ({"kernel_size": np.int64(3), "padding": np.int64(1), "scale_factor": 2.0},
                   {"kernel_size": np.array([3, 3]), "padding": torch.tensor([1, 1]),
                    "scale_factor": (np.float64(2), 2)},
                   {"kernel_size": list(torch.tensor([3, 3])), "padding": (torch.tensor(1), 1),
                    "scale_factor": torch.tensor(2)},
                   {"kernel_size": (np.array(3), np.array(3)), "padding": [1, 1]}):
        fused = UpsampleConv2d(torch.tensor(3), np.int64(4), **kwargs).double()
        fused.load_state_dict(conv.state_dict())
        torch.testing.assert_close(fused(x), expected, rtol=1e-12, atol=1e-12)
        # the supported values themselves, as a layer given plain ints shows them
        assert repr(fused) == repr(UpsampleConv2d(3, 4))


def test_fx_symbolic_trace_keeps_the_fused_call():
    # The argument checks cannot run on FX's Proxies: the call is recorded as one node.
    model = nn.Sequential(UpsampleConv2d(3, 4, activation="leaky_relu", negative_slope=0.2),
                          nn.Tanh()).double()
    traced = torch.fx.symbolic_trace(model)
    assert sum("upsample_conv2d" in str(node.target) for node in traced.graph.nodes) == 1
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(traced(x), model(x), rtol=0, atol=0)


def test_same_padding_is_padding_one_as_in_conv2d():
    conv = nn.Conv2d(3, 4, 3, padding="same").double()
    fused = UpsampleConv2d(3, 4, padding="same").double()
    fused.load_state_dict(conv.state_dict())
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    reference = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), conv)
    torch.testing.assert_close(fused(x), reference(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("slope", ["0.2x", None, float("nan"), float("inf"), True])
def test_negative_slope_must_be_a_finite_number(slope):
    with pytest.raises(ValueError, match="UpsampleConv2d: negative_slope must be a finite real"):
        UpsampleConv2d(3, 4, activation="leaky_relu", negative_slope=slope)
    x, weight, bias = (t.detach() for t in _inputs(1, 3, 4, 5, 3))
    with pytest.raises(ValueError, match="upsample_conv2d: negative_slope must be a finite real"):
        upsample_conv2d(x, weight, bias, activation="leaky_relu", negative_slope=slope)


def test_negative_slope_may_be_a_0_dim_tensor_or_array():
    x, weight, bias = (t.detach() for t in _inputs(1, 3, 4, 5, 3))
    expected = unfused(x, weight, bias, "leaky_relu", 0.2)
    for slope in (torch.tensor(0.2, dtype=torch.float64), np.float64(0.2), np.array(0.2)):
        got = upsample_conv2d(x, weight, bias, activation="leaky_relu", negative_slope=slope)
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    for slope in (torch.tensor([0.2]), torch.tensor(True), np.array(1j)):
        with pytest.raises(ValueError, match="negative_slope must be a finite real"):
            upsample_conv2d(x, weight, bias, activation="leaky_relu", negative_slope=slope)


def test_supported_configuration_is_named_in_the_error():
    with pytest.raises(ValueError, match="kernel_size=3, padding=1, scale_factor=2"):
        UpsampleConv2d(3, 4, scale_factor=3)


@pytest.mark.parametrize("x_shape,w_shape,b_shape,match", [
    ((2, 3, 5), (4, 3, 3, 3), (4,), "x must be a 4-D"),
    ((2, 5, 5, 5), (4, 3, 3, 3), (4,), "in_channels=3"),
    ((2, 3, 5, 5), (4, 3, 5, 5), (4,), "weight must be"),
    ((2, 3, 5, 5), (4, 3, 3, 3), (3,), "bias must be"),
])
def test_functional_rejects_bad_shapes(x_shape, w_shape, b_shape, match):
    with pytest.raises(ValueError, match=match):
        upsample_conv2d(torch.randn(x_shape), torch.randn(w_shape), torch.randn(b_shape))


# One valid call, then each way of getting one argument wrong.
_FAULTS = {
    None: {},
    "x not a tensor": {"x": "not a tensor"},
    "x integer": {"x": torch.zeros(2, 3, 5, 5, dtype=torch.int64)},
    "weight numpy": {"weight": np.zeros((6, 3, 3, 3), np.float32)},
    "bias list": {"bias": [0.0] * 6},
    "x 3-D": {"x": (2, 3, 5)},
    "x 5-D": {"x": (2, 3, 5, 5, 1)},
    "x channels": {"x": (2, 4, 5, 5)},
    "weight 2-D": {"weight": (6, 3)},
    "weight kernel 5": {"weight": (6, 3, 5, 5)},
    "weight kernel 3x1": {"weight": (6, 3, 3, 1)},
    "weight in_channels": {"weight": (6, 2, 3, 3)},
    "bias size": {"bias": (5,)},
    "bias 2-D": {"bias": (6, 1)},
    "bias 0-D": {"bias": ()},
    "activation": {"activation": "gelu"},
    "activation case": {"activation": "RELU"},
}


@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("fault", list(_FAULTS))
def test_one_expression_check_agrees_with_the_named_checks(fault, with_bias):
    # check_inputs passes valid arguments with one expression and names the wrong argument
    # with checks one by one: both must accept exactly the valid call.
    args = {"x": (2, 3, 5, 5), "weight": (6, 3, 3, 3), "bias": (6,) if with_bias else None,
            "activation": "relu", **_FAULTS[fault]}
    x, weight, bias = (torch.empty(args[k]) if isinstance(args[k], tuple) else args[k]
                       for k in ("x", "weight", "bias"))
    try:
        uc.raise_for_inputs(x, weight, bias, args["activation"])
        named = True
    except (ValueError, TypeError):
        named = False
    assert named == (fault is None)
    assert uc.inputs_valid(x, weight, bias, args["activation"]) == named


@pytest.mark.parametrize("x,weight,match", [
    (torch.zeros(2, 3, 5, 5, dtype=torch.int64), torch.randn(4, 3, 3, 3),
     "x must have a floating-point dtype; got torch.int64"),
    (torch.randn(2, 3, 5, 5), np.zeros((4, 3, 3, 3), np.float32),
     "weight must be a torch.Tensor; got ndarray"),
], ids=["int64 x", "numpy weight"])
def test_functional_rejects_wrong_types_naming_the_argument(x, weight, match):
    with pytest.raises(TypeError, match=match):
        upsample_conv2d(x, weight)


def test_an_unknown_backend_is_refused_under_the_function_called():
    with pytest.raises(ValueError, match="^upsample_conv2d: backend must be one of"):
        upsample_conv2d(torch.randn(1, 2, 3, 3), torch.randn(3, 2, 3, 3), backend="nope")


def test_meta_tensors_give_the_shapes():
    # Model code is often built and shape-checked on the meta device.
    with torch.device("meta"):
        out = UpsampleConv2d(8, 4)(torch.empty(2, 8, 5, 3))
    assert out.device.type == "meta" and out.shape == (2, 4, 10, 6)


def test_module_rejects_wrong_channel_count():
    with pytest.raises(ValueError, match="channels"):
        UpsampleConv2d(3, 4)(torch.randn(1, 5, 4, 4))


@pytest.mark.parametrize("x,match", [
    (torch.randn(3, 5, 5), r"x must be a 4-D \[B, C, H, W\] tensor; got \(3, 5, 5\)"),
    (torch.randn(1, 2, 5, 5), "x has 2 channels but weight expects in_channels=3"),
    (torch.randn(1, 3, 5, 5, dtype=torch.float64), "weight is torch.float32 but x is torch.float64"),
    (torch.ones(1, 3, 5, 5, dtype=torch.int64), "x must have a floating-point dtype"),
])
def test_the_layers_refusals_name_the_layer(x, match):
    # They named upsample_conv2d, a function the user of the layer never called.
    with pytest.raises((TypeError, ValueError), match=f"^UpsampleConv2d: {match}"):
        UpsampleConv2d(3, 4)(x)


@pytest.mark.parametrize("route", ["taps", "folded"])
def test_an_output_changed_in_place_fails_a_fused_leaky_relus_backward(monkeypatch, route):
    # As the README says: the fused activation's backward reads the saved output (PyTorch's
    # leaky_relu saves its input, and takes `y += skip`); out of place matches the stock pair.
    monkeypatch.setattr(uc, "cpu_route", lambda x, weight: route)
    x, weight, bias = _inputs(2, 3, 4, 5, 3)
    skip = torch.randn(2, 4, 10, 6, dtype=torch.float64)
    y = upsample_conv2d(x, weight, bias, activation="leaky_relu", negative_slope=0.2)
    y += skip
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()
    got = upsample_conv2d(x, weight, bias, activation="leaky_relu", negative_slope=0.2) + skip
    expected = unfused(x, weight, bias, "leaky_relu", 0.2)
    expected += skip  # (the stock pair takes it)
    grads = torch.autograd.grad(got.square().sum(), (x, weight, bias))
    expected_grads = torch.autograd.grad(expected.square().sum(), (x, weight, bias))
    torch.testing.assert_close(got, expected)
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(grad, expected_grad)


def test_gpu_backend_by_name_is_refused_with_reason():
    with pytest.raises(ganfast.BackendUnavailable, match="upsample_conv"):
        upsample_conv2d(torch.randn(1, 3, 4, 4), torch.randn(2, 3, 3, 3), backend="triton")


# ---------------------------------------------------------------- benchmark cases

def test_bench_cases_run_and_compute_the_same_block(monkeypatch):
    from ganfast.bench import cases as bench_cases
    from ganfast.bench import upsample_conv as uc_bench

    monkeypatch.setitem(uc_bench.BLOCKS, "tiny", (2, 2, 8, 4, 8))
    monkeypatch.setattr(uc, "cpu_route", lambda x, weight: "taps")  # this tiny block's own: unfused
    cases = list(uc_bench.cases(["tiny"], [torch.float32], torch.device("cpu"),
                                ["nchw", "channels_last"], uc_bench.backends_for(torch.device("cpu")),
                                with_compile=False))
    fwd = {(c.key["layout"], c.backend): c.fn() for c in cases if c.mode == "fwd"}
    for layout in ("nchw", "channels_last"):
        # fp32: the folded sums round differently from the 9-tap sums
        torch.testing.assert_close(fwd[layout, "torch"], fwd[layout, "eager"],
                                   rtol=1e-4, atol=1e-4)
    rows = bench_cases.run("upsample_conv", cases, torch.device("cpu"))
    assert {(r["mode"], r["backend"]) for r in rows} == {
        (m, b) for m in ("fwd", "bwd", "fwd+bwd") for b in ("eager", "torch")}
    assert all(r["median_ms"] > 0 and r["speedup"] is not None for r in rows)
    # Activation memory of fwd+bwd: the unfused pair keeps the upsampled input [2, 8, 16, 16]
    # (16 KiB of fp32), ganfast's block nothing activation-sized beyond its inputs: the tap
    # weight, the size of the [4, 8, 3, 3] weight; no peak on CPU.
    saved = {(r["layout"], r["backend"]): r["saved_mb"] for r in rows if r["mode"] == "fwd+bwd"}
    for layout in ("nchw", "channels_last"):
        assert saved[layout, "eager"] == round(2 * 8 * 16 * 16 * 4 / 2**20, 3)
        assert saved[layout, "torch"] == round(4 * 8 * 9 * 4 / 2**20, 3)
    assert all(r.get("peak_mb") is None for r in rows)


def test_bench_rows_name_the_form_and_its_share_of_matrix_throughput(monkeypatch):
    # The fraction counts the multiply-adds the row's form performed (tap products 1/4 of the
    # unfused conv's, the folded conv 4/9), over the time, against the measured ceiling.
    from ganfast.bench import upsample_conv as uc_bench

    monkeypatch.setattr(uc, "cpu_route", SHIPPED_CPU_ROUTE)  # the forms the shipped rule picks
    cpu, cuda = torch.device("cpu"), torch.device("cuda")

    def row(backend, block, layout="nchw", mode="fwd", ms=2.0):
        _, batch, cin, cout, h = uc_bench.BLOCKS[block]
        return dict(backend=backend, block=block, layout=layout, mode=mode, median_ms=ms,
                    shape=[batch, cin, h, h], cout=cout, dtype="float32", gflop=4.0)

    assert uc_bench.form_of(row("eager", "sngan32-256-4"), cpu) == "unfused"
    assert uc_bench.form_of(row("torch", "sngan32-256-4"), cpu) == "taps"
    assert uc_bench.form_of(row("torch", "dcgan64-64-32"), cpu) == "folded"
    assert uc_bench.form_of(row("torch", "dcgan64-128-16", "channels_last"), cpu) == "taps"
    assert uc_bench.form_of(row("torch", "sngan32-256-4"), cuda) == "folded"
    assert uc_bench.form_of(row("triton", "sngan32-256-4"), cuda) == "folded"
    rows = [row("eager", "sngan32-256-4"), row("torch", "sngan32-256-4", mode="fwd+bwd", ms=3.0),
            row("torch", "dcgan64-64-32", mode="bwd", ms=4.0), dict(row("torch", "dcgan64-64-32"),
                                                                    median_ms=None)]
    asked = []
    uc_bench.add_throughput(rows, cpu, lambda dtype: asked.append(dtype) or 0.5)
    assert [r.get("tflops") for r in rows] == [2.0, 4.0, 2.0, None]  # 1, 3 and 2 passes of 4 GFLOP
    assert [r.get("frac_of_matrix") for r in rows] == [4.0, 2.0, round(2.0 * 4 / 9 / 0.5, 3), None]
    assert set(asked) == {"float32"} and rows[0]["matrix_tflops"] == 0.5


def test_matrix_throughput_is_measured_in_the_dtype():
    from ganfast.bench.timing import matrix_tflops

    tflops = matrix_tflops(torch.device("cpu"), torch.float32)
    assert 1e-4 < tflops < 100  # a CPU's float32 matrix throughput, in TFLOP/s


@pytest.mark.parametrize("args, error, match", [
    (("3", 4), TypeError, "in_channels must be an int >= 0 .* got '3'"),
    ((3.5, 4), TypeError, "in_channels must be an int >= 0 .* got 3.5"),
    ((True, 4), TypeError, "in_channels must be an int >= 0 .* got True"),
    ((-1, 4), ValueError, "in_channels must be an int >= 0 .* got -1"),
    ((3, None), TypeError, "out_channels must be an int >= 0 .* got None"),
    ((3, -2), ValueError, "out_channels must be an int >= 0 .* got -2"),
])
def test_module_names_bad_channel_counts(args, error, match):
    # nn.Conv2d's own errors named neither the layer nor the argument ("not all arguments
    # converted during string formatting", "in_channels must be divisible by groups", a negative
    # dimension from torch.empty), and took True for 1 channel.
    with pytest.raises(error, match=f"^UpsampleConv2d: {match}"):
        UpsampleConv2d(*args)


def test_module_takes_numpy_channel_counts_as_conv2d_does():
    conv = nn.Conv2d(np.int64(3), np.int32(4), 3, padding=1).double()
    fused = UpsampleConv2d(np.int64(3), np.int32(4)).double()
    fused.load_state_dict(conv.state_dict())
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    expected = conv(nn.Upsample(scale_factor=2, mode="nearest")(x))
    torch.testing.assert_close(fused(x), expected, rtol=1e-12, atol=1e-12)
