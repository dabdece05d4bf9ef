"""Spectral-norm cases for `ganfast bench --op spectral_norm`, and the SNGAN-32 discriminator.

Each figure is measured side by side in one run: PyTorch's parametrization
(torch.nn.utils.parametrizations.spectral_norm, "pytorch"), torch.compile of it ("compile"),
and ganfast.nn.spectral_norm ("ganfast", the torch backend: the only one until the fused
kernels land). Modes:
  kernels   the normalization alone per layer size (weight access + backward), and the
            SNGAN-32 discriminator's forward+backward step;
  overhead  host time of one forward of a stack of N small SN layers, against N.
"""

import statistics
import time

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import parametrizations

from .. import nn as gnn
from .overhead import host_us
from .stock_gans import SNGANDiscriminator
from .timing import median_ms

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

def layer_cases(device, dtype, sizes=((128, 128, 3, 3), (128, 3, 3, 3), (1, 128), (512, 4608))):
    """Weight access + backward of one SN layer, per weight shape."""
    for shape in sizes:
        fns = {}
        for name, sn in SPECTRAL_NORMS.items():
            layer = nn.Module()
            layer.weight = nn.Parameter(torch.randn(shape, device=device, dtype=dtype))
            sn(layer)
            fns[name] = (lambda layer=layer: layer.weight.sum().backward())
        yield "normalize fwd+bwd", shape, fns


def overhead_fns(device, n_layers):
    """Forward of a stack of n tiny SN Linear layers, for each spectral norm."""
    x = torch.randn(2, 4, device=device)
    fns = {}
    for name, sn in SPECTRAL_NORMS.items():
        torch.manual_seed(0)
        stack = nn.Sequential(*[sn(nn.Linear(4, 4)) for _ in range(n_layers)]).to(device)
        fns[name] = (lambda stack=stack: stack(x))
    return fns


def run(device, mode="all", quick=False, with_compile=True):
    """Rows {case, shape, impl, ms or us, speedup vs pytorch}."""
    rows = []
    if mode in ("all", "kernels"):
        for case, shape, fns in layer_cases(device, torch.float32):
            rows += _side_by_side(case, shape, fns, _timer(device, reps=100), "ms")
        batch = 4 if device.type == "cpu" else 64
        real = torch.randn(batch, 3, 32, 32, device=device)
        fake = torch.randn(batch, 3, 32, 32, device=device)
        models = make_models(device, with_compile=with_compile)
        fns = {name: (lambda m=m: discriminator_step(m, real, fake)) for name, m in models.items()}
        if "compile" in fns:
            try:  # torch.compile of PyTorch's SN fails on D(real), D(fake), one backward
                fns["compile"]()
            except RuntimeError as err:
                print(f"compile: skipped, {str(err).splitlines()[0][:100]}")
                del fns["compile"]
        rows += _side_by_side("SNGAN-32 D step", (batch, 3, 32, 32), fns,
                              _timer(device, reps=10 if quick else 40), "ms")
    if mode in ("all", "overhead"):
        for n in (1, 4, 16) if quick else (1, 2, 4, 8, 16, 32):
            rows += _side_by_side("host us, N SN layers fwd", (n,), overhead_fns(device, n),
                                  lambda fns: {k: host_us(fn, device, calls=50 if quick else 200)
                                               for k, fn in fns.items()}, "us")
    return rows


def _timer(device, reps):
    """{name: fn} -> {name: median ms}: interleaved on CPU, device time per fn on CUDA."""
    if device.type == "cuda":
        return lambda fns: {name: median_ms(fn, device) for name, fn in fns.items()}
    return lambda fns: interleaved_ms(fns, reps=reps)


def interleaved_ms(fns, reps=30, warmup=3):
    """Median ms per fn, the fns called in turn: on a shared CPU the load drifts, and taking
    each figure over the same stretch of time keeps the ratios honest."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(t) for name, t in times.items()}


def _side_by_side(case, shape, fns, time_fn, unit):
    times = time_fn(fns)
    base = times["pytorch"]
    return [{"case": case, "shape": "x".join(map(str, shape)), "impl": name, unit: round(t, 4),
             "speedup": round(base / t, 3)} for name, t in times.items()]


def markdown_table(rows) -> str:
    lines = ["| case | shape | impl | time | speedup vs pytorch |", "|---|---|---|---|---|"]
    for r in rows:
        unit = "ms" if "ms" in r else "us"
        lines.append(f"| {r['case']} | {r['shape']} | {r['impl']} | {r[unit]} {unit} | "
                     f"{r['speedup']}x |")
    return "\n".join(lines)
