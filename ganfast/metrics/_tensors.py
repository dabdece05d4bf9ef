"""Argument checks shared by the metrics: numpy or torch in, float64 torch tensors out."""

from __future__ import annotations

import math

import numpy as np
import torch

from .._numbers import integer

# How far from symmetric a covariance may be, relative to its largest entry: a covariance made in
# float32 (np.cov of float32 features, torch.cov) is symmetric to ~1e-7 of it; a matrix that is
# not a covariance (a transposed factor, a difference) is off by its own scale.
SYMMETRY_TOLERANCE = 1e-6


INTEGER_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64,
                  torch.uint16, torch.uint32, torch.uint64)


def tensor_from_numpy(value, name: str):
    """`value` as a tensor when it is a numpy array (sharing its memory where torch can), else
    `value` as it is. torch.from_numpy refuses negative strides (a reversed view, `x[::-1]`)
    and another byte order than the machine's with errors naming no argument, so those are
    copied; a dtype torch has not (long double, object) is named after the argument, and so is a
    masked array with masked entries (torch.from_numpy reads the values under its mask)."""
    if not isinstance(value, np.ndarray):
        return value
    if isinstance(value, np.ma.MaskedArray) and np.ma.is_masked(value):
        raise ValueError(f"{name} is a numpy masked array with masked entries: their hidden "
                         "values would be read as data; drop those entries' rows, or fill them")
    if not value.dtype.isnative:  # big-endian data ('>f4'): torch takes the machine's order only
        value = value.astype(value.dtype.newbyteorder("="))
    if any(stride < 0 for stride in value.strides):
        value = value.copy()
    try:
        return torch.from_numpy(value)
    except TypeError:  # named neutrally: which real dtypes a caller takes, its own check says
        raise TypeError(f"{name}: numpy dtype {value.dtype} has no torch dtype; convert it (to "
                        "float64, say)") from None


def as_float64(value, name: str, ndim: int, device: torch.device | None = None) -> torch.Tensor:
    """`value` (numpy array or tensor) as a float64 tensor with `ndim` dims, or a clear error.
    Detached: every metric returns a float, so a graph through its GEMMs would only hold their
    inputs and results in memory until it returns (gigabytes for kid's 100 subsets)."""
    value = tensor_from_numpy(value, name)
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a numpy array or a torch tensor, got {type(value).__name__}")
    if value.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {tuple(value.shape)}")
    check_has_values(value, name)
    if not (value.is_floating_point() or value.dtype in INTEGER_DTYPES):
        raise TypeError(f"{name} must hold real numbers (a floating-point or integer dtype), "
                        f"got {value.dtype}")
    return value.detach().to(device=device if device is not None else value.device,
                              dtype=torch.float64)


def check_has_values(value: torch.Tensor, name: str) -> None:
    """A ValueError naming the argument for a tensor whose values the metrics cannot read as
    they are: one on the 'meta' device has a shape and a dtype but no values (torch's "Cannot
    copy out of meta tensor" or "Tensor.item() cannot be called on meta tensors" came later,
    naming nothing, and FeatureStats moved its state to 'meta'); a sparse one failed in aminmax
    or as_strided ("Could not run ... with arguments from the 'SparseCPU' backend")."""
    if value.is_meta:
        raise ValueError(f"{name} is a tensor on the 'meta' device, which holds no values (a shape "
                         "and a dtype only): pass one that holds its values (on the CPU or a GPU)")
    if value.layout != torch.strided:
        raise ValueError(f"{name} must be a dense tensor, got layout {value.layout}: convert it "
                         "with .to_dense()")


def first_device(*values) -> torch.device | None:
    """The device of the first torch tensor among `values` (None when all are numpy): where a
    metric computes, so numpy arguments join a tensor given after them."""
    return next((v.device for v in values if isinstance(v, torch.Tensor)), None)


def check_int(value, name: str, minimum: int, why: str = "", maximum: int | None = None) -> int:
    """`value` as an int (numpy integers and 0-dim integer tensors included; bools and floats
    refused: _numbers.integer), at least
    `minimum` (and at most `maximum`), or a ValueError naming the argument (`why`: a
    parenthetical reason)."""
    number = integer(value)
    if number is None or number < minimum or (maximum is not None and number > maximum):
        reason = f" ({why})" if why else ""
        bounds = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"{name} must be an int {bounds}{reason}, got {value!r}")
    return number


def finite_range(value: torch.Tensor, name: str, cause: str = "") -> tuple[float, float]:
    """(smallest, largest) value of a non-empty tensor, or a ValueError naming the argument when
    it holds NaN or infinite values (an O(size) pass and, on a GPU, one sync: for one-shot
    metrics, not for per-batch updates; `cause` is appended to the message). aminmax reads once
    and writes nothing, NaN and inf showing in its result: isfinite().all() first writes a bool
    tensor (0.7 ms against 17.5 ms for 2048 x 2048 float64 on 2 CPU cores)."""
    low, high = torch.stack(value.aminmax()).tolist()
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"{name} holds NaN or infinite values{cause}")
    return low, high


def check_finite(value: torch.Tensor, name: str) -> None:
    """finite_range's check alone; an empty tensor passes."""
    if value.numel():
        finite_range(value, name)


# Blocks of rows of a covariance compared with its columns (largest_asymmetry): on the CPU,
# sigma - sigma.mT whole reads the transpose with a stride of D into a D x D temporary, 35 ms
# at D = 2048 against 10 ms for the upper triangle by blocks of 128 rows (2 cores).
SYMMETRY_BLOCK_ROWS = 128


def largest_asymmetry(sigma: torch.Tensor) -> float:
    """max |sigma - sigma^T| of a square tensor."""
    if sigma.device.type != "cpu":  # one pass on a GPU; blocks would add launches and syncs
        return float((sigma - sigma.mT).abs().max())
    d, rows = sigma.shape[0], SYMMETRY_BLOCK_ROWS
    return float(torch.stack([(sigma[i:i + rows, i:] - sigma[i:, i:i + rows].mT).abs().max()
                              for i in range(0, d, rows)]).max())


def check_stats(mu: torch.Tensor, sigma: torch.Tensor, mu_name: str, sigma_name: str,
                scale: float = 0.0) -> None:
    """mu [D] and sigma [D, D], D >= 1, both finite, sigma symmetric (SYMMETRY_TOLERANCE of the
    larger of its largest entry and `scale`: the distance's, when the other covariance is
    larger, as a collapsed generator's covariance is rounding alone; of statistics given alone,
    frechet.raw_moment_scale)."""
    d = mu.shape[0]
    if d == 0:
        raise ValueError(f"{mu_name} is empty: expected at least 1 feature")
    if sigma.shape != (d, d):
        raise ValueError(
            f"{sigma_name} must be [{d}, {d}] to match {mu_name} of length {d}, got {tuple(sigma.shape)}"
        )
    check_finite(mu, mu_name)
    low, high = finite_range(sigma, sigma_name)
    asymmetry = largest_asymmetry(sigma)
    if asymmetry > SYMMETRY_TOLERANCE * max(-low, high, scale):
        raise ValueError(f"{sigma_name} is not symmetric (entries differ from their transpose's by "
                         f"up to {asymmetry:.3g}), so it is no covariance matrix")


def check_choice(value, name: str, choices: tuple[str, ...]) -> str:
    """`value` if it is one of `choices`, else an error naming the argument and the choices."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value
