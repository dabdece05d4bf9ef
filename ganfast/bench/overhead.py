"""Host time per public call on tiny inputs: `ganfast bench --mode overhead`.

GAN tensors are small, so what a call costs on the host (Python, the dispatcher, launches)
decides whether a fused op wins in eager mode. Each case times a ganfast public call beside
the eager code it replaces, on inputs small enough that the device work is negligible: wall
time per call over many calls, best of several repetitions, synchronizing once per
repetition (so on a GPU the figure is the host's, as long as the device keeps up).
"""

import sys
import time

import torch
from tqdm import tqdm

from ..losses import gradient_penalty
from ..ops.gradient_penalty import interpolate, norm_penalty, per_sample_norm
from ..train.models import TinyCritic
from . import cases as bench_cases
from . import gradient_penalty as gp_cases
from . import timing as bench_timing
from .cases import environment

CALLS = 200
REPEATS = 7


def host_us(fn, device: torch.device, calls: int = CALLS, repeats: int = REPEATS) -> float:
    """Best-of-`repeats` microseconds per call of fn() over `calls` back-to-back calls."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(max(calls // 4, 5)):  # warm-up: caches, lazy imports, kernel compilation
        bench_timing.stop_if_requested()
        fn()
    sync()
    best = float("inf")
    for _ in range(repeats):
        bench_timing.stop_if_requested()
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        sync()
        best = min(best, (time.perf_counter() - start) / calls * 1e6)
    return best


def cases(device: torch.device, backends):
    """(case, shape, {name: fn}): "eager" is the canonical code, then each ganfast backend."""
    x = torch.randn(4, 3, 4, 4, device=device, requires_grad=True)
    real, fake = torch.randn(4, 3, 4, 4, device=device), torch.randn(4, 3, 4, 4, device=device)
    alpha = torch.rand(4, device=device)
    yield "per_sample_norm", x.shape, {
        "eager": lambda: x.flatten(1).norm(2, dim=1),
        **{b: (lambda b=b: per_sample_norm(x, backend=b)) for b in backends}}
    yield "interpolate", real.shape, {
        "eager": lambda: gp_cases.canonical_interp(real, fake, alpha),
        **{b: (lambda b=b: interpolate(real, fake, alpha, backend=b)) for b in backends}}
    yield "penalty fwd+bwd", x.shape, {
        "eager": lambda: torch.autograd.grad(gp_cases.canonical_penalty(x), x),
        **{b: (lambda b=b: torch.autograd.grad(norm_penalty(x, backend=b), x)) for b in backends}}
    for shape in ((4, 3, 8, 8), (16, 3, 32, 32)):
        yield "wgan-gp step", shape, _step_fns(shape, device, backends)


def _step_fns(shape, device, backends):
    critic = TinyCritic(shape[1]).to(device)
    real, fake = torch.randn(shape, device=device), torch.randn(shape, device=device)

    def step(penalty):
        critic.zero_grad(set_to_none=True)
        penalty().backward()

    return {"eager": lambda: step(lambda: gp_cases.canonical_wgan_gp(critic, real, fake)),
            **{b: (lambda b=b: step(lambda: gradient_penalty(critic, real, fake, backend=b)))
               for b in backends}}


def run(device: torch.device, backends, skip=lambda backend: "", quick: bool = False) -> list[dict]:
    """The gradient penalty's rows: one per (case, backend), speedup = eager us / this us
    (same run). quick: fewer calls per repetition (a smoke run; the figures are noisier)."""
    return timed_rows("gradient_penalty", list(cases(device, backends)), device, skip, quick)


def timed_rows(op: str, all_cases, device: torch.device, skip=lambda backend: "",
               quick: bool = False) -> list[dict]:
    """Rows of `op` for (case, shape, {name: fn}) cases whose first fn is "eager" (fp32).
    Interrupted (SIGINT), the rows timed so far, so that the caller prints and saves them."""
    calls, repeats = (CALLS // 10, 3) if quick else (CALLS, REPEATS)
    env = environment(device)
    rows = []
    bench_cases.last_run_interrupted = False
    try:
        for name, shape, fns in tqdm(all_cases, desc="bench overhead", unit="case", leave=False):
            eager_us = None
            for backend, fn in fns.items():
                row = {"op": op, "mode": "overhead", "case": name,
                       "shape": list(shape), "dtype": "float32", "backend": backend}
                reason = skip(backend) if backend != "eager" else ""
                if reason:
                    rows.append({**row, "skipped": reason, **env})
                    continue
                us = host_us(fn, device, calls, repeats)
                eager_us = eager_us or us
                rows.append({**row, "us_per_call": round(us, 2), "median_ms": round(us / 1e3, 5),
                             "gbps": None, "frac_of_copy": None,
                             "speedup": round(eager_us / us, 2), "speedup_vs_compile": None,
                             **env})
    except KeyboardInterrupt:
        bench_cases.take_interrupt()
        print(f"bench {op}: interrupted in the overhead cases; keeping the {len(rows)} overhead "
              "rows timed so far and those before them", file=sys.stderr)
    return rows
