"""frechet_distance against pytorch-fid's calculate_frechet_distance and a float64 scipy oracle."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ganfast.metrics import frechet_distance

scipy_linalg = pytest.importorskip("scipy.linalg")


def random_stats(rng, d, n):
    """mean and unbiased covariance of n random correlated features (singular when n <= d)."""
    mix = rng.standard_normal((d, d)) / np.sqrt(d)
    feats = rng.standard_normal((n, d)) @ mix + rng.standard_normal(d)
    return feats.mean(0), np.cov(feats, rowvar=False)


def _rank_cut(w):
    """Eigenvalues of a PSD matrix with its rounding noise (below d * eps * the largest) set to
    0: the square root would turn 1e-16 noise into 1e-8 each."""
    return np.where(w > len(w) * np.finfo(w.dtype).eps * max(w.max(), 0), w, 0)


def scipy_oracle(mu1, s1, mu2, s2):
    """tr sqrt(S1 S2) via the symmetric form sqrt(S1) S2 sqrt(S1) in scipy float64, the root of
    S1 from scipy's eigh (exact for a symmetric PSD matrix: sqrtm's Schur route lost 1e-3
    relative on rank-1 covariances, against their closed form |a.b|), the null spaces' rounding
    noise cut before each square root (left in, it moved a rank-1 case by 1.4e-8 relative)."""
    w, v = scipy_linalg.eigh(s1)
    root = (v * np.sqrt(_rank_cut(w))) @ v.T
    inner = root @ s2 @ root
    eig = _rank_cut(np.linalg.eigvalsh((inner + inner.T) / 2))
    diff = mu1 - mu2
    return diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(eig).sum()


@pytest.mark.parametrize("d", [2, 7, 64, 203])
def test_matches_pytorch_fid_full_rank(d):
    fid_score = pytest.importorskip("pytorch_fid.fid_score")
    rng = np.random.default_rng(d)
    mu1, s1 = random_stats(rng, d, 4 * d + 10)
    mu2, s2 = random_stats(rng, d, 4 * d + 10)
    expected = fid_score.calculate_frechet_distance(mu1, s1, mu2, s2)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("d,n1,n2", [(50, 10, 30), (128, 64, 64), (33, 2, 100)])
def test_singular_covariances(d, n1, n2):
    rng = np.random.default_rng(n1 + n2)
    mu1, s1 = random_stats(rng, d, n1)
    mu2, s2 = random_stats(rng, d, n2)
    got = frechet_distance(mu1, s1, mu2, s2)
    assert np.isfinite(got)
    assert got == pytest.approx(scipy_oracle(mu1, s1, mu2, s2), rel=1e-6)
    # the distance is symmetric although the two factorizations differ
    assert frechet_distance(mu2, s2, mu1, s1) == pytest.approx(got, rel=1e-6)


@settings(max_examples=40, deadline=None)
@given(d=st.integers(1, 24), n1=st.integers(2, 50), n2=st.integers(2, 50), seed=st.integers(0, 2**16))
def test_drawn_sizes_match_the_scipy_oracle(d, n1, n2, seed):
    # Full-rank and singular covariances (n <= d) of any size: finite, symmetric in its
    # arguments, equal to the float64 scipy oracle relative to the distance's terms.
    rng = np.random.default_rng(seed)
    mu1, s1 = random_stats(rng, d, n1)
    mu2, s2 = random_stats(rng, d, n2)
    s1, s2 = np.atleast_2d(s1), np.atleast_2d(s2)
    got = frechet_distance(mu1, s1, mu2, s2)
    scale = np.trace(s1) + np.trace(s2) + np.sum((mu1 - mu2) ** 2)
    assert np.isfinite(got) and got >= -1e-9 * scale
    assert got == pytest.approx(scipy_oracle(mu1, s1, mu2, s2), abs=1e-8 * scale)
    assert frechet_distance(mu2, s2, mu1, s1) == pytest.approx(got, abs=1e-8 * scale)


@pytest.mark.parametrize("d", [1, 2, 5, 64])
def test_rank_one_covariances_have_a_closed_form(d):
    # S1 = a a^T, S2 = b b^T: S1 S2 has one non-zero eigenvalue (a.b)^2, so tr sqrt = |a.b|.
    rng = np.random.default_rng(d)
    a, b, mu1, mu2 = rng.standard_normal((4, d))
    expected = np.sum((mu1 - mu2) ** 2) + a @ a + b @ b - 2 * abs(a @ b)
    got = frechet_distance(mu1, np.outer(a, a), mu2, np.outer(b, b))
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("n", [5, 500])
def test_identical_inputs_give_zero(n):
    rng = np.random.default_rng(n)
    mu, s = random_stats(rng, 100, n)
    assert abs(frechet_distance(mu, s, mu, s)) < 1e-8 * np.trace(s)


def test_torch_inputs_any_float_dtype_and_known_value():
    # diagonal covariances: tr sqrt(S1 S2) = sum sqrt(a_i b_i)
    a = torch.tensor([1.0, 4.0, 9.0])
    b = torch.tensor([4.0, 1.0, 0.0])
    mu1 = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float32)
    mu2 = torch.zeros(3, dtype=torch.float16)
    expected = 5.0 + a.sum() + b.sum() - 2 * (a * b).sqrt().sum()
    got = frechet_distance(mu1, torch.diag(a), mu2, torch.diag(b).double())
    assert got == pytest.approx(float(expected), rel=1e-12)


def test_bad_arguments_name_the_argument():
    mu, s = np.zeros(4), np.eye(4)
    with pytest.raises(ValueError, match="sigma2"):
        frechet_distance(mu, s, mu, np.eye(5))
    with pytest.raises(ValueError, match="mu1"):
        frechet_distance(np.zeros((4, 1)), s, mu, s)
    with pytest.raises(TypeError, match="sigma1"):
        frechet_distance(mu, [[1.0]], mu, s)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_matches_cpu():
    rng = np.random.default_rng(0)
    mu1, s1 = random_stats(rng, 512, 300)
    mu2, s2 = random_stats(rng, 512, 2000)
    on_gpu = [torch.from_numpy(x).cuda() for x in (mu1, s1, mu2, s2)]
    assert frechet_distance(*on_gpu) == pytest.approx(frechet_distance(mu1, s1, mu2, s2), rel=1e-9)
