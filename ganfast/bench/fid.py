"""CPU/GPU timings for the FID pieces, side by side in one run.

    ganfast bench --op fid [--quick] [--out FILE]   (or python -m ganfast.bench.fid [--dim 2048] ...)

Frechet distance: ganfast (Cholesky + eigvalsh) against pytorch-fid's calculate_frechet_distance
(scipy sqrtm of S1 S2), numpy eigvals of S1 S2 (torch-fidelity's way) and torch eigvals
(torchmetrics' way); the training-time FID of a 64-feature batch against a cached reference;
the statistics of N features (FeatureStats.update in chunks) against numpy's float64 np.cov
(pytorch-fid's way) and float64 raw sums (torchmetrics' way); FID Inception images per second
(random weights: the time does not depend on them), fp32 and bf16, and with TensorFlow 1's resize
against torch-fidelity's feature extractor (the same weights and uint8 images; the rows say how
far apart their features are).

    python -m ganfast.bench.fid --precision-effect 64 [--weights pt_inception-....pth]

measures instead what bf16 Inception inference, and fp32 in the other memory format, do to the
features and to the FID.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from ganfast.bench.cases import environment, positive_int, write_jsonl
from ganfast.bench.timing import interleaved_ms, stop_if_requested
from ganfast.metrics import FeatureStats, FrechetReference, frechet_distance

SLOW_CALL_S = 2.0  # a call this slow (scipy's sqrtm at D=2048) is timed once after its warm-up


def timed_cases(cases: dict, repeats: int) -> dict:
    """{name: (median seconds over `repeats` calls after a warm-up, the value of its last call)}.
    The calls take turns (bench.timing.interleaved_ms): on a shared machine the load drifts, and
    timing each case over the same stretch keeps the ratios between them honest. A call slower
    than SLOW_CALL_S in its warm-up is timed once, on its own: its median would not move, and a
    time-limited run (the GPU check's stage) must not spend a minute on one baseline."""
    values, seconds, quick = {}, {}, {}
    for name, fn in cases.items():
        stop_if_requested()  # under `ganfast bench`, a SIGINT Python dropped (bench.timing)
        start = time.perf_counter()
        values[name] = fn()  # warm-up (thread pools, first-call allocations)
        if time.perf_counter() - start <= SLOW_CALL_S:
            quick[name] = fn
            continue
        stop_if_requested()
        start = time.perf_counter()
        values[name] = fn()
        seconds[name] = time.perf_counter() - start

    def keeping_value(name, fn):
        def call():
            values[name] = fn()
        return call

    if quick:
        ms = interleaved_ms({name: keeping_value(name, fn) for name, fn in quick.items()},
                            reps=repeats, warmup=0)
        seconds.update({name: ms[name] / 1e3 for name in quick})
    return {name: (seconds[name], values[name]) for name in cases}


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


def frechet_rows(dim: int, repeats: int, device=None) -> list[tuple[str, float, float]]:
    """ganfast's and torchmetrics' ways on `device` (default CPU), pytorch-fid's and
    torch-fidelity's on the host, as they run."""
    rng = np.random.default_rng(0)
    mu1, s1 = random_stats(rng, dim, 2 * dim)
    mu2, s2 = random_stats(rng, dim, 2 * dim)
    t = [torch.from_numpy(x).to(device) for x in (mu1, s1, mu2, s2)]
    cases = {"ganfast frechet_distance": lambda: frechet_distance(*t)}
    try:
        from pytorch_fid.fid_score import calculate_frechet_distance

        cases["pytorch-fid (scipy sqrtm)"] = lambda: calculate_frechet_distance(mu1, s1, mu2, s2)
    except ImportError:
        pass
    cases["numpy eigvals (torch-fidelity)"] = lambda: eigvals_numpy(mu1, s1, mu2, s2)
    cases["torch eigvals (torchmetrics)"] = lambda: eigvals_torch(*t)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        timings = timed_cases(cases, repeats)
    return [(name, seconds, float(value)) for name, (seconds, value) in timings.items()]


def small_batch_rows(dim: int, n: int, repeats: int, device=None) -> list[tuple[str, float, float]]:
    rng = np.random.default_rng(1)
    ref = FrechetReference(*[torch.from_numpy(x).to(device)
                             for x in random_stats(rng, dim, 2 * dim)])
    feats = torch.from_numpy(rng.standard_normal((n, dim))).to(device)
    name = f"FrechetReference.distance_to_features n={n}"
    [(seconds, value)] = timed_cases({name: lambda: ref.distance_to_features(feats)},
                                     repeats).values()
    return [(name, seconds, value)]


def stats_rows(n: int, dim: int, device: torch.device, repeats: int, chunk: int = 5000):
    """(name, seconds, trace of the covariance): the same N x D features three ways."""
    feats = torch.randn(n, dim, device=device) + 3.0
    host = feats.cpu().numpy()  # float32 on the host, as pytorch-fid collects them

    def ganfast_stats():
        stats = FeatureStats(dim, device=device)
        for start in range(0, n, chunk):
            stats.update(feats[start:start + chunk])
        return float(stats.covariance.trace())

    def numpy_cov():  # pytorch-fid: all features on the host, np.cov in float64
        return float(np.trace(np.cov(host, rowvar=False)))

    def raw_sums():  # torchmetrics: float64 sum and sum of outer products, uncentred
        x = feats.double()
        total, outer = x.sum(0), x.T @ x
        return float(((outer - torch.outer(total, total) / n) / (n - 1)).trace())

    cases = {"ganfast FeatureStats.update": ganfast_stats, "numpy float64 np.cov": numpy_cov,
             "float64 raw sums": raw_sums}
    return [(f"{name} N={n}", seconds, value)
            for name, (seconds, value) in timed_cases(cases, repeats).items()]


def timed_networks(calls: dict, device: torch.device, repeats: int) -> dict:
    """{name: (median seconds, the features)} of each network's call() without autograd, timed
    in turns (timed_cases), synchronised on CUDA so that the time is the network's."""
    def synchronised(call):
        @torch.no_grad()
        def features():
            out = call()
            if device.type == "cuda":
                torch.cuda.synchronize()
            return out
        return features

    return timed_cases({name: synchronised(call) for name, call in calls.items()}, repeats)


def inception_rows(batch: int, device: torch.device, repeats: int):
    from ganfast.metrics.inception import FIDInceptionV3

    images = torch.rand(batch, 3, 64, 64, device=device)
    nets = {precision: FIDInceptionV3(precision=precision).to(device)
            for precision in ("fp32", "bf16")}
    timings = timed_networks({precision: lambda net=net: net(images)
                              for precision, net in nets.items()}, device, repeats)
    return [(f"FID Inception {precision}, batch {batch}: {batch / seconds:.1f} images/s",
             seconds, float(features.mean()))
            for precision, (seconds, features) in timings.items()]


TORCH_FIDELITY = "torch-fidelity InceptionV3"


def inception_tf1_rows(batch: int, device: torch.device, repeats: int):
    """ganfast's network with TensorFlow 1's resize (resize="tf1") against torch-fidelity's
    FeatureExtractorInceptionV3, the pipeline it computes: the same random weights (loaded from
    a file, as torch-fidelity takes them: never downloaded), the same uint8 images [batch, 3,
    64, 64], fp32; and ganfast's network in the other memory format than the one it takes on
    this device (FIDInceptionV3.channels_last_devices), which tells whether to change it.
    ([(name, seconds, mean feature)], ganfast's first; the largest difference of its features
    from torch-fidelity's relative to their largest, None without torch-fidelity.)"""
    import os
    import tempfile

    from ganfast.metrics.inception import FIDInceptionV3

    # calibrated: features that follow the images (with default batch-norm statistics they
    # shrink layer by layer, and any two pipelines, or two image batches, look alike)
    state = random_inception().state_dict()
    ours, other_layout = FIDInceptionV3(resize="tf1"), FIDInceptionV3(resize="tf1")
    for net in (ours, other_layout):
        net.load_state_dict(state)
        net.to(device).eval()
    ours_channels_last = device.type in ours.channels_last_devices
    other_layout.channels_last_devices = () if ours_channels_last else (device.type,)
    images = torch.randint(0, 256, (batch, 3, 64, 64), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0)).to(device)
    nets = {"ganfast FIDInceptionV3, tf1 resize": lambda: ours(images.float() / 255),
            f"ganfast, {'NCHW' if ours_channels_last else 'channels_last'} instead":
                lambda: other_layout(images.float() / 255)}
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except ImportError:
        theirs = None
    else:
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "inception.pth")
            torch.save(state, path)
            theirs = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                                 feature_extractor_weights_path=path)
        theirs.to(device).eval()
        nets[TORCH_FIDELITY] = lambda: theirs(images)[0]
    timings = timed_networks(nets, device, repeats)
    rows = [(name, seconds, float(features.mean())) for name, (seconds, features) in timings.items()]
    if theirs is None:
        return rows, None
    ours_features, their_features = timings[next(iter(nets))][1], timings[TORCH_FIDELITY][1]
    difference = float((ours_features - their_features).abs().max() / their_features.abs().max())
    return rows, difference


def random_images(n: int, seed: int, smooth: bool) -> torch.Tensor:
    """n images [3, 32, 32] in [0, 1]: uniform noise, or noise blurred into blobs (a second,
    different distribution, so the FID between the two sets is far from 0)."""
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, 32, 32, generator=g)
    if smooth:
        images = torch.nn.functional.avg_pool2d(images, 5, stride=1, padding=2,
                                                count_include_pad=False)
        images = (images - 0.5) * 4 + 0.5
    return images.clamp(0, 1)


@torch.no_grad()
def random_inception(seed: int = 0, calibration: int = 16):
    """FIDInceptionV3 with random weights whose batch-norm statistics are taken from
    `calibration` random images, so activations keep a trained network's scale (with the
    default statistics they shrink to ~1e-8 by the last block)."""
    from ganfast.metrics.inception import FIDInceptionV3

    torch.manual_seed(seed)
    net = FIDInceptionV3()
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # running statistics = this batch's
    net.train()
    net(torch.cat([random_images(calibration // 2, seed + 1, smooth=False),
                   random_images(calibration - calibration // 2, seed + 2, smooth=True)]))
    return net.eval()


@torch.no_grad()
def precision_effect(n: int, device: torch.device, weights=None, batch: int = 16) -> list[str]:
    """What the faster ways of running the Inception network do to its features and to the FID
    between two sets of n random images: bf16 (channels_last, autocast) and fp32 in either
    memory format (FIDInceptionV3.channels_last_devices picks one per device), each against
    fp32 NCHW, the layout of pytorch-fid's network."""
    from ganfast.metrics import FeatureStats
    from ganfast.metrics.inception import FIDInceptionV3, fid_inception

    state = (fid_inception(weights) if weights else random_inception()).state_dict()
    sets = [random_images(n, 10, smooth=False), random_images(n, 11, smooth=True)]
    ways = {"fp32 NCHW": ("fp32", ()), "fp32 channels_last": ("fp32", (device.type,)),
            "bf16": ("bf16", ())}
    features, seconds = {}, {}
    for way, (precision, channels_last_devices) in ways.items():
        net = FIDInceptionV3(precision=precision)
        net.channels_last_devices = channels_last_devices
        net.load_state_dict(state)
        net.to(device)
        net(sets[0][:batch].to(device))  # warm-up: first-call costs would land on the first way
        start = time.perf_counter()
        features[way] = [torch.cat([net(part.to(device)).double().cpu()
                                    for part in images.split(batch)]) for images in sets]
        seconds[way] = time.perf_counter() - start
    fid = {}
    for way, (fa, fb) in features.items():
        a, b = FeatureStats(fa.shape[1]).update(fa), FeatureStats(fb.shape[1]).update(fb)
        fid[way] = frechet_distance(a.mean, a.covariance, b.mean, b.covariance)
    exact = torch.cat(features["fp32 NCHW"])
    spread = (exact - exact.mean(0)).norm()
    label = f"weights {weights}" if weights else "random weights (batch-norm statistics calibrated)"
    default = "channels_last" if device.type in FIDInceptionV3.channels_last_devices else "NCHW"
    lines = [f"Inception on {device.type} (fp32 default there: {default}), {label}, "
             f"2 x {n} random 32x32 images; FID fp32 NCHW {fid['fp32 NCHW']:.6g}, "
             f"{2 * n / seconds['fp32 NCHW']:.2f} images/s"]
    for way in ("fp32 channels_last", "bf16"):
        fast = torch.cat(features[way])
        lines += [
            f"  {way}: features |{way} - fp32 NCHW| / |fp32 NCHW| = "
            f"{float((fast - exact).norm() / exact.norm()):.3g}, / |fp32 - its mean| = "
            f"{float((fast - exact).norm() / spread):.3g}; FID {fid[way]:.6g}, relative "
            f"difference {abs(fid[way] - fid['fp32 NCHW']) / fid['fp32 NCHW']:.3g}; "
            f"{2 * n / seconds[way]:.2f} images/s"]
    return lines


# Result rows (ganfast bench --out): ganfast's figure (backend "ganfast", as train_step's
# rows: a metric, not a choice of kernels) against what users run today ("eager": pytorch-fid's
# function and numpy's float64 np.cov, on the host as they run), as the other ops' rows stand
# against the canonical code; the other ways timed go into the ganfast row's peer_ms.
BASELINES = {"frechet distance": "pytorch-fid (scipy sqrtm)", "stats update": "numpy float64 np.cov",
             "inception features, tf1 resize": TORCH_FIDELITY}


def result_rows(mode: str, shape: list, dtype: str, timed_rows, env: dict) -> list[dict]:
    """Rows in ganfast bench's format from the (name, seconds, value) of one mode, ganfast's
    first: median_ms, the value the call gave, the speedup against the baseline's row (written
    as skipped when its package is missing, so that it supersedes an older run's)."""
    base = dict(op="fid", mode=mode, shape=shape, dtype=dtype, **env)
    (_, seconds, value), *others = timed_rows
    ours = {**base, "backend": "ganfast", "median_ms": round(seconds * 1e3, 4), "value": value}
    baseline = BASELINES.get(mode)
    if baseline is None:
        return [ours]
    times = {name.split(" N=")[0]: t for name, t, _ in others}
    values = {name.split(" N=")[0]: v for name, _, v in others}
    ours["peer_ms"] = {name: round(t * 1e3, 4) for name, t in times.items() if name != baseline}
    if baseline not in times:
        return [ours, {**base, "backend": "eager", "skipped": f"{baseline}: not installed"}]
    eager_ms = round(times[baseline] * 1e3, 4)
    ours["speedup"] = round(eager_ms / ours["median_ms"], 3)
    return [ours, {**base, "backend": "eager", "median_ms": eager_ms, "value": values[baseline],
                   "speedup": 1.0}]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=positive_int, default=None,
                        help="features (default 2048; 256 with --quick)")
    parser.add_argument("--batch", type=positive_int, default=64)
    parser.add_argument("--repeats", type=positive_int, default=None,
                        help="timings of each case, the median kept (default 3; 1 with --quick)")
    parser.add_argument("--stats-n", type=positive_int, default=None,
                        help="features for the statistics rows (default 50000 on GPU, 10000 on "
                             "CPU, 2000 with --quick)")
    parser.add_argument("--device", choices=["cpu", "cuda"],
                        default="cuda" if torch.cuda.is_available() else "cpu",
                        help="default: cuda when available")
    parser.add_argument("--precision-effect", type=int, metavar="N", default=0,
                        help="only measure bf16 and fp32 channels_last against fp32 NCHW "
                             "Inception features and the FID between two sets of N random "
                             "images (random weights unless --weights)")
    parser.add_argument("--weights", help="with --precision-effect: the FID Inception weights")
    parser.add_argument("--part", choices=["all", "frechet", "stats", "inception"], default="all",
                        help="frechet: the Frechet distance and training-time FID rows only")
    parser.add_argument("--out", help="append the rows as JSON lines to this file (ganfast "
                                      "bench's format: ganfast against pytorch-fid / np.cov)")
    parser.add_argument("--quick", action="store_true",
                        help="a minute's check: the defaults above for --quick, the rows marked "
                             "as such")
    args = parser.parse_args(argv)
    if args.dim is None:
        args.dim = 256 if args.quick else 2048
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device here (use --device cpu)")
    device = torch.device(args.device)
    if args.precision_effect:
        print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
        print("\n".join(precision_effect(args.precision_effect, device, args.weights)))
        return
    stats_n = args.stats_n if args.stats_n is not None else (
        2000 if args.quick else 50000 if device.type == "cuda" else 10000)
    if stats_n < 2:
        parser.error(f"--stats-n takes at least 2 (a covariance), got {stats_n}")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, D={args.dim}")
    env = {**environment(device), **({"quick": True} if args.quick else {})}
    out = Path(args.out) if args.out else None
    # --out may hold earlier runs' rows: "appended" is said only if this run added some.
    size_before = out.stat().st_size if out is not None and out.is_file() else 0
    try:
        if args.part in ("all", "frechet"):
            rows = frechet_rows(args.dim, args.repeats, device)
            base, base_fid = rows[0][1], rows[0][2]
            for name, seconds, value in rows:
                print(f"{name:45s} {seconds * 1e3:10.1f} ms  {seconds / base:7.2f}x ganfast's time  "
                      f"FID {value:.9g} (relative to ganfast's: {abs(value - base_fid) / base_fid:.1e})")
            _save(out, result_rows("frechet distance", [args.dim], "float64", rows, env))
            rows = small_batch_rows(args.dim, args.batch, max(args.repeats, 10), device)
            for name, seconds, value in rows:
                print(f"{name:45s} {seconds * 1e3:10.1f} ms  FID {value:.9g}")
            _save(out, result_rows("frechet to a cached reference", [args.batch, args.dim],
                                   "float64", rows, env))
        if args.part in ("all", "stats"):
            rows = stats_rows(stats_n, args.dim, device, args.repeats)
            for name, seconds, value in rows:
                print(f"{name:45s} {seconds * 1e3:10.1f} ms  {seconds / rows[0][1]:7.2f}x ganfast's "
                      f"time  trace {value:.9g}")
            _save(out, result_rows("stats update", [stats_n, args.dim], "float32", rows, env))
        if args.part in ("all", "inception"):
            batch = 50 if device.type == "cuda" else 4
            for (name, seconds, value), dtype in zip(inception_rows(batch, device, args.repeats),
                                                     ("float32", "bfloat16"), strict=True):
                print(f"{name:45s} {seconds * 1e3:10.1f} ms")
                [row] = result_rows("inception features", [batch, 3, 64, 64], dtype,
                                    [(name, seconds, value)], env)
                _save(out, [{**row, "images_per_s": round(batch / seconds, 2)}])
            rows, difference = inception_tf1_rows(batch, device, args.repeats)
            for name, seconds, _ in rows:
                print(f"{name:45s} {seconds * 1e3:10.1f} ms  {batch / seconds:.1f} images/s  "
                      f"{seconds / rows[0][1]:7.2f}x ganfast's time")
            if difference is not None:
                print(f"  features differ by {difference:.1e} of the largest")
            rows = result_rows("inception features, tf1 resize", [batch, 3, 64, 64], "float32",
                               rows, env)
            rows[0]["features_max_rel_diff"] = difference
            _save(out, [{**row, "images_per_s": round(batch / row["median_ms"] * 1e3, 2)}
                        if "median_ms" in row else row for row in rows])
    finally:  # each part's rows are written as it ends: an interrupted run keeps them
        if out is not None and out.is_file() and out.stat().st_size > size_before:
            print(f"rows appended to {out}")


def _save(out: Path | None, rows: list[dict]) -> None:
    if out is not None:
        write_jsonl(rows, out)
    stop_if_requested()  # a SIGINT while the rows were written waited for them

if __name__ == "__main__":
    main()
