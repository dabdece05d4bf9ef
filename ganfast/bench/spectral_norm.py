"""Spectral-norm cases for `ganfast bench --op spectral_norm`, and the SNGAN-32 discriminator.

Each figure is measured side by side in one run: PyTorch's parametrization
(torch.nn.utils.parametrizations.spectral_norm, "pytorch"), torch.compile of it ("compile"),
ganfast.nn.spectral_norm ("ganfast": PyTorch's semantics, every access normalizes), and
ganfast.nn.SpectralNormGroup ("ganfast once()": all layers normalized once per step, in one
host call; "... triton", "... cuda": in one launch, on CUDA); on CUDA also the per-layer fused
routes ("ganfast triton", "ganfast cuda": PyTorch's semantics, one launch per access). Modes:
  kernels   the normalization alone per layer size (weight access + backward), all layers of
            the SNGAN-32 discriminator, and its forward+backward step;
            With compile (not --no-compile): seconds that torch.compile takes for the first
            forward+backward of the discriminator with each spectral norm.
  overhead  host time of one forward of a stack of N small SN layers, against N.
"""

import sys
import time

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import parametrizations
from tqdm import tqdm

from .. import backends
from .. import nn as gnn
from .._errors import error_line
from . import cases as bench_cases
from .overhead import host_us
from .stock_gans import SNGANDiscriminator
from .timing import interleaved_ms, median_ms

SPECTRAL_NORMS = {"pytorch": parametrizations.spectral_norm, "ganfast": gnn.spectral_norm}


# ---------------------------------------------------------------- SNGAN-32 discriminator

def SNGANDiscriminator32(spectral_norm=gnn.spectral_norm, channels=128):  # noqa: N802
    """The SNGAN ResNet-32 discriminator (Miyato et al. 2018) under the given spectral norm."""
    return SNGANDiscriminator(width=channels, spectral_norm=spectral_norm)


def discriminator_step(model, real, fake):
    """One hinge-loss D step's forward+backward (D called twice, one backward)."""
    model.zero_grad(set_to_none=True)
    loss = F.relu(1 - model(real)).mean() + F.relu(1 + model(fake)).mean()
    loss.backward()


def make_models(device, dtype=torch.float32, with_compile=True, seed=0):
    """{name: model}: the same SNGAN-32 D (same weights, same u/v) under each spectral norm;
    "compile" is torch.compile of a PyTorch-SN copy."""
    def build(sn):
        torch.manual_seed(seed)
        return SNGANDiscriminator32(sn).to(device, dtype)

    models = {name: build(sn) for name, sn in SPECTRAL_NORMS.items()}
    if with_compile:
        models["compile"] = torch.compile(build(parametrizations.spectral_norm))
    return models


# ---------------------------------------------------------------- cases

LAYER_SIZES = ((128, 128, 3, 3), (128, 3, 3, 3), (1, 128), (512, 4608))


def layer_cases(device, dtype, sizes=LAYER_SIZES):
    """Weight access + backward of one SN layer, per weight shape."""
    for shape in sizes:
        fns = {}
        for name, sn in SPECTRAL_NORMS.items():
            layer = nn.Module()
            layer.weight = nn.Parameter(torch.randn(shape, device=device, dtype=dtype))
            sn(layer)
            fns[name] = (lambda layer=layer: layer.weight.sum().backward())
        yield "normalize fwd+bwd", shape, fns


def fused_backends(device):
    """The fused backends that can run on `device` (on CUDA: triton, cuda when built)."""
    return [name for name in ("triton", "cuda") if not backends.unavailable_reason(name, device)]


def group_backends(device):
    """SpectralNormGroup backends to measure: torch everywhere, the fused ones on CUDA."""
    return {"ganfast once()": "torch",
            **{f"ganfast once() {name}": name for name in fused_backends(device)}}


def with_backend(name, fn):
    """fn run with ganfast's global backend set to `name` (the per-layer route's choice), the
    setting before it restored after."""
    def run():
        with backends.backend_scope(name):
            return fn()
    return run


def whole_model_fns(device, dtype=torch.float32):
    """Every SN weight of an SNGAN-32 D normalized, then its backward (no convolutions)."""
    fns = {}
    for name, model in make_models(device, dtype, with_compile=False).items():
        originals = [m.parametrizations.weight.original for m in _sn_layers(model)]
        fns[name] = (lambda model=model: _backward_ones([m.weight for m in _sn_layers(model)]))
    for name, backend in group_backends(device).items():
        group = gnn.SpectralNormGroup(make_models(device, dtype, with_compile=False)["ganfast"],
                                      backend=backend)
        fns[name] = (lambda group=group: _backward_ones(group.normalize()))
    return fns, sum(o.numel() for o in originals)


def _sn_layers(model):
    return [m for m in model.modules() if hasattr(m, "parametrizations")]


def _backward_ones(weights):
    torch.autograd.backward(weights, [torch.ones_like(w) for w in weights])


def discriminator_step_once(model, group, real, fake):
    """discriminator_step with both calls inside one SpectralNormGroup block."""
    model.zero_grad(set_to_none=True)
    with group.once():
        loss = F.relu(1 - model(real)).mean() + F.relu(1 + model(fake)).mean()
    loss.backward()


def overhead_fns(device, n_layers):
    """Forward of a stack of n tiny SN Linear layers, for each spectral norm (for the groups:
    the block's normalization of all layers, then the forward)."""
    x = torch.randn(2, 4, device=device)
    fns = {}
    for name, sn in SPECTRAL_NORMS.items():
        torch.manual_seed(0)
        stack = nn.Sequential(*[sn(nn.Linear(4, 4)) for _ in range(n_layers)]).to(device)
        fns[name] = (lambda stack=stack: stack(x))
    for name, backend in group_backends(device).items():
        torch.manual_seed(0)
        stack = nn.Sequential(*[gnn.spectral_norm(nn.Linear(4, 4)) for _ in range(n_layers)])
        group = gnn.SpectralNormGroup(stack.to(device), backend=backend)
        fns[name] = (lambda stack=stack, group=group: _forward_once(stack, group, x))
    return fns


def _forward_once(model, group, x):
    with group.once():
        return model(x)


def run(device, mode="all", quick=False, with_compile=True):
    """Rows {case, shape, impl, ms or us, speedup vs pytorch}; interrupted (SIGINT), the rows
    of the cases already timed."""
    rows = []
    bench_cases.last_run_interrupted = False
    # The "ganfast" rows are the per-access parametrization on its torch route, as they are
    # reported; the fused routes have rows of their own (with_backend). Under "auto" a GPU
    # would run whatever the shipped table ranks first, and feed that ranking back into it.
    try:
        with backends.backend_scope("torch"):
            _run_into(rows, device, mode, quick, with_compile)
    except KeyboardInterrupt:
        bench_cases.take_interrupt()
        print(f"bench spectral_norm: interrupted; keeping the {len(rows)} rows timed so far",
              file=sys.stderr)
    return rows


def _run_into(rows, device, mode, quick, with_compile):
    kernels, overhead = mode in ("all", "kernels"), mode in ("all", "overhead")
    layer_counts = (1, 4, 16) if quick else (1, 2, 4, 8, 16, 32)
    total = kernels * (len(LAYER_SIZES) + 2 + with_compile) + overhead * len(layer_counts)
    with tqdm(total=total, desc="bench spectral_norm", unit="case", leave=False) as progress:
        def side_by_side(case, shape, fns, time_fn, unit):
            progress.set_postfix_str(f"{case} {'x'.join(map(str, shape))}")
            rows.extend(_side_by_side(case, shape, fns, time_fn, unit))
            progress.update()

        _run_cases(side_by_side, device, kernels, overhead, layer_counts, quick, with_compile)


def _run_cases(side_by_side, device, kernels, overhead, layer_counts, quick, with_compile):
    if kernels:
        for case, shape, fns in layer_cases(device, torch.float32):
            side_by_side(case, shape, fns, _timer(device, reps=100), "ms")
        fns, numel = whole_model_fns(device)
        side_by_side("SNGAN-32 D, all SN layers fwd+bwd", (numel,), fns,
                     _timer(device, reps=20 if quick else 60), "ms")
        batch = 4 if device.type == "cpu" else 64
        real = torch.randn(batch, 3, 32, 32, device=device)
        fake = torch.randn(batch, 3, 32, 32, device=device)
        models = make_models(device, with_compile=with_compile)
        fns = {name: (lambda m=m: discriminator_step(m, real, fake)) for name, m in models.items()}
        for name in fused_backends(device):
            model = make_models(device, with_compile=False)["ganfast"]
            fns[f"ganfast {name}"] = with_backend(name, lambda m=model: discriminator_step(m, real, fake))
        for name, backend in group_backends(device).items():
            model = make_models(device, with_compile=False)["ganfast"]
            group = gnn.SpectralNormGroup(model, backend=backend)
            fns[name] = (lambda m=model, g=group: discriminator_step_once(m, g, real, fake))
        if "compile" in fns:
            try:  # torch.compile of PyTorch's SN fails on D(real), D(fake), one backward
                fns["compile"]()
            except RuntimeError as err:
                print(f"compile: skipped, {error_line(err, 100)}")
                del fns["compile"]
        side_by_side("SNGAN-32 D step", (batch, 3, 32, 32), fns,
                     _timer(device, reps=10 if quick else 40), "ms")
        if with_compile:
            side_by_side("torch.compile time, SNGAN-32 D fwd+bwd", (batch, 3, 32, 32),
                         compile_fns(device, real), first_call_seconds, "s")
    if overhead:
        for n in layer_counts:
            side_by_side("host us, N SN layers fwd", (n,), overhead_fns(device, n),
                         lambda fns: {k: host_us(fn, device, calls=50 if quick else 200)
                                      for k, fn in fns.items()}, "us")


def compile_fns(device, x):
    """{name: fn}: torch.compile of a fresh SNGAN-32 D under each spectral norm, one forward
    (a single use: PyTorch's fails on two) and backward. The first call is what compiles."""
    fns = {}
    for name, sn in SPECTRAL_NORMS.items():
        torch.manual_seed(0)
        compiled = torch.compile(SNGANDiscriminator32(sn).to(device))
        fns[name] = (lambda m=compiled: m(x).mean().backward())
    return fns


def first_call_seconds(fns):
    """{name: seconds of the first call}: a cold compile each, after a dynamo reset and with
    inductor's caches off (a graph found in the on-disk cache from an earlier run would take a
    fraction of the time, and only for whichever model happened to be cached)."""
    import torch._inductor.config

    seconds = {}
    with torch._inductor.config.patch(force_disable_caches=True):
        for name, fn in fns.items():
            torch._dynamo.reset()
            start = time.perf_counter()
            fn()
            seconds[name] = time.perf_counter() - start
    return seconds


def _timer(device, reps):
    """{name: fn} -> {name: median ms}: interleaved on CPU, device time per fn on CUDA."""
    if device.type == "cuda":
        return lambda fns: {name: median_ms(fn, device) for name, fn in fns.items()}
    return lambda fns: interleaved_ms(fns, reps=reps)


def _side_by_side(case, shape, fns, time_fn, unit):
    times = time_fn(fns)
    base = times["pytorch"]
    return [{"case": case, "shape": "x".join(map(str, shape)), "impl": name, unit: round(t, 4),
             "speedup": round(base / t, 3)} for name, t in times.items()]


def report_backend(impl: str) -> str:
    """An impl name in the report's vocabulary (ganfast/bench/report.py): PyTorch's spectral
    norm is the "eager" baseline; ganfast's routes are backends, "torch" for the per-access
    parametrization, "<backend> once()" for SpectralNormGroup."""
    if impl in ("pytorch", "compile"):
        return "eager" if impl == "pytorch" else impl
    route = impl.removeprefix("ganfast").strip()  # "", "once()", "triton", "once() cuda", ...
    name = route.removeprefix("once()").strip() or "torch"
    return f"{name} once()" if route.startswith("once()") else name


def report_rows(rows, dtype=torch.float32) -> list[dict]:
    """The rows in `ganfast bench --report`'s format: mode (fwd+bwd, overhead, or compile time),
    backend, shape list, median_ms (compile seconds as ms) or us_per_call for host-time rows;
    the original fields kept."""
    out = []
    for row in rows:
        report = {**row, "backend": report_backend(row["impl"]),
                  "dtype": str(dtype).removeprefix("torch."),
                  "shape": [int(n) for n in row["shape"].split("x")]}
        if "us" in row:
            report.update(mode="overhead", us_per_call=row["us"])
        elif "s" in row:  # seconds torch.compile takes: a ratio of compile times, not of steps
            report.update(mode="compile time", median_ms=row["s"] * 1e3)
        else:
            report.update(mode="fwd+bwd", median_ms=row["ms"])
        out.append(report)
    return out


def markdown_table(rows) -> str:
    lines = ["| case | shape | impl | time | speedup vs pytorch |", "|---|---|---|---|---|"]
    for r in rows:
        unit = next(u for u in ("ms", "us", "s") if u in r)
        lines.append(f"| {r['case']} | {r['shape']} | {r['impl']} | {r[unit]} {unit} | "
                     f"{r['speedup']}x |")
    return "\n".join(lines)
