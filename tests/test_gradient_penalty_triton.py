"""The Triton gradient-penalty kernels on CPU tensors under TRITON_INTERPRET=1 (small shapes:
the interpreter runs each program instance in Python), through the same layout handling the
ops use on GPU, against the PyTorch reference."""

import pytest
import torch

from ganfast.ops import gradient_penalty as gp

pytestmark = pytest.mark.interpreter

# Row lengths around the kernels' block (1024) and sum chunk (8 * 1024): tails, exact fits,
# a row spanning two sum chunks.
SHAPES = [(4,), (1, 5), (3, 1023), (2, 1024), (5, 7, 3, 3), (2, 8193)]
DTYPE_TOL = [(torch.float32, 1e-6), (torch.float16, 1e-3)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype,tol", DTYPE_TOL)
def test_interpolate_kernel(shape, dtype, tol):
    real, fake = torch.randn(shape, dtype=dtype), torch.randn(shape, dtype=dtype)
    alpha = torch.rand(shape[0])
    got = gp._interpolate_cuda(real, fake, alpha, "triton")
    expected = gp.interpolate_reference(real.double(), fake.double(), alpha.double())
    torch.testing.assert_close(got.double(), expected, rtol=tol, atol=tol)
    assert got.dtype == dtype


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype,tol", DTYPE_TOL)
def test_per_sample_norm_kernel(shape, dtype, tol):
    x = torch.randn(shape, dtype=dtype)
    got = gp._per_sample_norm_cuda(x, "triton")
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), x.double().reshape(shape[0], -1).norm(dim=1), rtol=1e-5, atol=0)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype,tol", DTYPE_TOL)
def test_per_sample_norm_backward_kernel(shape, dtype, tol):
    x = torch.randn(shape, dtype=dtype)
    grad_norm = torch.randn(shape[0])
    norm = x.float().reshape(shape[0], -1).norm(dim=1)
    norm[0] = 0.0  # a zero norm must give a zero gradient, not 0/0
    got = gp._per_sample_norm_backward_cuda(grad_norm, x, norm, "triton")
    expected = gp.per_sample_norm_backward_reference(grad_norm.double(), x.double(), norm.double())
    assert got.dtype == dtype and torch.isfinite(got).all()
    torch.testing.assert_close(got.double(), expected, rtol=tol, atol=tol)


def test_channels_last_runs_without_copy_and_keeps_layout():
    real = torch.randn(3, 5, 4, 6).to(memory_format=torch.channels_last)
    fake = torch.randn(3, 5, 4, 6).to(memory_format=torch.channels_last)
    alpha = torch.rand(3)
    got = gp._interpolate_cuda(real, fake, alpha, "triton")
    assert got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, gp.interpolate_reference(real, fake, alpha))
    grad_norm = torch.randn(3)
    norm = gp._per_sample_norm_cuda(real, "triton")
    torch.testing.assert_close(norm, real.flatten(1).norm(dim=1))
    back = gp._per_sample_norm_backward_cuda(grad_norm, real, norm, "triton")
    assert back.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(back, gp.per_sample_norm_backward_reference(grad_norm, real, norm))


def test_non_dense_input_is_handled():
    base = torch.randn(4, 3, 10)
    x = base[:, :, ::3]  # strided view: copied to rows, result in empty_like's layout
    norm = gp._per_sample_norm_cuda(x, "triton")
    torch.testing.assert_close(norm, x.flatten(1).norm(dim=1))
    back = gp._per_sample_norm_backward_cuda(torch.ones(4), x, norm, "triton")
    torch.testing.assert_close(back, x / norm.view(-1, 1, 1))


def test_batches_past_the_grid_limit_are_split(monkeypatch):
    # The launchers split batches over MAX_GRID_Y (65535) samples; a small limit exercises
    # the same path in the interpreter.
    from ganfast.kernels import gradient_penalty as kernels

    monkeypatch.setattr(kernels, "MAX_GRID_Y", 2)
    x, y = torch.randn(5, 37), torch.randn(5, 37)
    alpha, gn = torch.rand(5), torch.randn(5)
    torch.testing.assert_close(gp._interpolate_cuda(x, y, alpha, "triton"),
                               gp.interpolate_reference(x, y, alpha))
    norm = gp._per_sample_norm_cuda(x, "triton")
    torch.testing.assert_close(norm, x.norm(dim=1))
    torch.testing.assert_close(gp._per_sample_norm_backward_cuda(gn, x, norm, "triton"),
                               gp.per_sample_norm_backward_reference(gn, x, norm))


def test_contiguous_with_odd_size_one_strides_keeps_empty_like_layout():
    # Contiguous, but the size-1 dim carries stride 1: outputs must match empty_like (what the
    # fake impls promise torch.compile), not just be contiguous.
    x = torch.randn(4, 3, 5, 1).permute(0, 3, 1, 2)
    assert x.is_contiguous() and x.stride() == (15, 1, 5, 1)
    norm = gp._per_sample_norm_cuda(x, "triton")
    back = gp._per_sample_norm_backward_cuda(torch.ones(4), x, norm, "triton")
    assert back.stride() == torch.empty_like(x).stride()
    torch.testing.assert_close(back, x / norm.view(-1, 1, 1, 1))
    y = gp._interpolate_cuda(x, -x, torch.rand(4), "triton")
    assert y.stride() == torch.empty_like(x).stride()
