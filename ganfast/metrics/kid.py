"""Kernel Inception Distance: unbiased MMD^2 with a polynomial kernel, torch-fidelity's definition.

Subsets are drawn exactly as torch-fidelity draws them (numpy RandomState(seed).choice without
replacement, features_1 then features_2 per subset), so the same seed gives the same subsets;
the kernels of a group of subsets are then computed as one batched GEMM on the features' device
in float64.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .._numbers import real_number
from ._tensors import as_float64, check_finite, check_int, first_device

MAX_SEED = 2**32 - 1  # numpy's RandomState takes seeds up to this
SUBSETS_PER_GEMM = 8  # bounds memory at 8 * subset_size * (D + 3 * subset_size) doubles


def _unbiased_mmd2(k_xx: torch.Tensor, k_xy: torch.Tensor, k_yy: torch.Tensor) -> torch.Tensor:
    """Per subset [S, m, m] kernels -> [S] unbiased MMD^2 (diagonals of K_XX, K_YY excluded)."""
    m = k_xx.shape[-1]
    off_diag = lambda k: k.sum((-2, -1)) - k.diagonal(dim1=-2, dim2=-1).sum(-1)  # noqa: E731
    return (off_diag(k_xx) + off_diag(k_yy)) / (m * (m - 1)) - 2 * k_xy.sum((-2, -1)) / (m * m)


def kid(features1, features2, subsets=100, subset_size=1000, degree=3, gamma=None, coef0=1.0, seed=0):
    """(mean, std) over subsets of MMD^2 with kernel (gamma <x, y> + coef0) ** degree."""
    device = first_device(features1, features2)
    f1 = as_float64(features1, "features1", 2, device)
    f2 = as_float64(features2, "features2", 2, device)
    if f1.shape[1] != f2.shape[1]:
        raise ValueError(
            f"features1 and features2 must have the same width, got {f1.shape[1]} and {f2.shape[1]}"
        )
    if f1.shape[1] == 0:  # gamma's default, 1 / D, would divide by zero
        raise ValueError(f"features1 and features2 must have at least 1 feature (column), got "
                         f"shapes {tuple(f1.shape)} and {tuple(f2.shape)}")
    check_finite(f1, "features1")
    check_finite(f2, "features2")
    subsets = check_int(subsets, "subsets", 1)
    subset_size = check_int(subset_size, "subset_size", 2)
    if seed is not None:  # None: numpy draws a seed (subsets differ from call to call)
        # (numpy's own refusal past its range, "Seed must be between ...", names no caller)
        check_int(seed, "seed", 0, "numpy's RandomState seed", maximum=MAX_SEED)
    if subset_size > min(len(f1), len(f2)):
        raise ValueError(
            "subset_size must be in [2, min(len(features1), len(features2))] = "
            f"[2, {min(len(f1), len(f2))}], got {subset_size}"
        )
    check_int(degree, "degree", 1, "a polynomial kernel's")
    # a NaN or infinite gamma or coef0 made every kernel value, and so the result, NaN
    given_gamma, given_coef0 = gamma, coef0
    gamma = 1.0 / f1.shape[1] if gamma is None else real_number(gamma)
    if gamma is None or not 0 < gamma < math.inf:
        raise ValueError(f"gamma must be > 0 and finite (a number, or None: 1 / D), got "
                         f"{given_gamma!r}")
    coef0 = real_number(coef0)
    if coef0 is None or not math.isfinite(coef0):
        raise ValueError(f"coef0 must be a finite number, got {given_coef0!r}")
    rng = np.random.RandomState(seed)
    draws = [
        (rng.choice(len(f1), subset_size, replace=False), rng.choice(len(f2), subset_size, replace=False))
        for _ in range(subsets)
    ]
    kernel = lambda a, b: (a @ b.mT * gamma + coef0) ** degree  # noqa: E731
    mmds = []
    for start in range(0, subsets, SUBSETS_PER_GEMM):
        group = draws[start : start + SUBSETS_PER_GEMM]
        x = f1[torch.from_numpy(np.stack([i for i, _ in group])).to(f1.device)]
        y = f2[torch.from_numpy(np.stack([j for _, j in group])).to(f2.device)]
        mmds.append(_unbiased_mmd2(kernel(x, x), kernel(x, y), kernel(y, y)))
    mmds = torch.cat(mmds)
    mean, std = float(mmds.mean()), float(mmds.std(unbiased=False))
    if not (math.isfinite(mean) and math.isfinite(std)):  # finite features, checked above
        raise ValueError(
            f"kid overflows float64: the kernel (gamma <x, y> + coef0) ** degree with degree={degree}, "
            f"gamma={gamma:.6g}, coef0={coef0:.6g} is too large for these features' scale "
            "(scale features1 and features2 down, or lower degree or gamma)"
        )
    return mean, std
