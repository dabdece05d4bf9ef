"""The Frechet distance between two Gaussians, through symmetric eigenproblems only.

    FID = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr sqrt(S1 S2)

tr sqrt(S1 S2) is the sum of square roots of the eigenvalues of S1 S2. S1 S2 is not symmetric,
so scipy's sqrtm (pytorch-fid) or eigvals (torchmetrics, torch-fidelity) pay for a general
eigenproblem and can return complex values. With S1 = L L^T (Cholesky, or L = V diag(sqrt(l))
from eigh when S1 is singular), S1 S2 is similar to L^T S2 L, which is symmetric positive semi-definite: its
eigenvalues come from eigvalsh, are real, and the negative ones (rounding) are clamped to 0;
a sigma with negative eigenvalues beyond rounding is refused instead, being no covariance.
All of it runs in float64 on the tensors' device.
"""

from __future__ import annotations

import math

import torch

from ._tensors import as_float64, check_stats, first_device

# How negative a covariance's eigenvalue may be and still count as rounding, relative to the scale
# of the distance: the largest eigenvalue of the matrix or, where given, the largest variance of
# either covariance (of statistics given alone, raw_moment_scale's). Covariances of fewer samples
# than features, or of float32 features (whose batch products FeatureStats forms in float32), have
# eigenvalues of ~1e-8 of the largest below 0 (measured up to D = 2048); a covariance made from raw
# sums of a collapsed generator's identical features is 0 up to rounding of either sign (-2.6e-12
# against 1.7e-12), which only the other covariance's scale, or its own raw second moments, show to
# be rounding; an indefinite matrix passed as a covariance has negative eigenvalues of its own
# scale, and clamping them would give a wrong, even negative, distance.
NEGATIVE_EIGENVALUE_TOLERANCE = 1e-4


def check_eigenvalues(eigenvalues: torch.Tensor, name: str, scale: float = 0.0) -> None:
    """A ValueError naming the matrix when an eigenvalue is below -tolerance * the larger of
    its largest in magnitude and `scale`."""
    lowest, largest = float(eigenvalues.min()), float(eigenvalues.abs().max())
    if lowest < -NEGATIVE_EIGENVALUE_TOLERANCE * max(largest, scale):
        raise ValueError(f"{name} is not a covariance matrix (positive semi-definite): it has the "
                         f"eigenvalue {lowest:.6g}, and {largest:.6g} the largest in magnitude")


def distance_scale(*sigmas: torch.Tensor) -> float:
    """The largest variance of the covariances of one distance: the scale their rounding is
    judged against (check_stats, check_eigenvalues). NaN when one holds NaN, which check_stats
    refuses before the scale counts."""
    return max((float(sigma.diagonal().max()) for sigma in sigmas if sigma.numel()), default=0.0)


# The share of the largest raw second moment (variance + mean^2) that statistics given alone
# are judged against besides their own scale. A covariance formed from float64 raw sums of the
# features (StyleGAN's metric_utils, torchmetrics: E[x x^T] - mu mu^T) rounds at up to n * eps
# of that moment (1.1e-10 for a million samples), and of a dead feature or a collapsed generator
# it is that rounding alone, of either sign; the tolerances take 1e-4 (eigenvalues) and 1e-6
# (symmetry) of a scale, 1e-8 and 1e-10 of the moment. The whole moment was too much: a sigma
# with an eigenvalue of -1 beside variances of 1 passed as rounding once the mean was 100.
RAW_MOMENT_SHARE = 1e-4


def raw_moment_scale(mu: torch.Tensor, sigma: torch.Tensor) -> float:
    """The scale that rounding of statistics given alone (a file's, a reference's) is judged
    against where no other covariance gives one: RAW_MOMENT_SHARE of their largest raw second
    moment. 0 for statistics of no [D] and [D, D] (check_stats refuses them) and where the
    moment overflows (no float64 sums formed it)."""
    if mu.numel() == 0 or sigma.shape != (mu.shape[0], mu.shape[0]):
        return 0.0
    moment = float((sigma.diagonal() + mu.square()).max())
    return RAW_MOMENT_SHARE * moment if math.isfinite(moment) else 0.0


def psd_factor(sigma: torch.Tensor, name: str = "sigma",
               scale: float = 0.0) -> tuple[torch.Tensor, bool]:
    """(L, whether L is lower triangular) with L @ L.T == sigma for a symmetric PSD float64
    matrix, or a ValueError naming it (`name`) when it is no covariance (check_eigenvalues, with
    `scale`).

    Cholesky when sigma is positive definite (several times cheaper than an eigendecomposition),
    lower triangular; a singular covariance (fewer samples than features) falls back to
    L = V diag(sqrt(l)) from eigh (S1 = V diag(l) V^T), negative eigenvalues (rounding) clamped
    to 0: not symmetric, but L L^T is S1, which is all the distance needs.
    """
    factor, info = torch.linalg.cholesky_ex(sigma)
    if int(info) == 0:
        return factor, True
    eigenvalues, eigenvectors = torch.linalg.eigh(sigma)
    check_eigenvalues(eigenvalues, name, scale)
    return eigenvectors * eigenvalues.clamp_min(0).sqrt(), False


def check_positive_semidefinite(sigma: torch.Tensor, name: str, scale: float = 0.0) -> None:
    """psd_factor's check without the factor, through a Cholesky (a third of a D x D product)
    where it can: one of sigma + tolerance * max(its largest variance, scale) * I proves every
    eigenvalue above -tolerance * that, the largest variance being at most the largest
    eigenvalue, so it accepts nothing check_eigenvalues would refuse, singular covariances
    included; only what it does not prove pays for the eigenvalues."""
    shifted = sigma.clone()
    shifted.diagonal().add_(NEGATIVE_EIGENVALUE_TOLERANCE * max(distance_scale(sigma), scale))
    if int(torch.linalg.cholesky_ex(shifted).info) != 0:
        check_eigenvalues(torch.linalg.eigvalsh(sigma), name, scale)


def check_covariance(sigma: torch.Tensor, name: str, scale: float = 0.0) -> None:
    """A ValueError naming `name` unless the symmetric float64 matrix sigma is a covariance up to
    rounding: no variance and no eigenvalue below -tolerance * the larger of its largest variance
    and `scale`. For statistics read from a file (FeatureStats.load), where the file is what to
    name, with `scale` raw_moment_scale's: a covariance formed from raw sums (StyleGAN's
    metric_utils, torchmetrics) of a dead feature or a collapsed generator is rounding of either
    sign, which frechet_distance takes. One Cholesky where that proves it (0.13 to 0.25 s at D =
    2048 on 2 busy CPU cores, beside 2.5 s and more for the distance)."""
    if sigma.numel() and float(sigma.diagonal().min()) < -NEGATIVE_EIGENVALUE_TOLERANCE * max(
            distance_scale(sigma), scale):
        raise ValueError(f"{name} has negative variances on its diagonal, so it is no covariance "
                         "matrix")
    check_positive_semidefinite(sigma, name, scale)


def sum_sqrt_eigenvalues(matrix: torch.Tensor, lower_only: bool = False) -> torch.Tensor:
    """sum sqrt(lambda_i) of a symmetric PSD matrix, rounding noise removed; `lower_only`: of
    the symmetric matrix that its lower triangle describes (what eigvalsh reads).

    Eigenvalues below the rank tolerance (size * eps * largest, as numpy's matrix_rank) are
    rounding noise of a rank-deficient matrix (few samples, many features); their square roots
    would add ~sqrt(eps) each, so they count as 0, and negative ones are clamped.
    """
    if not lower_only:  # a product's triangles differ by rounding: eigvalsh gets their mean
        matrix = 0.5 * (matrix + matrix.mT)
    eigenvalues = torch.linalg.eigvalsh(matrix)
    tolerance = eigenvalues.abs().max() * matrix.shape[-1] * torch.finfo(matrix.dtype).eps
    return torch.where(eigenvalues > tolerance, eigenvalues, 0).sqrt().sum()


# L^T S L for a lower-triangular L (a Cholesky factor) on the CPU by blocks of columns,
# skipping L's zero blocks and computing only the lower triangle (what eigvalsh reads): about
# half the multiply-adds of the two full products, 200 ms against 450 ms at D = 2048 (2 cores,
# 8 blocks). Below CONGRUENCE_BLOCKED_MIN features the full products cost little; on a GPU they
# are a launch each.
CONGRUENCE_BLOCKS = 8
CONGRUENCE_BLOCKED_MIN = 256


def lower_congruence(factor: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """A matrix whose lower triangle is that of L^T sigma L, for a lower-triangular L = factor
    (above the diagonal blocks: 0)."""
    d = factor.shape[0]
    edges = [d * k // CONGRUENCE_BLOCKS for k in range(CONGRUENCE_BLOCKS + 1)]
    blocks = list(zip(edges[:-1], edges[1:], strict=True))  # (start, end) of each block
    product = torch.empty_like(sigma)  # sigma L: L's columns of a block are 0 above its start
    for start, end in blocks:
        product[:, start:end] = sigma[:, start:] @ factor[start:, start:end]
    result = torch.zeros_like(sigma)
    for start, end in blocks:  # a block's rows: L^T's are 0 left of start; columns up to end
        result[start:end, :end] = factor[start:, start:end].mT @ product[start:, :end]
    return result


def trace_sqrt_product(factor: torch.Tensor, sigma: torch.Tensor,
                       lower_triangular: bool = False) -> torch.Tensor:
    """tr sqrt(S1 S2) given L with L L^T = S1: the square roots of the eigenvalues of L^T S2 L.
    `lower_triangular`: L is (psd_factor says so), which the CPU's congruence uses."""
    if lower_triangular and sigma.device.type == "cpu" and sigma.shape[0] >= CONGRUENCE_BLOCKED_MIN:
        return sum_sqrt_eigenvalues(lower_congruence(factor, sigma), lower_only=True)
    return sum_sqrt_eigenvalues(factor.mT @ sigma @ factor)


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """FID between N(mu1, sigma1) and N(mu2, sigma2); numpy arrays or tensors, any device.

    Equal to pytorch-fid's calculate_frechet_distance (to rounding) without its complex-valued
    failure modes; computed in float64 on sigma1's device (the first tensor's among the
    arguments when sigma1 is a numpy array). NaN or infinite values, a non-symmetric sigma or
    one with a negative eigenvalue beyond rounding are refused naming the argument; a result
    below 0 (rounding only, then) is returned as 0.
    """
    device = first_device(sigma1, sigma2, mu1, mu2)
    mu1 = as_float64(mu1, "mu1", 1, device)
    mu2 = as_float64(mu2, "mu2", 1, device)
    sigma1 = as_float64(sigma1, "sigma1", 2, device)
    sigma2 = as_float64(sigma2, "sigma2", 2, device)
    scale = distance_scale(sigma1, sigma2)
    check_stats(mu1, sigma1, "mu1", "sigma1", scale)
    check_stats(mu2, sigma2, "mu2", "sigma2", scale)
    if mu1.shape != mu2.shape:
        raise ValueError(f"mu1 and mu2 must have the same length, got {mu1.shape[0]} and {mu2.shape[0]}")
    factor, lower_triangular = psd_factor(sigma1, "sigma1", scale)
    check_positive_semidefinite(sigma2, "sigma2", scale)
    diff = mu1 - mu2
    tr_covmean = trace_sqrt_product(factor, sigma2, lower_triangular)
    return clamped_distance(diff.dot(diff) + sigma1.trace() + sigma2.trace() - 2 * tr_covmean)


def clamped_distance(fid: torch.Tensor) -> float:
    """The distance as a float, its rounding below 0 (identical inputs: -1e-14) clamped to 0."""
    return max(float(fid), 0.0)
