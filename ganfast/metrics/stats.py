"""Streaming mean and covariance of features: O(D^2) memory whatever the number of samples.

Each batch is centred on its own mean before its second moment is formed, and batches are
folded in with Chan's parallel formula:

    n = na + nb,  delta = mean_b - mean_a,  mean = mean_a + delta * nb / n
    M2 = M2_a + M2_b + delta delta^T * na * nb / n

so a large common offset (mean 1e3, std 1) costs no accuracy, unlike raw sums of x x^T.
State is float64. The batch product X_c^T X_c is GEMM work, the right kernel for it (it runs
on the matrix units; a fused kernel would add only the centring, an O(N D) pass); on the CPU
only its lower block triangle is multiplied (_gram):
float64 features use a float64 GEMM (covariance to ~1e-15 relative); fp32/fp16/bf16 features
are centred and multiplied in fp32 (~1e-7 relative per batch, far below FID's own noise), and
the residual of the fp32-rounded batch mean is corrected in float64.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from .._files import write_atomically
from .._numbers import integer
from ._tensors import (
    check_has_values,
    check_int,
    check_stats,
    finite_range,
    tensor_from_numpy,
)
from .frechet import check_covariance, raw_moment_scale


def open_npz(path):
    """np.load of an .npz archive, refusing anything else with an error that says so (numpy
    reads any other file as a pickle and answers with advice to unpickle it). The archive is
    recognised as numpy does, by its first bytes."""
    path = os.fspath(path)
    with open(path, "rb") as f:  # OSError for a missing or unreadable file, as np.load
        start = f.read(6)
    if start[:4] not in (b"PK\x03\x04", b"PK\x05\x06"):
        raise ValueError(f"{path} is not an .npz archive (numpy's zip of named arrays, as "
                         "np.savez writes)" + (": it is a single .npy array"
                                               if start == b"\x93NUMPY" else ""))
    return np.load(path, allow_pickle=False)


def collective_device(backend: str, device: torch.device) -> torch.device:
    """Where a process's statistics travel for all_reduce: NCCL moves CUDA tensors only, so a
    process whose statistics still sit where they were constructed (on the CPU, having seen no
    batch: its state moves to the first batch's device) sends them from its current CUDA
    device; any other backend takes them where they are."""
    if backend == "nccl" and device.type != "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    return device


# Rows per block of _row_sums_float64 on the CPU: the block's float64 copy (4 MB at D = 2048)
# stays in cache.
CPU_SUM_BLOCK_ROWS = 256


def _row_sums_float64(x: torch.Tensor) -> torch.Tensor:
    """x.sum(0) accumulated in float64. On the CPU, a sum in another dtype than its input's
    first copies the whole input to that dtype (a fresh N x D float64 tensor: 28 ms for
    5000 x 2048 float32 features, against 3.4 ms block by block); elsewhere one call."""
    if x.device.type != "cpu" or x.dtype == torch.float64 or x.shape[0] <= CPU_SUM_BLOCK_ROWS:
        return x.sum(0, dtype=torch.float64)
    total = x[:CPU_SUM_BLOCK_ROWS].sum(0, dtype=torch.float64)
    for block in x[CPU_SUM_BLOCK_ROWS:].split(CPU_SUM_BLOCK_ROWS):
        total += block.sum(0, dtype=torch.float64)
    return total


# Columns per block of _gram on the CPU: at D = 2048 four blocks, 62.5% of a full product's
# multiply-adds; narrower blocks save more in theory but measured no faster on two cores.
CPU_GRAM_BLOCK_COLUMNS = 512


def _gram(x: torch.Tensor) -> torch.Tensor:
    """x^T x. On the CPU only its lower block triangle is multiplied, block row by block row,
    and mirrored: the symmetric half a BLAS syrk skips (numpy takes syrk for `a.T @ a`; torch's
    matmul has no syrk and makes every product twice). 10,000 x 2048 float32: 438 ms as one
    product, 278 ms by blocks. Elsewhere one product (its speed there unmeasured by blocks)."""
    d = x.shape[1]
    if x.device.type != "cpu" or d <= CPU_GRAM_BLOCK_COLUMNS:
        return x.mT @ x
    gram = x.new_empty(d, d)
    for start in range(0, d, CPU_GRAM_BLOCK_COLUMNS):
        end = min(start + CPU_GRAM_BLOCK_COLUMNS, d)
        gram[start:end, :end] = x[:, start:end].mT @ x[:, :end]
        gram[:start, start:end] = gram[start:end, :start].mT
    return gram


class FeatureStats:
    """Running count, mean and unbiased covariance (as np.cov) of [N, D] feature batches."""

    def __init__(self, num_features: int, device=None):
        number = integer(num_features)
        if number is None or number < 1:
            raise ValueError(f"num_features must be a positive int, got {num_features!r}")
        num_features = number
        if device is not None and torch.device(device).type == "meta":  # no values to hold
            raise ValueError(f"device must hold values (the CPU or a GPU), got {device!r}: a "
                             "'meta' tensor has a shape and a dtype only")
        self.num_features = num_features
        self._count = 0
        self._mean = torch.zeros(num_features, dtype=torch.float64, device=device)
        self._m2 = torch.zeros(num_features, num_features, dtype=torch.float64, device=device)

    def _fold(self, count: int, mean: torch.Tensor, m2: torch.Tensor) -> None:
        """Chan's merge of (count, mean, m2) into the running state."""
        if count == 0:
            return
        total = self._count + count
        delta = mean.to(self._mean.device) - self._mean
        # In place (addr_: the rank-1 term without a D x D outer product and its scaled copy,
        # two float64 temporaries of 32 MB at D = 2048)
        self._m2.add_(m2.to(self._m2.device)).addr_(delta, delta, alpha=self._count * count / total)
        self._mean += delta * (count / total)
        self._count = total

    def update(self, features: torch.Tensor) -> FeatureStats:
        """Fold a batch [N, D] (any float dtype, any device) into the statistics."""
        features = tensor_from_numpy(features, "features")
        if not isinstance(features, torch.Tensor) or not features.is_floating_point():
            raise TypeError(
                f"features must be a floating-point tensor, got {getattr(features, 'dtype', type(features))}"
            )
        if features.dim() != 2 or features.shape[1] != self.num_features:
            raise ValueError(f"features must be [N, {self.num_features}], got {tuple(features.shape)}")
        # a meta batch moved the state to 'meta' (the first batch's device) and counted its rows;
        # every later read failed with torch's "Cannot copy out of meta tensor"
        check_has_values(features, "features")
        n = features.shape[0]
        if n == 0:
            return self
        if self._count == 0:
            self._mean = self._mean.to(features.device)
            self._m2 = self._m2.to(features.device)
        # float32 products (the matrix units) once there are more samples than features; before
        # that float64: the covariance is rank-deficient then, and float32 rounding (~1e-7 of
        # its scale) in its null space would add sqrt(noise) per direction to tr sqrt(S1 S2)
        # (FID 2517.9 against np.cov's 2519.8 for 200 x 512 features). np.cov works in float64.
        exact = features.dtype == torch.float64 or self._count + n <= self.num_features
        work_dtype = torch.float64 if exact else torch.float32
        x = features.detach().to(work_dtype)
        batch_mean = _row_sums_float64(x) / n
        centred = x - batch_mean.to(work_dtype)
        # the rounded mean leaves a residual r: sum (x-m)(x-m)^T = C^T C - n r r^T, exact
        residual = _row_sums_float64(centred) / n
        m2 = _gram(centred).double().addr_(residual, residual, alpha=-n)
        self._fold(n, batch_mean, m2)
        return self

    def merge(self, other: FeatureStats) -> FeatureStats:
        """Fold another FeatureStats (e.g. from another process or shard) into this one."""
        if not isinstance(other, FeatureStats) or other.num_features != self.num_features:
            raise ValueError(f"other must be a FeatureStats with {self.num_features} features")
        self._fold(other._count, other._mean, other._m2)
        return self

    def all_reduce(self, group=None) -> FeatureStats:
        """Merge the statistics of every process of torch.distributed (all end up equal)."""
        import torch.distributed as dist

        world = dist.get_world_size(group)
        device = collective_device(dist.get_backend(group), self._mean.device)
        packed = torch.cat(
            [
                torch.tensor([float(self._count)], dtype=torch.float64, device=self._mean.device),
                self._mean,
                self._m2.flatten(),
            ]
        ).to(device)
        gathered = [torch.empty_like(packed) for _ in range(world)]
        dist.all_gather(gathered, packed, group=group)
        d = self.num_features
        self._count = 0
        self._mean = torch.zeros_like(self._mean)
        self._m2 = torch.zeros_like(self._m2)
        for part in gathered:  # the same order on every rank, so every rank gets identical bits
            self._fold(int(part[0].item()), part[1 : d + 1], part[d + 1 :].view(d, d))
        return self

    @property
    def count(self) -> int:
        """The number of feature rows folded in."""
        return self._count

    def _finite(self, state: torch.Tensor, what: str) -> torch.Tensor:
        """`state`, or a ValueError when it holds NaN or infinite values. Checked as a result is
        read, not in update(): the state keeps any NaN or inf a batch brought (it reaches the
        mean and M2), and a check per batch would cost a device sync each."""
        finite_range(state, f"the statistics' {what}", cause=": a batch given to update() (or "
                     "statistics merged in) held NaN or infinite features, or features too "
                     "large to square")
        return state

    @property
    def mean(self) -> torch.Tensor:
        """The mean feature vector [D], float64 (a copy); a ValueError if it is not finite."""
        return self._finite(self._mean, "mean").clone()

    @property
    def covariance(self) -> torch.Tensor:
        """Unbiased covariance (divides by count - 1), as np.cov and pytorch-fid; a ValueError
        if it is not finite."""
        if self._count < 2:
            raise ValueError(f"covariance needs at least 2 samples (unbiased: it divides by "
                             f"count - 1), got {self._count}")
        return self._finite(self._m2, "covariance") / (self._count - 1)

    def save(self, path) -> None:
        """Write pytorch-fid's .npz (mu, sigma) plus count, atomically (temp file + rename);
        statistics that are not finite, or of fewer than 2 samples, are refused (ValueError)."""
        path = os.fspath(path)
        if self._count < 2:  # the covariance property says so too, without the file
            raise ValueError(f"cannot save statistics to {path}: they hold {self._count} "
                             "sample(s); the covariance needs at least 2 (unbiased: it divides "
                             "by count - 1)")
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise FileNotFoundError(f"cannot save statistics to {path}: folder {directory} does "
                                    "not exist")
        # read first: the properties' checks refuse a state no one could use before any writing
        mu, sigma = self.mean.cpu().numpy(), self.covariance.cpu().numpy()

        def write(tmp):
            with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to a name
                np.savez(f, mu=mu, sigma=sigma, count=np.int64(self._count))

        write_atomically(path, write)

    @classmethod
    def load(cls, path, count: int | None = None) -> FeatureStats:
        """Read an .npz with mu and sigma (pytorch-fid's format); count from the file, or from
        the argument for a file without one (pytorch-fid's); a count that contradicts the
        file's is refused, and so is a sigma that is no covariance up to rounding (not finite,
        not [D, D], not symmetric, a negative variance or eigenvalue), naming the file."""
        with open_npz(path) as data:
            missing = {"mu", "sigma"} - set(data.files)
            if missing:
                raise ValueError(f"{path} lacks {sorted(missing)}: expected pytorch-fid's .npz (mu, sigma)")
            mu, sigma = _read_array(data, "mu", path), _read_array(data, "sigma", path)
            stored_count = _read_array(data, "count", path) if "count" in data.files else None
        for name, array in (("mu", mu), ("sigma", sigma)):
            if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
                raise ValueError(f"{path}: {name} must hold real numbers, got dtype {array.dtype}")
            if not np.isfinite(array).all():
                raise ValueError(f"{path}: {name} holds NaN or infinite values")
        if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
            raise ValueError(f"{path}: mu {mu.shape} and sigma {sigma.shape} do not form D and [D, D]")
        if mu.shape[0] == 0:  # was FeatureStats(0)'s error, naming an argument the caller never gave
            raise ValueError(f"{path}: mu and sigma are empty: expected at least 1 feature")
        # float64 in the machine's byte order: torch.from_numpy refused big-endian arrays ('>f8',
        # as another machine or np.dtype('>f8') writes them) with an error naming no file
        mu = torch.from_numpy(np.asarray(mu, dtype=np.float64))
        sigma = torch.from_numpy(np.asarray(sigma, dtype=np.float64))
        moments = raw_moment_scale(mu, sigma)  # what rounding is judged against
        try:  # an indefinite sigma gave frechet_distance's "sigma1 is not a covariance ...",
            # naming no file, or, merged into other statistics, a wrong number
            check_stats(mu, sigma, "mu", "sigma", moments)  # symmetry, as the distance checks it
            check_covariance(sigma, "sigma", moments)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
        count = None if count is None else _as_count(count)
        if stored_count is not None:
            stored_count = _as_count(stored_count, f"{path}: ")
            if count is not None and count != stored_count:
                raise ValueError(f"count={count} contradicts the count {stored_count} stored in "
                                 f"{path}: leave count out (it is for files without one, as "
                                 "pytorch-fid's)")
            count = stored_count
        if count is None:
            raise ValueError(f"{path} stores no count: pass count= (the number of samples behind it)")
        stats = cls(mu.shape[0])
        stats._count = count
        stats._mean = mu
        stats._m2 = sigma * (count - 1)
        return stats


def _read_array(data, key: str, path) -> np.ndarray:
    """data[key] of an open .npz, an object array refused naming the file and the key (numpy's
    own refusal, "Object arrays cannot be loaded when allow_pickle=False", names neither)."""
    try:
        return data[key]
    except ValueError as error:
        if "allow_pickle" not in str(error):  # a damaged array: numpy's message, with the file's
            raise ValueError(f"{path}: {key}: {error}") from None
        raise ValueError(f"{path}: {key} must hold real numbers, got an object array (which "
                         "numpy reads only by unpickling)") from None


def _as_count(count, where: str = "") -> int:
    """A sample count as an int >= 2, from the argument or an .npz's 0-d array (a whole float
    too: some writers store the count as one); `where` starts a refusal (the file's, for its
    count)."""
    if isinstance(count, np.ndarray):
        if count.shape != ():
            raise ValueError(f"{where}count must be a single number, got shape {count.shape}")
        count = count.item()
    if isinstance(count, float) and count.is_integer():
        count = int(count)
    try:
        return check_int(count, "count", 2, "the samples behind a covariance")
    except ValueError as error:
        raise ValueError(f"{where}{error}") from None
