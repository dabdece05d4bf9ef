"""frechet_distance against pytorch-fid's calculate_frechet_distance and a float64 scipy oracle."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ganfast.metrics import FrechetReference, frechet_distance
from ganfast.train.quality import mean_and_covariance, moments

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


@pytest.mark.parametrize("d", [2, 7, 64, 203, 301])  # 301: the CPU's blocked congruence
def test_matches_pytorch_fid_full_rank(d):
    fid_score = pytest.importorskip("pytorch_fid.fid_score")
    rng = np.random.default_rng(d)
    mu1, s1 = random_stats(rng, d, 4 * d + 10)
    mu2, s2 = random_stats(rng, d, 4 * d + 10)
    expected = fid_score.calculate_frechet_distance(mu1, s1, mu2, s2)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("d,n1,n2", [(50, 10, 30), (128, 64, 64), (33, 2, 100), (260, 40, 900)])
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


def test_reversed_numpy_arrays_and_narrow_integer_dtypes_are_taken():
    # torch.from_numpy refused negative strides (a reversed view) with its own error, naming no
    # argument; int16 and uint8 were refused as not "real numbers" where int32 and int64 passed.
    rng = np.random.default_rng(0)
    mu1, s1 = random_stats(rng, 6, 40)
    mu2, s2 = random_stats(rng, 6, 30)
    assert frechet_distance(mu1[::-1], s1[::-1, ::-1], mu2[::-1], s2[::-1, ::-1]) == frechet_distance(
        mu1[::-1].copy(), s1[::-1, ::-1].copy(), mu2[::-1].copy(), s2[::-1, ::-1].copy())
    for dtype in (np.int16, np.uint8):
        expected = frechet_distance(np.arange(3.0), np.eye(3), np.zeros(3), 2 * np.eye(3))
        assert frechet_distance(np.arange(3, dtype=dtype), np.eye(3, dtype=dtype), np.zeros(3),
                                2 * np.eye(3, dtype=dtype)) == expected


def test_arguments_that_require_grad_build_no_graph():
    # The result is a float: a graph through the factorization only held its D x D tensors.
    rng = np.random.default_rng(1)
    mu1, s1, mu2, s2 = (torch.from_numpy(x) for x in (*random_stats(rng, 6, 40), *random_stats(rng, 6, 30)))
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(tuple(t.shape)) or t,
                                                  lambda t: t):
        got = frechet_distance(mu1.requires_grad_(), s1.requires_grad_(), mu2, s2)
    assert saved == []
    assert got == frechet_distance(mu1.detach(), s1.detach(), mu2, s2)


@pytest.mark.parametrize("d,n", [(100, 5), (100, 500), (10, 50)])
def test_identical_inputs_never_give_a_negative_distance(d, n):
    # The rounding of tr S1 + tr S2 - 2 tr sqrt(S1 S2) fell below 0 (-1e-13) for most of these;
    # a distance is never negative.
    for seed in range(10):
        mu, s = random_stats(np.random.default_rng(seed), d, n)
        assert 0 <= frechet_distance(mu, s, mu, s) < 1e-8 * np.trace(s)


@pytest.mark.parametrize("which", ["mu1", "sigma1", "mu2", "sigma2"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_arguments_are_named(which, bad):
    args = dict(mu1=np.zeros(4), sigma1=np.eye(4), mu2=np.ones(4), sigma2=2 * np.eye(4))
    args[which] = args[which].copy()
    args[which].flat[0] = bad
    with pytest.raises(ValueError, match=f"^{which} holds NaN or infinite values"):
        frechet_distance(**args)


def test_a_sigma_that_is_no_covariance_is_named():
    # Clamping the negative eigenvalues of an indefinite matrix gave a distance, even a negative
    # one (-2.0 for the second case below), as if the matrix were a covariance.
    rng = np.random.default_rng(0)
    mu, s = random_stats(rng, 6, 40)
    indefinite = np.diag([4.0, 1.0, 1.0, 1.0, 1.0, -1.0])
    with pytest.raises(ValueError, match="sigma1 is not a covariance matrix .*eigenvalue -1"):
        frechet_distance(mu, indefinite, mu, s)
    with pytest.raises(ValueError, match="sigma2 is not a covariance matrix .*eigenvalue -3"):
        frechet_distance(mu, np.eye(6), mu, np.diag([1.0] * 5 + [-3.0]))
    singular_and_indefinite = np.diag([1.0, 0, 0, 0, 0, -0.5])
    with pytest.raises(ValueError, match="sigma2 is not a covariance matrix"):
        frechet_distance(mu, s, mu, singular_and_indefinite)
    skewed = s + np.triu(np.full_like(s, 0.1), 1)
    with pytest.raises(ValueError, match="sigma1 is not symmetric"):
        frechet_distance(mu, skewed, mu, s)
    with pytest.raises(ValueError, match="mu1 is empty"):
        frechet_distance(np.zeros(0), np.zeros((0, 0)), np.zeros(0), np.zeros((0, 0)))


def test_rounding_of_a_covariance_is_accepted():
    # Negative eigenvalues of 1e-8 of the largest (a float32 computation's) and asymmetry of
    # 1e-7 of the largest entry (float32's) are rounding, not a wrong matrix.
    rng = np.random.default_rng(1)
    mu, s = random_stats(rng, 30, 10)  # rank 9
    w, v = np.linalg.eigh(s)
    w[w < w.max() * 1e-6] = -1e-8 * w.max()
    rounded = (v * w) @ v.T
    rounded = rounded + np.triu(np.full_like(s, 1e-7 * np.abs(s).max()), 1)
    expected = frechet_distance(mu, s, mu + 1, s)
    assert frechet_distance(mu, rounded, mu + 1, s) == pytest.approx(expected, rel=1e-5)
    assert frechet_distance(mu + 1, s, mu, rounded) == pytest.approx(expected, rel=1e-5)


def test_a_collapsed_generators_raw_sum_covariance_is_rounding_of_the_distances_scale():
    # Identical features (a collapsed generator) through raw sums, as ganfast train's digits
    # measure accumulates them: the covariance is 0 up to rounding of either sign, tiny beside
    # its own largest eigenvalue but not beside the other covariance. The FID is the means'
    # distance plus the real covariance's trace, on either side, and FrechetReference agrees
    # on either side too: as the reference, the collapsed covariance's rounding is judged
    # against its raw second moments (the other covariance is not known yet; it was refused).
    rng = np.random.default_rng(2)
    real = torch.from_numpy(rng.normal(5.0, 3.0, (500, 64)))
    same = torch.from_numpy(np.abs(rng.normal(0.0, 40.0, (1, 64)))).expand(200, 64)
    (mu1, s1), (mu2, s2) = (mean_and_covariance(moments(f), 64) for f in (same, real))
    assert np.linalg.eigvalsh(s1)[0] < 0
    expected = float(((mu1 - mu2) ** 2).sum() + np.trace(s2))
    # (the rounding in s1, ~1e-10, adds up to ~1e-3 through tr sqrt(S1 S2): 1e-8 relative)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-7)
    assert frechet_distance(mu2, s2, mu1, s1) == pytest.approx(expected, rel=1e-7)
    assert FrechetReference(mu2, s2).distance(mu1, s1) == pytest.approx(expected, rel=1e-7)
    collapsed_reference = FrechetReference(mu1, s1)
    assert collapsed_reference.distance(mu2, s2) == pytest.approx(expected, rel=1e-7)
    assert collapsed_reference.distance_to_features(real) == pytest.approx(expected, rel=1e-7)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_matches_cpu():
    rng = np.random.default_rng(0)
    mu1, s1 = random_stats(rng, 512, 300)
    mu2, s2 = random_stats(rng, 512, 2000)
    on_gpu = [torch.from_numpy(x).cuda() for x in (mu1, s1, mu2, s2)]
    assert frechet_distance(*on_gpu) == pytest.approx(frechet_distance(mu1, s1, mu2, s2), rel=1e-9)


@settings(max_examples=40, deadline=None)
@given(d=st.integers(1, 300), row=st.integers(0, 10**6), col=st.integers(0, 10**6),
       seed=st.integers(0, 2**16))
def test_largest_asymmetry_by_blocks_equals_the_whole_difference(d, row, col, seed):
    """The CPU's blocks of rows (upper triangle only) against max |sigma - sigma^T| at once, on
    sizes across block edges (128 rows), with one entry made asymmetric anywhere."""
    from ganfast.metrics._tensors import largest_asymmetry

    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, dtype=torch.float64, generator=gen)
    sigma = a + a.mT
    sigma[row % d, col % d] += float(torch.rand((), dtype=torch.float64, generator=gen))
    assert largest_asymmetry(sigma) == float((sigma - sigma.mT).abs().max())


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_entries_anywhere_in_sigma_are_named(bad):
    sigma = torch.eye(130, dtype=torch.float64)
    sigma[129, 3] = bad  # below the diagonal, past the first block of rows
    with pytest.raises(ValueError, match="sigma2 holds NaN or infinite values"):
        frechet_distance(torch.zeros(130), torch.eye(130), torch.zeros(130), sigma)


@settings(max_examples=40, deadline=None)
@given(d=st.integers(1, 40), seed=st.integers(0, 2**16))
def test_lower_congruence_by_blocks_equals_the_full_products(d, seed):
    """L^T S L's lower triangle by blocks of columns of the Cholesky factor L (8 blocks, some
    empty below 8 features) against the two full products."""
    from ganfast.metrics.frechet import lower_congruence

    rng = np.random.default_rng(seed)
    _, s1 = random_stats(rng, d, 3 * d + 5)
    _, s2 = random_stats(rng, d, 3 * d + 5)
    factor = torch.linalg.cholesky(torch.from_numpy(np.atleast_2d(s1)))  # np.cov: 0-dim for d=1
    sigma = torch.from_numpy(np.atleast_2d(s2))
    full = factor.mT @ sigma @ factor
    got = lower_congruence(factor, sigma)
    assert torch.allclose(got.tril(), full.tril(), rtol=0, atol=1e-13 * float(full.abs().max()))


@pytest.mark.parametrize("n_ref", [1200, 100])  # the reference full rank (blocked) and singular
def test_reference_distance_matches_the_scipy_oracle_past_the_blocked_size(n_ref):
    rng = np.random.default_rng(n_ref)
    mu_r, s_r = random_stats(rng, 300, n_ref)
    mu, s = random_stats(rng, 300, 700)
    ref = FrechetReference(mu_r, s_r)
    assert ref.factor_is_lower_triangular == (n_ref > 300)
    assert ref.distance(mu, s) == pytest.approx(scipy_oracle(mu_r, s_r, mu, s), rel=1e-6)


@pytest.mark.parametrize("d,n,offset", [(64, 3, 0.0), (300, 6, 100.0)])  # 300: blocked sizes
def test_reference_and_frechet_distance_agree_on_a_covariance_of_fewer_samples_than_features(
        d, n, offset):
    # The covariance of n < d samples is singular, its smallest eigenvalues negative by rounding
    # (-1e-14): FrechetReference (the reference's factor from eigh) takes it as frechet_distance
    # does, with the same tolerance, on either side, and both give the float64 scipy oracle.
    rng = np.random.default_rng(d)
    few = rng.standard_normal((n, d)) + offset
    mu, s = few.mean(0), np.cov(few, rowvar=False)
    assert np.linalg.eigvalsh(s)[0] < 0
    mu2, s2 = random_stats(rng, d, 3 * d)
    mu2 = mu2 + offset
    expected = scipy_oracle(mu, s, mu2, s2)
    got = {"frechet_distance": frechet_distance(mu, s, mu2, s2),
           "frechet_distance, swapped": frechet_distance(mu2, s2, mu, s),
           "reference of the few": FrechetReference(mu, s).distance(mu2, s2),
           "reference of the many": FrechetReference(mu2, s2).distance(mu, s),
           "distance_to_features": FrechetReference(mu2, s2).distance_to_features(few)}
    assert got == pytest.approx(dict.fromkeys(got, expected), rel=1e-9)


@pytest.mark.parametrize("kind,match", [
    ("meta", "is a tensor on the 'meta' device, which holds no values"),
    ("sparse", "must be a dense tensor, got layout torch.sparse_coo"),
    ("masked", "is a numpy masked array with masked entries"),
])
def test_meta_sparse_and_masked_arguments_are_named(kind, match):
    # Before: "Tensor.item() cannot be called on meta tensors", "Could not run 'aten::as_strided'
    # with arguments from the 'SparseCPU' backend", naming nothing; a masked array's hidden
    # values were read as the statistics.
    mu, sigma = random_stats(np.random.default_rng(3), 4, 20)
    bad = {"meta": lambda x: torch.from_numpy(x).to("meta"),
           "sparse": lambda x: torch.from_numpy(x).to_sparse(),
           "masked": lambda x: np.ma.masked_array(x, mask=np.ones_like(x, dtype=bool))}[kind]
    with pytest.raises(ValueError, match=f"^mu2 {match}"):
        frechet_distance(mu, sigma, bad(mu), sigma)
    with pytest.raises(ValueError, match=f"^sigma1 {match}"):
        frechet_distance(mu, bad(sigma), mu, sigma)
