"""CPU/GPU timings for the FID pieces, side by side in one run.

    ganfast bench --op fid [--quick]      (or python -m ganfast.bench.fid [--dim 2048] ...)

Frechet distance: ganfast (Cholesky + eigvalsh) against pytorch-fid's calculate_frechet_distance
(scipy sqrtm of S1 S2), numpy eigvals of S1 S2 (torch-fidelity's way) and torch eigvals
(torchmetrics' way); the training-time FID of a 64-feature batch against a cached reference;
the statistics of N features (FeatureStats.update in chunks) against numpy's float64 np.cov
(pytorch-fid's way) and float64 raw sums (torchmetrics' way); FID Inception images per second
(random weights: the time does not depend on them).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch

from ganfast.metrics import FeatureStats, FrechetReference, frechet_distance


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up (thread pools, first-call allocations)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def random_stats(rng, d: int, n: int):
    feats = rng.standard_normal((n, d)) @ (rng.standard_normal((d, d)) / np.sqrt(d))
    return feats.mean(0), np.cov(feats, rowvar=False)


def eigvals_numpy(mu1, s1, mu2, s2):
    diff = mu1 - mu2
    tr = np.sqrt(np.linalg.eigvals(s1 @ s2).astype(complex)).real.sum()
    return diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr


def eigvals_torch(mu1, s1, mu2, s2):
    diff = mu1 - mu2
    tr = torch.linalg.eigvals(s1 @ s2).sqrt().real.sum()
    return float(diff @ diff + s1.trace() + s2.trace() - 2 * tr)


def frechet_rows(dim: int, repeats: int) -> list[tuple[str, float, float]]:
    rng = np.random.default_rng(0)
    mu1, s1 = random_stats(rng, dim, 2 * dim)
    mu2, s2 = random_stats(rng, dim, 2 * dim)
    t = [torch.from_numpy(x) for x in (mu1, s1, mu2, s2)]
    cases = {"ganfast frechet_distance": lambda: frechet_distance(*t)}
    try:
        from pytorch_fid.fid_score import calculate_frechet_distance

        cases["pytorch-fid (scipy sqrtm)"] = lambda: calculate_frechet_distance(mu1, s1, mu2, s2)
    except ImportError:
        pass
    cases["numpy eigvals (torch-fidelity)"] = lambda: eigvals_numpy(mu1, s1, mu2, s2)
    cases["torch eigvals (torchmetrics)"] = lambda: eigvals_torch(*t)
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, fn in cases.items():
            rows.append((name, median_seconds(fn, repeats), float(fn())))
    return rows


def small_batch_rows(dim: int, n: int, repeats: int) -> list[tuple[str, float, float]]:
    rng = np.random.default_rng(1)
    ref = FrechetReference(*[torch.from_numpy(x) for x in random_stats(rng, dim, 2 * dim)])
    feats = torch.from_numpy(rng.standard_normal((n, dim)))
    fn = lambda: ref.distance_to_features(feats)  # noqa: E731
    return [(f"FrechetReference.distance_to_features n={n}", median_seconds(fn, repeats), fn())]


def stats_rows(n: int, dim: int, device: torch.device, repeats: int, chunk: int = 5000):
    """(name, seconds, trace of the covariance): the same N x D features three ways."""
    feats = torch.randn(n, dim, device=device) + 3.0
    host = feats.double().cpu().numpy()

    def ganfast_stats():
        stats = FeatureStats(dim, device=device)
        for start in range(0, n, chunk):
            stats.update(feats[start:start + chunk])
        return float(stats.covariance.trace())

    def numpy_cov():  # pytorch-fid: all features on the host, float64
        return float(np.trace(np.cov(host, rowvar=False)))

    def raw_sums():  # torchmetrics: float64 sum and sum of outer products, uncentred
        x = feats.double()
        total, outer = x.sum(0), x.T @ x
        return float(((outer - torch.outer(total, total) / n) / (n - 1)).trace())

    cases = {"ganfast FeatureStats.update": ganfast_stats, "numpy float64 np.cov": numpy_cov,
             "float64 raw sums": raw_sums}
    return [(f"{name} N={n}", median_seconds(fn, repeats), fn()) for name, fn in cases.items()]


def inception_rows(batch: int, device: torch.device, repeats: int):
    from ganfast.metrics.inception import FIDInceptionV3

    net = FIDInceptionV3().to(device)
    images = torch.rand(batch, 3, 64, 64, device=device)

    @torch.no_grad()
    def features():
        out = net(images)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return float(out.mean())

    seconds = median_seconds(features, repeats)
    return [(f"FID Inception, batch {batch}: {batch / seconds:.1f} images/s", seconds, features())]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--stats-n", type=int, default=None,
                        help="features for the statistics rows (default 50000 on GPU, 10000 on CPU)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    stats_n = args.stats_n or (50000 if device.type == "cuda" else 10000)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, D={args.dim}")
    rows = frechet_rows(args.dim, args.repeats)
    base = rows[0][1]
    for name, seconds, value in rows + small_batch_rows(args.dim, args.batch, max(args.repeats, 10)):
        print(f"{name:45s} {seconds * 1e3:10.1f} ms  {seconds / base:7.2f}x ganfast's time  FID {value:.9g}")
    rows = stats_rows(stats_n, args.dim, device, args.repeats)
    for name, seconds, value in rows:
        print(f"{name:45s} {seconds * 1e3:10.1f} ms  {seconds / rows[0][1]:7.2f}x ganfast's time  "
              f"trace {value:.9g}")
    for name, seconds, _ in inception_rows(50 if device.type == "cuda" else 4, device, args.repeats):
        print(f"{name:45s} {seconds * 1e3:10.1f} ms")


if __name__ == "__main__":
    main()
