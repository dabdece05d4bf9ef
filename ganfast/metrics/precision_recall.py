"""Improved precision and recall (Kynkaanniemi et al. 2019), torch-fidelity's definitions.

Each sample's k-NN ball has the radius of its k-th nearest neighbour in its own set (itself
excluded). precision = share of fake samples inside some real ball; recall = share of real
samples inside some fake ball (recall is the mode-collapse number). Distances are computed in
square tiles on the features' device, keeping a running k+1 smallest per row, so memory is
O(tile^2 + N k), never O(N^2).
"""

from __future__ import annotations

import math

import torch

from ._tensors import INTEGER_DTYPES, check_has_values, check_int, finite_range, tensor_from_numpy

TILE = 4096
_NO_AMINMAX = (torch.uint16, torch.uint32, torch.uint64)


def _tiles(x: torch.Tensor, tile: int):
    return x.split(tile)


def _knn_radius(x: torch.Tensor, k: int, tile: int) -> torch.Tensor:
    """Distance of each row of x to its k-th nearest other row (torch-fidelity's kthvalue(k + 1))."""
    radii = []
    for rows in _tiles(x, tile):
        best = torch.full((len(rows), 0), float("inf"), dtype=x.dtype, device=x.device)
        for cols in _tiles(x, tile):
            merged = torch.cat([best, torch.cdist(rows, cols)], dim=1)
            best = merged.topk(min(k + 1, merged.shape[1]), dim=1, largest=False).values
        radii.append(best[:, k])
    return torch.cat(radii)


def _inside_any_ball(
    queries: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, tile: int
) -> torch.Tensor:
    """Share of query rows within radii[j] of some centre j."""
    hits = []
    for rows in _tiles(queries, tile):
        inside = torch.zeros(len(rows), dtype=torch.bool, device=queries.device)
        for cols, r in zip(_tiles(centres, tile), _tiles(radii, tile), strict=True):
            inside |= (torch.cdist(rows, cols) <= r).any(dim=1)
        hits.append(inside)
    return torch.cat(hits).double().mean()


def _range_exponent(ranges: list[tuple[float, float]], dtype: torch.dtype, d: int) -> int:
    """The power of two (its exponent) that brings features of the given value ranges to
    magnitude ~1 when their squared distances would overflow `dtype` (|x|^2 of D values: float32
    features past ~1e17 gave inf distances, every sample inside every ball, (1.0, 1.0)) or
    underflow it (float32 features below ~1e-16 gave distances of 0, (1.0, 1.0) too); else 0.
    A power of two scales every distance alike and rounds no value that is a normal number
    before and after, so the balls keep their members (values far below the largest may lose
    bits, as they do in the sums of the distances anyway)."""
    largest = max((max(-low, high) for low, high in ranges), default=0.0)
    info = torch.finfo(dtype)
    # centred values are at most twice the largest; the sum of D squares, the norms beside
    # them in cdist's product form and a margin of 16 stay below the largest float
    too_large = math.sqrt(info.max / (64 * d))
    too_small = math.sqrt(info.tiny / info.eps)  # squares keep a normal number's precision
    if largest == 0.0 or too_small <= largest <= too_large:
        return 0
    return -math.frexp(largest)[1]


def _times_power_of_two(x: torch.Tensor, exponent: int, dtype: torch.dtype) -> torch.Tensor:
    """x * 2**exponent in `dtype`, in two halves: 2**exponent itself may lie outside dtype's
    range (float32 features of 2**-140 need 2**140, subnormal float64 ones 2**1029)."""
    half = exponent // 2
    return x.to(dtype) * math.ldexp(1.0, half) * math.ldexp(1.0, exponent - half)


def _described(value) -> str:
    """What a refused argument is: a tensor's shape and dtype, or its type."""
    if isinstance(value, torch.Tensor):
        return f"shape {tuple(value.shape)}, {value.dtype}"
    return type(value).__name__


def precision_recall(fake_features, real_features, k=3, tile=TILE):
    """(precision, recall) of fake [N, D] against real [M, D] features with k-NN balls
    (numpy arrays or tensors)."""
    k, tile = check_int(k, "k", 1), check_int(tile, "tile", 1)
    fake_features = tensor_from_numpy(fake_features, "fake_features")
    real_features = tensor_from_numpy(real_features, "real_features")
    ranges = []  # (smallest, largest) value of each floating-point argument
    for name, f in (("fake_features", fake_features), ("real_features", real_features)):
        # integers too, as kid and the Frechet distance take them (computed in float32 or wider)
        if not isinstance(f, torch.Tensor) or f.dim() != 2 or not (
                f.is_floating_point() or f.dtype in INTEGER_DTYPES):
            raise ValueError(f"{name} must be a 2-D real-valued tensor (or numpy array) [N, D], "
                             f"got {_described(f)}")
        check_has_values(f, name)
        if len(f) <= k:
            raise ValueError(f"{name} needs more than k={k} rows, got {len(f)}")
        # a NaN distance is inside no ball: it would pass for a miss. Integers are finite;
        # aminmax has no kernel for uint16, uint32, uint64, whose range a float64 copy gives.
        if f.numel():
            ranges.append(finite_range(f.double() if f.dtype in _NO_AMINMAX else f.detach(), name))
    if fake_features.shape[1] != real_features.shape[1]:
        raise ValueError(
            f"fake_features and real_features must have the same width, got "
            f"{fake_features.shape[1]} and {real_features.shape[1]}"
        )
    if fake_features.shape[1] == 0:  # every distance 0: (1.0, 1.0) whatever the rows
        raise ValueError(f"fake_features and real_features must have at least 1 feature (column), "
                         f"got shapes {tuple(fake_features.shape)} and {tuple(real_features.shape)}")
    # the wider of the two dtypes: float64 real features were rounded to float32 fake ones' (and
    # the result depended on the order of the arguments); float64 for integers, as kid and the
    # Frechet distance take them (float32 rounds integers past 2**24, and the squares of int64
    # ones overflowed it); detached, as the result is a float and a graph would keep every
    # distance tile
    dtype = (torch.float64 if not (fake_features.is_floating_point()
                                   and real_features.is_floating_point())
             else torch.promote_types(torch.promote_types(fake_features.dtype,
                                                          real_features.dtype), torch.float32))
    # Distances do not change under a shift, but cdist's matrix-product form (|x|^2 + |y|^2 - 2 x.y,
    # which it takes past 25 rows) loses to cancellation what a common offset adds to the norms:
    # float32 features 1e4 from the origin with a spread of 1 gave (1.0, 1.0) for (0.98, 0.20).
    # Centred on the real features' mean, only their spread (and the fakes' distance) counts.
    # The subtraction converts to `dtype` as it goes (type promotion): one copy of each set.
    device = fake_features.device
    fake, real = fake_features.detach(), real_features.detach().to(device)
    exponent = _range_exponent(ranges, dtype, fake.shape[1])
    if exponent:  # rare: features whose squared distances leave dtype's range
        fake = _times_power_of_two(fake, exponent, dtype)
        real = _times_power_of_two(real, exponent, dtype)
    centre = real.mean(0, dtype=dtype)
    fake = fake - centre
    real = real - centre
    precision = _inside_any_ball(fake, real, _knn_radius(real, k, tile), tile)
    recall = _inside_any_ball(real, fake, _knn_radius(fake, k, tile), tile)
    return float(precision), float(recall)
