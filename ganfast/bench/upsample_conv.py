"""Benchmark cases for the fused upsample + conv: ganfast's block beside the block users
run today (nn.Upsample(2, nearest) + Conv2d(3, padding=1)) and torch.compile of it.

Shapes are generator blocks [B, Cin, H, W] -> Cout (output [B, Cout, 2H, 2W]): DCGAN-64
(512->256 at 4, 256->128 at 8, 128->64 at 16, 64->64 at 32), SNGAN-32 (256->256 at 4, 8, 16)
and a BigGAN-128 block (256->128 at 64; batch 4 on CPU). Modes: fwd, bwd (graph kept),
fwd+bwd. Layouts: NCHW and channels_last (input and the conv's weight). Each row has the
effective TFLOP/s and the fraction of the machine's matrix throughput its form reached
(add_throughput). Backends: ganfast's
torch backend (on CPU the formulation ops.upsample_conv.cpu_route picks; on CUDA the folded
transposed conv through cuDNN) and, on CUDA, the triton backend (fused forward kernel,
backward through cuDNN). fwd+bwd rows also carry the block's activation memory
(activation_memory). `--mode overhead` times the public call's host cost on a tiny block
(overhead_cases).
"""

import functools

import torch

from ..ops import upsample_conv as ops
from ..ops.upsample_conv import upsample_conv2d, upsample_conv2d_unfused
from .cases import Case

BACKENDS = ("torch", "triton")
COLUMNS = ["mode", "block", "shape", "cout", "dtype", "layout", "backend", "form", "median_ms",
           "tflops", "frac_of_matrix", "speedup", "speedup_vs_compile", "saved_mb", "peak_mb"]
# Multiply-adds each formulation performs, as a fraction of the unfused conv's (module doc of
# ops/upsample_conv.py): 16 per 4 output pixels folded, 9 per source pixel as tap products,
# against 36; forward and both gradients alike.
PERFORMED_FRACTION = {"unfused": 1.0, "folded": 4 / 9, "taps": 1 / 4}
PASSES = {"fwd": 1, "bwd": 2, "fwd+bwd": 3}  # bwd: the input's and the weight's gradients


def backends_for(device) -> tuple:
    """ganfast backends to measure: torch everywhere, triton on CUDA (when triton imports)."""
    from .. import backends

    return tuple(b for b in BACKENDS if not backends.unavailable_reason(b, device))

# name: (batch on CUDA, batch on CPU, Cin, Cout, H)
BLOCKS = {
    "dcgan64-512-4": (64, 16, 512, 256, 4),
    "dcgan64-256-8": (64, 16, 256, 128, 8),
    "dcgan64-128-16": (64, 16, 128, 64, 16),
    "dcgan64-64-32": (64, 16, 64, 64, 32),
    "sngan32-256-4": (64, 16, 256, 256, 4),
    "sngan32-256-8": (64, 16, 256, 256, 8),
    "sngan32-256-16": (64, 16, 256, 256, 16),
    "biggan128-256-64": (32, 4, 256, 128, 64),
}


def unfused_flops(batch, cin, cout, h, w) -> int:
    """Multiply-adds x 2 of the unfused conv (9 taps on the 2H x 2W grid): the work the block
    stands for. The folded form does 4/9 of it, so its TFLOP/s on this count is 'effective'."""
    return 2 * batch * cout * cin * 9 * (2 * h) * (2 * w)


def form_of(row: dict, device: torch.device) -> str:
    """The formulation a row's backend ran: the unfused pair for eager and torch.compile, on CPU
    the torch backend's cpu_route pick, the folded form otherwise (cuDNN or the Triton kernel)."""
    if row["backend"] in ("eager", "compile"):
        return "unfused"
    if row["backend"] == "torch" and device.type == "cpu":
        layout = torch.channels_last if row["layout"] == "channels_last" else torch.contiguous_format
        x = torch.empty(row["shape"], device="meta").to(memory_format=layout)
        return ops.cpu_route(x, torch.empty(row["cout"], row["shape"][1], 3, 3, device="meta"))
    return "folded"


def add_throughput(rows: list, device: torch.device, matrix_tflops) -> None:
    """tflops: the unfused conv's FLOPs over the time (effective: comparable across forms);
    frac_of_matrix: the FLOPs the row's form performed over the time, as a fraction of the
    machine's measured matrix throughput in its dtype (matrix_tflops(dtype name), kept in
    matrix_tflops)."""
    for row in rows:
        if not row.get("median_ms"):
            continue
        row["tflops"] = round(PASSES[row["mode"]] * row["gflop"] / row["median_ms"], 4)
        row["form"] = form_of(row, device)
        peak = matrix_tflops(row["dtype"])
        row["matrix_tflops"] = round(peak, 3)
        row["frac_of_matrix"] = round(row["tflops"] * PERFORMED_FRACTION[row["form"]] / peak, 3)


def cases(blocks, dtypes, device, layouts, backends, with_compile=True):
    for name in blocks:
        for dtype in dtypes:
            for layout in layouts:
                yield from _group_cases(name, dtype, layout, device, backends, with_compile)


def _group_cases(name, dtype, layout, device, backends, with_compile):
    gpu_batch, cpu_batch, cin, cout, h = BLOCKS[name]
    batch = gpu_batch if device.type == "cuda" else cpu_batch
    memory_format = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    x = torch.randn(batch, cin, h, h, device=device, dtype=dtype)
    x = x.to(memory_format=memory_format).requires_grad_(True)
    weight = (torch.randn(cout, cin, 3, 3, device=device, dtype=dtype) / (3 * cin**0.5))
    weight = weight.to(memory_format=memory_format).requires_grad_(True)
    bias = torch.randn(cout, device=device, dtype=dtype, requires_grad=True)
    grad_out = torch.randn(batch, cout, 2 * h, 2 * h, device=device, dtype=dtype)
    grad_out = grad_out.to(memory_format=memory_format)
    key = dict(shape=[batch, cin, h, h], cout=cout, block=name,
               dtype=str(dtype).removeprefix("torch."), layout=layout,
               gflop=round(unfused_flops(batch, cin, cout, h, h) / 1e9, 3))
    impls = {"eager": upsample_conv2d_unfused}
    if with_compile:
        impls["compile"] = torch.compile(upsample_conv2d_unfused)
    for b in backends:
        impls[b] = lambda x, w, bias, b=b: upsample_conv2d(x, w, bias, backend=b)
    inputs = (x, weight, bias)

    for impl, fn in impls.items():
        yield Case("fwd", key, impl, lambda fn=fn: fn(*inputs), None)
    for impl, fn in impls.items():
        if impl != "compile":  # a compiled backward cannot be replayed with retain_graph
            yield Case("bwd", key, impl, _backward_only(fn, inputs, grad_out), None)
    for impl, fn in impls.items():
        yield Case("fwd+bwd", key, impl,
                   lambda fn=fn: torch.autograd.grad(fn(*inputs), inputs, grad_out), None,
                   extra=activation_memory(fn, inputs, grad_out))


OVERHEAD_SHAPE = (2, 8, 4, 4)  # -> 8 channels: the device work is negligible beside the host's


def overhead_cases(device, backends):
    """(case, shape, {name: fn}) for `--mode overhead` (bench/overhead.py): the public call on
    a tiny block beside the unfused pair, forward and forward+backward (fp32, NCHW, with bias).
    On CPU such a block takes the unfused route, so the difference is the public call's own
    cost: argument checks, backend resolution and the route rule."""
    x = torch.randn(OVERHEAD_SHAPE, device=device, requires_grad=True)
    channels = OVERHEAD_SHAPE[1]
    weight = torch.randn(channels, channels, 3, 3, device=device, requires_grad=True)
    bias = torch.randn(channels, device=device, requires_grad=True)
    inputs = (x, weight, bias)
    grad_out = torch.randn(OVERHEAD_SHAPE[0], channels, 2 * OVERHEAD_SHAPE[2],
                           2 * OVERHEAD_SHAPE[3], device=device)
    impls = {"eager": upsample_conv2d_unfused,
             **{b: functools.partial(upsample_conv2d, backend=b) for b in backends}}
    yield "fwd", x.shape, {name: (lambda fn=fn: fn(*inputs)) for name, fn in impls.items()}
    yield "fwd+bwd", x.shape, {
        name: (lambda fn=fn: torch.autograd.grad(fn(*inputs), inputs, grad_out))
        for name, fn in impls.items()}


def activation_memory(fn, inputs, grad_out) -> dict:
    """saved_mb: what autograd keeps from the forward for the backward beyond the block's own
    inputs (x, weight, bias): activations, and weight-sized tensors such as a folded weight;
    the memory a generator holds per block until its backward.
    peak_mb (CUDA): the allocator's peak over one forward+backward above what was allocated
    before it (None on CPU, which has no allocator statistics)."""
    inputs_storage = {t.untyped_storage().data_ptr() for t in inputs}
    saved = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in inputs_storage:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn(*inputs)
    del out
    peak = None
    device = grad_out.device
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        torch.autograd.grad(fn(*inputs), inputs, grad_out)
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - before
    return {"saved_mb": round(sum(saved.values()) / 2**20, 3),
            "peak_mb": round(peak / 2**20, 3) if peak is not None else None}


def _backward_only(fn, inputs, grad_out):
    graph = {}  # built on the first (warm-up) call

    def backward():
        if "out" not in graph:
            graph["out"] = fn(*inputs)
        return torch.autograd.grad(graph["out"], inputs, grad_out, retain_graph=True)

    return backward
