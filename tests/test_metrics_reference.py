"""FrechetReference: cached factorization and FastFID's small-batch Gram form, both exact."""

import numpy as np
import pytest
import torch

from ganfast.metrics import FrechetReference, frechet_distance
from tests.test_metrics_frechet import random_stats


@pytest.mark.parametrize("n_ref", [300, 20])  # full-rank and singular reference covariances
def test_distance_equals_frechet_distance(n_ref):
    rng = np.random.default_rng(n_ref)
    mu_r, s_r = random_stats(rng, 96, n_ref)
    mu, s = random_stats(rng, 96, 150)
    ref = FrechetReference(mu_r, s_r)
    assert ref.distance(mu, s) == pytest.approx(frechet_distance(mu_r, s_r, mu, s), rel=1e-9)


@pytest.mark.parametrize("n", [2, 17, 64, 130])
def test_small_batch_equals_full_computation(n):
    rng = np.random.default_rng(n)
    mu_r, s_r = random_stats(rng, 120, 400)
    feats = rng.standard_normal((n, 120)) * 2 + 0.5
    ref = FrechetReference(torch.from_numpy(mu_r), torch.from_numpy(s_r))
    expected = frechet_distance(mu_r, s_r, feats.mean(0), np.cov(feats, rowvar=False))
    assert ref.distance_to_features(torch.from_numpy(feats)) == pytest.approx(expected, rel=1e-9)


def test_small_batch_float32_features():
    rng = np.random.default_rng(1)
    ref = FrechetReference(np.zeros(8), np.eye(8))
    feats = rng.standard_normal((64, 8)).astype(np.float32)
    got = ref.distance_to_features(feats)  # float32 in, float64 inside
    exact = feats.astype(np.float64)
    expected = frechet_distance(np.zeros(8), np.eye(8), exact.mean(0), np.cov(exact, rowvar=False))
    assert got == pytest.approx(expected, rel=1e-9)


def test_bad_arguments():
    ref = FrechetReference(np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match="features has 5 features"):
        ref.distance_to_features(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="at least 2 rows"):
        ref.distance_to_features(np.zeros((1, 4)))
    with pytest.raises(ValueError, match="sigma"):
        FrechetReference(np.zeros(4), np.eye(3))


def test_batch_larger_than_the_features_takes_the_d_by_d_form(monkeypatch):
    # (XL)(XL)^T and (XL)^T(XL) share their non-zero eigenvalues: past n = D the eigenproblem is
    # D x D, not n x n, and the distance is the same as from the batch's statistics.
    from ganfast.metrics import reference

    rng = np.random.default_rng(3)
    d = 12
    mu, sigma = random_stats(rng, d, 40)
    ref = FrechetReference(mu, sigma)
    sizes = []
    real = reference.sum_sqrt_eigenvalues
    monkeypatch.setattr(reference, "sum_sqrt_eigenvalues",
                        lambda m: sizes.append(m.shape) or real(m))
    for n in (5, 12, 50):
        x = rng.standard_normal((n, d)) * 2 + 1
        got = ref.distance_to_features(x)
        expected = frechet_distance(x.mean(0), np.cov(x, rowvar=False), mu, sigma)
        assert got == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert sizes[0] == (5, 5) and sizes[1] == (12, 12) and sizes[2] == (d, d)


def test_reference_refuses_what_is_no_covariance_and_non_finite_values():
    rng = np.random.default_rng(4)
    mu, s = random_stats(rng, 8, 30)
    with pytest.raises(ValueError, match="sigma is not a covariance matrix"):
        FrechetReference(mu, -s)
    with pytest.raises(ValueError, match="mu holds NaN or infinite values"):
        FrechetReference(np.full(8, np.nan), s)
    # Its own raw second moments (what raw sums round at) count only at 1e-4: an eigenvalue of
    # -1 beside variances of 1 is no rounding at a mean of 100 (a distance while all counted)
    for mean in (100.0, 1e160):  # (the moment overflows at 1e160: no scale, not an infinite one)
        with pytest.raises(ValueError, match="sigma is not a covariance matrix"):
            FrechetReference(np.full(2, mean), np.array([[1.0, 2.0], [2.0, 1.0]]))
    ref = FrechetReference(mu, s)
    with pytest.raises(ValueError, match="sigma is not a covariance matrix"):
        ref.distance(mu, np.diag([1.0] * 7 + [-1.0]))  # was a distance, the -1 clamped away
    with pytest.raises(ValueError, match="sigma is not symmetric"):
        ref.distance(mu, s + np.triu(np.ones_like(s), 1))
    features = rng.standard_normal((5, 8))
    features[3, 2] = np.inf
    with pytest.raises(ValueError, match="features holds NaN or infinite values"):
        ref.distance_to_features(features)


def test_reference_distances_are_never_negative():
    rng = np.random.default_rng(5)
    for _ in range(10):
        x = rng.standard_normal((60, 20)) * 3 + 1
        ref = FrechetReference(x.mean(0), np.cov(x, rowvar=False))
        assert ref.distance(x.mean(0), np.cov(x, rowvar=False)) >= 0
        assert ref.distance_to_features(x) >= 0


def test_reversed_numpy_features_and_features_that_require_grad():
    # torch.from_numpy refused negative strides (a reversed view) with its own error; features
    # that required grad built a graph through the n x D product, held until the float returned.
    rng = np.random.default_rng(6)
    mu, s = random_stats(rng, 10, 50)
    ref = FrechetReference(mu[::-1], s[::-1, ::-1])
    x = rng.standard_normal((20, 10))
    expected = FrechetReference(mu[::-1].copy(), s[::-1, ::-1].copy()).distance_to_features(x[::-1].copy())
    assert ref.distance_to_features(x[::-1]) == expected
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(tuple(t.shape)) or t,
                                                  lambda t: t):
        got = ref.distance_to_features(torch.from_numpy(x[::-1].copy()).requires_grad_())
    assert saved == [] and got == expected


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_mu_beside_a_numpy_sigma_puts_the_reference_on_the_gpu():
    # mu stayed on the GPU and sigma (with its factor) on the CPU: every distance then failed
    # on tensors of two devices.
    rng = np.random.default_rng(7)
    mu, s = random_stats(rng, 16, 60)
    x = rng.standard_normal((8, 16))
    ref = FrechetReference(torch.from_numpy(mu).cuda(), s)
    assert ref.mu.device.type == ref.sigma.device.type == ref.factor.device.type == "cuda"
    expected = FrechetReference(mu, s)
    assert ref.distance_to_features(x) == pytest.approx(expected.distance_to_features(x), rel=1e-9)
    assert ref.distance(x.mean(0), np.cov(x, rowvar=False)) == pytest.approx(
        expected.distance(x.mean(0), np.cov(x, rowvar=False)), rel=1e-9)


def test_meta_and_sparse_tensors_are_named():
    # Before: torch's "Cannot copy out of meta tensor; no data!" or "Could not run 'aten::aminmax'
    # with arguments from the 'SparseCPU' backend", naming no argument.
    rng = np.random.default_rng(9)
    mu, sigma = random_stats(rng, 5, 40)
    with pytest.raises(ValueError, match="^sigma is a tensor on the 'meta' device"):
        FrechetReference(mu, torch.zeros(5, 5, device="meta"))
    with pytest.raises(ValueError, match="^mu is a tensor on the 'meta' device"):
        FrechetReference(torch.zeros(5, device="meta"), sigma)
    ref = FrechetReference(mu, sigma)
    with pytest.raises(ValueError, match="^features is a tensor on the 'meta' device"):
        ref.distance_to_features(torch.zeros(10, 5, device="meta"))
    with pytest.raises(ValueError, match="^features must be a dense tensor, got layout "
                                         "torch.sparse_coo"):
        ref.distance_to_features(torch.eye(10, 5, dtype=torch.float64).to_sparse())
    with pytest.raises(ValueError, match="^sigma must be a dense tensor"):
        ref.distance(mu, torch.from_numpy(sigma).to_sparse())
