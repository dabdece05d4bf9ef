"""Fixed reference statistics for FID evaluated again and again (training-time monitoring).

The reference's factor L (L L^T = S_r) is computed once. Against full statistics (mu, S) a
distance then costs one D x D product pair and one eigvalsh. Against a small batch of n
features (n << D) FastFID's observation (Mathiasen and Hvilshoj, 2020) applies: with X the
centred batch, S_b = X^T X / (n - 1), and the non-zero eigenvalues of S_r S_b are those of the
n x n symmetric matrix X S_r X^T / (n - 1) = (X L)(X L)^T / (n - 1). That is O(n D^2) work and an
n x n eigenproblem, and it is exact: the same number as the full computation from the batch's
mean and covariance.
"""

from __future__ import annotations

from ._tensors import as_float64, check_finite, check_stats, first_device
from .frechet import (
    check_positive_semidefinite,
    clamped_distance,
    distance_scale,
    psd_factor,
    raw_moment_scale,
    sum_sqrt_eigenvalues,
    trace_sqrt_product,
)


class FrechetReference:
    """Reference statistics (mu, sigma) with their factorization cached; float64 on sigma's device
    (mu's when sigma is a numpy array, as frechet_distance)."""

    def __init__(self, mu, sigma):
        # one device for both: a CUDA mu beside a numpy sigma stayed on the GPU, its factor on the
        # CPU, and every distance failed on mixed devices
        device = first_device(sigma, mu)
        self.mu = as_float64(mu, "mu", 1, device)
        self.sigma = as_float64(sigma, "sigma", 2, device)
        # its rounding judged against its raw second moments too (raw_moment_scale), as
        # FeatureStats.load judges a file's: the covariance a distance is taken to, whose
        # variances frechet_distance counts as well, is not known yet, and a collapsed
        # generator's covariance from raw sums (rounding of either sign, which frechet_distance
        # takes) was refused
        scale = raw_moment_scale(self.mu, self.sigma)
        check_stats(self.mu, self.sigma, "mu", "sigma", scale)
        self.factor, self.factor_is_lower_triangular = psd_factor(self.sigma, "sigma", scale)
        self.trace = self.sigma.trace()

    @property
    def num_features(self) -> int:
        """D, the length of the feature vectors the reference describes."""
        return self.mu.shape[0]

    def _check_length(self, d: int, name: str) -> None:
        if d != self.num_features:
            raise ValueError(f"{name} has {d} features, the reference has {self.num_features}")

    def distance(self, mu, sigma) -> float:
        """FID of N(mu, sigma) against the reference (frechet_distance with the factor reused;
        sigma's own check, that it is a covariance, costs a Cholesky)."""
        mu = as_float64(mu, "mu", 1, self.mu.device)
        sigma = as_float64(sigma, "sigma", 2, self.mu.device)
        scale = distance_scale(self.sigma)
        check_stats(mu, sigma, "mu", "sigma", scale)
        self._check_length(mu.shape[0], "mu")
        check_positive_semidefinite(sigma, "sigma", scale)
        diff = mu - self.mu
        tr_covmean = trace_sqrt_product(self.factor, sigma, self.factor_is_lower_triangular)
        fid = diff.dot(diff) + self.trace + sigma.trace() - 2 * tr_covmean
        return clamped_distance(fid)

    def distance_to_features(self, features) -> float:
        """FID of a batch of features [n, D] (n >= 2) against the reference, in O(n D^2)
        (an n x n eigenproblem for n <= D, D x D beyond)."""
        x = as_float64(features, "features", 2, self.mu.device)
        n, d = x.shape
        self._check_length(d, "features")
        if n < 2:
            raise ValueError(f"features needs at least 2 rows for a covariance, got {n}")
        check_finite(x, "features")
        mean = x.mean(0)
        centred = (x - mean) @ self.factor  # X L: [n, D]
        # (XL)(XL)^T and (XL)^T(XL) share their non-zero eigenvalues (those of S_r S_b): the
        # smaller of the two, n x n for a small batch, D x D past n = D (memory and eigvalsh
        # stay O(min(n, D)^2) and O(min(n, D)^3))
        gram = (centred @ centred.mT if n <= d else centred.mT @ centred) / (n - 1)
        tr_covmean = sum_sqrt_eigenvalues(gram)
        tr_batch = (x - mean).square().sum() / (n - 1)
        diff = mean - self.mu
        return clamped_distance(diff.dot(diff) + self.trace + tr_batch - 2 * tr_covmean)
