"""The Triton gradient-penalty kernels on CPU tensors under TRITON_INTERPRET=1 (small shapes:
the interpreter runs each program instance in Python), through their launchers (the layout
handling the ops use on GPU) and the public functions' eager path, against the PyTorch
reference."""

import pytest
import torch
from ganfast.kernels import gradient_penalty as kernels
from hypothesis import given, settings
from hypothesis import strategies as st

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
    got = kernels.interpolate(real, fake, alpha)
    expected = gp.interpolate_reference(real.double(), fake.double(), alpha.double())
    torch.testing.assert_close(got.double(), expected, rtol=tol, atol=tol)
    assert got.dtype == dtype


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype,tol", DTYPE_TOL)
def test_per_sample_norm_kernel(shape, dtype, tol):
    x = torch.randn(shape, dtype=dtype)
    got = kernels.norm_penalty(x, 0.0, 0.0)[0]
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), x.double().reshape(shape[0], -1).norm(dim=1), rtol=1e-5, atol=0)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype,tol", DTYPE_TOL)
def test_per_sample_norm_backward_kernel(shape, dtype, tol):
    x = torch.randn(shape, dtype=dtype)
    grad_norm = torch.randn(shape[0])
    norm = x.float().reshape(shape[0], -1).norm(dim=1)
    norm[0] = 0.0  # a zero norm must give a zero gradient, not 0/0
    got = kernels.norm_backward(grad_norm, x, norm, 0.0, 1.0)
    expected = gp.norm_backward_reference(grad_norm.double(), x.double(), norm.double(), 0.0, 1.0)
    assert got.dtype == dtype and torch.isfinite(got).all()
    torch.testing.assert_close(got.double(), expected, rtol=tol, atol=tol)


def test_channels_last_runs_without_copy_and_keeps_layout():
    real = torch.randn(3, 5, 4, 6).to(memory_format=torch.channels_last)
    fake = torch.randn(3, 5, 4, 6).to(memory_format=torch.channels_last)
    alpha = torch.rand(3)
    got = kernels.interpolate(real, fake, alpha)
    assert got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, gp.interpolate_reference(real, fake, alpha))
    grad_norm = torch.randn(3)
    norm = kernels.norm_penalty(real, 0.0, 0.0)[0]
    torch.testing.assert_close(norm, real.flatten(1).norm(dim=1))
    back = kernels.norm_backward(grad_norm, real, norm, 0.0, 1.0)
    assert back.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(back, gp.norm_backward_reference(grad_norm, real, norm, 0.0, 1.0))


def test_non_dense_input_is_handled():
    base = torch.randn(4, 3, 10)
    x = base[:, :, ::3]  # strided view: copied to rows, result in empty_like's layout
    norm = kernels.norm_penalty(x, 0.0, 0.0)[0]
    torch.testing.assert_close(norm, x.flatten(1).norm(dim=1))
    back = kernels.norm_backward(torch.ones(4), x, norm, 0.0, 1.0)
    torch.testing.assert_close(back, x / norm.view(-1, 1, 1))


class GridRecorder:
    """Stands for a kernel: records each launch's grid, then launches the kernel."""

    def __init__(self, kernel):
        self.kernel, self.grids = kernel, []

    def __getitem__(self, grid):
        self.grids.append(grid)
        return self.kernel[grid]


def test_batches_past_the_grid_limit_are_split(monkeypatch):
    # The launchers split batches over MAX_GRID_Y (65535) samples; a small limit exercises
    # the same path in the interpreter (the sums of squares too, with the one-launch path off).
    # The interpreter has no grid limit: the recorded grids show each launch within it.
    monkeypatch.setattr(kernels, "MAX_GRID_Y", 2)
    monkeypatch.setattr(kernels, "SMALL_INPUT", 0)
    recorders = {}
    for name in ("_interpolate_kernel", "_sum_squares_kernel", "_norm_backward_kernel"):
        recorders[name] = GridRecorder(getattr(kernels, name))
        monkeypatch.setattr(kernels, name, recorders[name])
    x, y = torch.randn(5, 37), torch.randn(5, 37)
    alpha, gn = torch.rand(5), torch.randn(5)
    torch.testing.assert_close(kernels.interpolate(x, y, alpha),
                               gp.interpolate_reference(x, y, alpha))
    norm, penalty = kernels.norm_penalty(x, 10.0, 1.0)
    torch.testing.assert_close(norm, x.norm(dim=1))
    torch.testing.assert_close(penalty, 10.0 * ((x.norm(dim=1) - 1.0) ** 2).mean())
    torch.testing.assert_close(kernels.norm_backward(gn, x, norm, 0.0, 1.0),
                               gp.norm_backward_reference(gn, x, norm, 0.0, 1.0))
    broadcast = gn[:1].expand(5)  # the penalty's gradient: one value, stride 0
    torch.testing.assert_close(kernels.norm_backward(broadcast, x, norm, 0.5, -1.0),
                               gp.norm_backward_reference(broadcast, x, norm, 0.5, -1.0))
    samples = {name: [grid[1] for grid in r.grids] for name, r in recorders.items()}
    assert samples == {"_interpolate_kernel": [2, 2, 1], "_sum_squares_kernel": [2, 2, 1],
                       "_norm_backward_kernel": [2, 2, 1, 2, 2, 1]}


@pytest.mark.parametrize("batch,chunks", [(0, []), (3, [3]), (4, [3, 1]), (7, [3, 3, 1])])
def test_launch_chunks(monkeypatch, batch, chunks):
    monkeypatch.setattr(kernels, "MAX_GRID_Y", 3)
    x, per_sample = torch.randn(batch, 2), torch.randn(batch)
    got = kernels._launch_chunks(x, per_sample)
    assert [samples for samples, _ in got] == chunks
    if len(chunks) == 1:  # a batch that fits: the tensors themselves, no views
        assert got[0][1][0] is x and got[0][1][1] is per_sample
    start = 0
    for samples, (rows, values) in got:
        assert rows.data_ptr() == x[start:].data_ptr() and rows.shape[0] == samples
        assert values.data_ptr() == per_sample[start:].data_ptr() and len(values) == samples
        start += samples
    assert start == batch


def test_contiguous_with_odd_size_one_strides_keeps_empty_like_layout():
    # Contiguous, but the size-1 dim carries stride 1: outputs must match empty_like (what the
    # fake impls promise torch.compile), not just be contiguous.
    x = torch.randn(4, 3, 5, 1).permute(0, 3, 1, 2)
    assert x.is_contiguous() and x.stride() == (15, 1, 5, 1)
    norm = kernels.norm_penalty(x, 0.0, 0.0)[0]
    back = kernels.norm_backward(torch.ones(4), x, norm, 0.0, 1.0)
    assert back.stride() == torch.empty_like(x).stride()
    torch.testing.assert_close(back, x / norm.view(-1, 1, 1, 1))
    y = kernels.interpolate(x, -x, torch.rand(4))
    assert y.stride() == torch.empty_like(x).stride()


@pytest.fixture(autouse=True, params=["one program", "partial sums"])
def small_input_limit(request, monkeypatch):
    # Small inputs take one program, larger ones partial sums first: test both on the same
    # (interpreter-sized) shapes.
    if request.param == "partial sums":
        monkeypatch.setattr(kernels, "SMALL_INPUT", 0)


@pytest.mark.parametrize("shape", [(3, 7), (5, 2, 3, 3), (2, 8193), (70, 5), (2, 0)])
@pytest.mark.parametrize("weight,center", [(10.0, 1.0), (1.5, 0.0), (0.1, 0.7)])
def test_norm_penalty_folds_the_tail(shape, weight, center):
    # Norms and the penalty come out of the kernels; the last program walks [B, columns] in
    # tiles (70 samples > FINAL_BLOCK_B, 8193 elements > one chunk and > FINAL_BLOCK_C).
    x = torch.randn(shape)
    norms, penalty = kernels.norm_penalty(x, weight, center)
    expected = x.double().reshape(shape[0], -1).norm(dim=1)
    torch.testing.assert_close(norms.double(), expected, rtol=1e-6, atol=0)
    torch.testing.assert_close(penalty.double(), weight * ((expected - center) ** 2).mean(),
                               rtol=1e-6, atol=0)
    assert penalty.shape == () and penalty.dtype == torch.float32


def test_penalty_backward_with_a_broadcast_scalar_gradient():
    x = torch.randn(4, 3, 5)
    x[1] = 0.0  # a zero gradient: offset / n must not make it 0 * inf = NaN
    norm = x.reshape(4, -1).norm(dim=1)
    grad = torch.tensor(0.75).expand(4)  # the penalty's scalar gradient, stride 0
    got = kernels.norm_backward(grad, x, norm, 2 * 10 / 4, -2 * 10 * 1.0 / 4)
    expected = gp.norm_backward_reference(grad.double(), x.double(), norm.double(), 5.0, -5.0)
    torch.testing.assert_close(got.double(), expected, rtol=1e-6, atol=1e-6)
    assert torch.equal(got[1], torch.zeros_like(got[1]))


def test_eager_penalty_through_the_launchers_matches_canonical():
    # The public path with backend "triton" outside compile calls the launchers directly.
    g = torch.randn(6, 3, 7, 5, requires_grad=True)
    got = gp.norm_penalty_with("triton", g, 10.0, 1.0)
    (grad_got,) = torch.autograd.grad(got, g)
    expected = 10 * ((g.flatten(1).norm(dim=1) - 1) ** 2).mean()
    (grad_expected,) = torch.autograd.grad(expected, g)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(grad_got, grad_expected)
    real, fake, alpha = torch.randn(6, 4), torch.randn(6, 4), torch.rand(6)
    torch.testing.assert_close(gp.interpolate_with("triton", real, fake, alpha),
                               gp.interpolate_reference(real, fake, alpha))


def test_launchers_refuse_mismatched_inputs():
    # The kernels index alpha[b], grad[b], norm[b] and fake at real's offsets: a mismatch
    # would be read out of bounds on a GPU, so the launchers refuse it, naming the argument.
    x = torch.randn(4, 6)
    with pytest.raises(ValueError, match=r"alpha must have shape \[4\]"):
        kernels.interpolate(x, x.clone(), torch.rand(3))
    with pytest.raises(ValueError, match="real and fake must match"):
        kernels.interpolate(x, torch.randn(3, 6), torch.rand(4))
    with pytest.raises(ValueError, match=r"norm must have shape \[4\]"):
        kernels.norm_backward(torch.ones(4), x, torch.ones(2), 0.0, 1.0)


HYPOTHESIS_TOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


@settings(max_examples=15, deadline=None)
@given(batch=st.integers(1, 5), features=st.lists(st.integers(1, 11), min_size=1, max_size=3),
       dtype=st.sampled_from(list(HYPOTHESIS_TOL)),
       layout=st.sampled_from(["contiguous", "channels_last", "strided"]),
       weight=st.floats(0.1, 10.0), center=st.floats(0.0, 1.0), seed=st.integers(0, 2**16))
def test_kernels_on_drawn_shapes_layouts_and_dtypes(batch, features, dtype, layout, weight,
                                                     center, seed):
    # Interpolation, norms + penalty and the backward against float64 on one drawn input:
    # odd row lengths, channels_last (4-D) or a strided view, every dtype the kernels take.
    gen = torch.Generator().manual_seed(seed)
    shape = [batch, *features]

    def drawn():
        t = torch.randn(shape[:-1] + [2 * shape[-1]], generator=gen).to(dtype)
        if layout == "strided":
            return t[..., ::2]
        t = t[..., :shape[-1]].contiguous()
        return t.to(memory_format=torch.channels_last) if layout == "channels_last" and t.dim() == 4 else t

    real, fake, alpha = drawn(), drawn(), torch.rand(batch, generator=gen)
    tol = HYPOTHESIS_TOL[dtype]
    expected = gp.interpolate_reference(real.double(), fake.double(), alpha.double())
    got = kernels.interpolate(real, fake, alpha)
    assert got.dtype == dtype and got.shape == real.shape
    torch.testing.assert_close(got.double(), expected, rtol=tol, atol=tol)

    norms, penalty = kernels.norm_penalty(real, weight, center)
    expected_norms = real.double().reshape(batch, -1).norm(dim=1)
    torch.testing.assert_close(norms.double(), expected_norms, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(penalty.double(), weight * ((expected_norms - center) ** 2).mean(),
                               rtol=1e-5, atol=1e-6)

    grad = torch.randn(batch, generator=gen)
    slope, offset = 2 * weight / batch, -2 * weight * center / batch  # the penalty's backward
    back = kernels.norm_backward(grad, real, norms, slope, offset)
    expected_back = gp.norm_backward_reference(grad.double(), real.double(), norms.double(),
                                               slope, offset)
    assert back.dtype == dtype and back.shape == real.shape
    torch.testing.assert_close(back.double(), expected_back, rtol=tol, atol=tol * (1 + weight))
