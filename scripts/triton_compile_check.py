#!/usr/bin/env python
"""Compile every Triton kernel of ganfast for real GPU targets, on a machine without a GPU.

    python scripts/triton_compile_check.py [--arch 80,89,90]
    python scripts/triton_compile_check.py --host-time   # the launchers' Python path, timed

The CPU tests run the kernels under TRITON_INTERPRET=1, which executes their Python semantics
with numpy and never compiles them: what only the compiler checks (a loop-carried value that
changes type, tl.dot's shape and dtype rules, pointer casts, the shared memory a pipelined
tl.dot needs) first shows on the GPU machine, whose time is scarce. Here each launcher is
called as its op calls it (every dtype it takes, the branches that pick another kernel or
constexpr, the benchmarked shapes, odd sizes and views), on CPU tensors, with a Triton driver
that stands for a GPU of each target: Triton compiles the kernel down to a cubin (ptxas
included) and does not launch it.

Prints one table row per compiled variant and target: dynamic shared memory, registers and
spill stack per thread (cuobjdump of the cubin). Exit status 1 when a variant fails to compile
or launches no kernel, a kernel needs more shared memory than its target gives one block, or a
kernel of ganfast.kernels (a @triton.jit function named *_kernel) was never launched: a new op
adds its variants function to VARIANTS. Registers and spills depend on the Triton version: the
GPU machine runs triton 3.6.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import torch

# Shared memory one block may use (the opt-in maximum), bytes, by compute capability (CUDA C++
# Programming Guide, "Technical Specifications per Compute Capability"). 80 and 90 are the
# targets ganfast's extension is built for; 89 stands for the GPUs with 99 KB (8.6, 8.9, 12.0).
MAX_SHARED = {80: 166912, 86: 101376, 89: 101376, 90: 232448, 100: 232448, 120: 101376}


class CompileOnlyDriver:
    """The part of a Triton driver that JITFunction.run reads before it launches: a current
    device and stream, and the target to compile for. The device number is the target's
    capability, so that each target gets its own cache of compiled kernels."""

    def __init__(self):
        self.capability = 90

    def is_active(self):
        return True

    def get_current_target(self):
        from triton.backends.compiler import GPUTarget
        return GPUTarget("cuda", self.capability, 32)

    def get_current_device(self):
        return self.capability

    def get_current_stream(self, device=None):
        return 0

    def get_active_torch_device(self):
        return torch.device("cpu")


def install_compile_only(compiled: list | None = None, launched: set | None = None):
    """Make every kernel launch compile and return instead (JITFunction.run's warmup mode),
    adding the kernel's name to `launched` and, once compiled, (name, compiled kernel,
    seconds) to `compiled`; with neither, no bookkeeping (for timing the launch path)."""
    from triton.runtime import driver
    from triton.runtime.jit import JITFunction

    fake = CompileOnlyDriver()
    driver.set_active(fake)
    run = JITFunction.run

    def compile_only(self, *args, grid, warmup, **kwargs):
        if compiled is None:
            return run(self, *args, grid=grid, warmup=True, **kwargs)
        launched.add(self.fn.__name__)
        start = time.perf_counter()
        kernel = run(self, *args, grid=grid, warmup=True, **kwargs)
        compiled.append((self.fn.__name__, kernel, time.perf_counter() - start))
        return kernel

    JITFunction.run = compile_only
    return fake


def resource_usage(cubin: bytes) -> tuple:
    """(registers, stack bytes) per thread of a cubin's kernel, read by Triton's cuobjdump.
    The stack holds what did not fit in registers (spills) and local arrays."""
    from triton import knobs

    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        listing = subprocess.run([knobs.nvidia.cuobjdump.path, "-res-usage", f.name],
                                 capture_output=True, text=True, check=True).stdout
    found = re.search(r"REG:(\d+) STACK:(\d+)", listing)
    if found is None:
        raise RuntimeError(f"cuobjdump -res-usage gave no REG/STACK line:\n{listing}")
    return int(found[1]), int(found[2])


# ------------------------------------------------------------------ the launches to compile
# Each variant: (label, launch). A launch calls a launcher with CPU tensors as its op would;
# the values are never read (empty tensors), but shapes are: Triton specializes an integer
# argument equal to 1 or divisible by 16, and a pointer aligned to 16 bytes, so the variants
# take the shapes that run (the benchmarked ones) besides odd sizes, batch 1 and views.

DTYPES_ALL = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def _name(dtype) -> str:
    return str(dtype).removeprefix("torch.")


def gradient_penalty_variants():
    from ganfast.kernels import gradient_penalty as gp

    from ganfast.ops.layout import acc_dtype

    shapes = {  # label: (shape, channels_last)
        "4x3x8x8 (one launch)": ((4, 3, 8, 8), False),
        "64x3x32x32 (one chunk per row)": ((64, 3, 32, 32), False),
        "1x3x64x64": ((1, 3, 64, 64), False),
        "5x3x7x7": ((5, 3, 7, 7), False),
        "2x3x128x128 channels_last": ((2, 3, 128, 128), True),
        "70000x1 (two grid slices)": ((gp.MAX_GRID_Y + 4465, 1), False),
    }
    for dtype in DTYPES_ALL:
        acc = acc_dtype(dtype)
        for label, (shape, channels_last) in shapes.items():
            def inputs(shape=shape, channels_last=channels_last, dtype=dtype, acc=acc):
                x = torch.empty(shape, dtype=dtype)
                if channels_last:
                    x = x.to(memory_format=torch.channels_last)
                return x, torch.empty(shape[0], dtype=acc)

            def interpolate(inputs=inputs):
                x, per_sample = inputs()
                gp.interpolate(x, torch.empty_like(x), per_sample)

            def norm_penalty(inputs=inputs):
                gp.norm_penalty(inputs()[0], 10.0, 1.0)

            def norm_backward(inputs=inputs):  # per_sample_norm's: a gradient per sample
                x, per_sample = inputs()
                gp.norm_backward(torch.empty_like(per_sample), x, per_sample, 0.0, 1.0)

            def penalty_backward(inputs=inputs):  # the penalty's: one gradient, broadcast
                x, per_sample = inputs()
                gp.norm_backward(per_sample[:1].expand(x.shape[0]), x, per_sample, 0.5, -1.0)

            for launch in (interpolate, norm_penalty, norm_backward, penalty_backward):
                yield f"{launch.__name__} {label} {_name(dtype)}", launch


def spectral_norm_variants():
    from ganfast.ops import spectral_norm as sn

    for dtype in DTYPES_ALL:
        # A conv (dim 0), a transposed conv (dim 1: read in place) and a linear layer.
        weights = [torch.randn(8, 3, 3, 3, dtype=dtype), torch.randn(6, 5, 4, 4, dtype=dtype),
                   torch.randn(5, 7, dtype=dtype)]
        dims = [0, 1, 0]
        plan = sn.GroupPlan(weights, dims, [1, 1, 0])
        us = [torch.randn(w.shape[d], dtype=dtype) for w, d in zip(weights, dims, strict=True)]
        vs = [torch.randn(w.numel() // w.shape[d], dtype=dtype)
              for w, d in zip(weights, dims, strict=True)]

        def forward_and_backward(plan=plan, weights=weights, us=us, vs=vs):
            out, work, sigma, meta = sn._launch("triton", plan, weights, us, vs, 1e-12)
            sn._launch_backward("triton", meta, torch.randn_like(out), out, work, sigma)

        yield f"normalize_group fwd+bwd {_name(dtype)}", forward_and_backward


def upsample_conv_variants():
    from ganfast.kernels import upsample_conv as up

    from ganfast.bench.upsample_conv import BLOCKS

    def launch(dtype, batch, cin, cout, h, w, layout="nchw", bias=True, activation=None,
               tf32=True):
        def call():
            if layout == "sliced":  # a view: strides of a bigger map, an unaligned start
                x = torch.empty(batch, cin, h + 1, w + 1, dtype=dtype)[:, :, 1:, 1:]
            else:
                x = torch.empty(batch, cin, h, w, dtype=dtype, memory_format=(
                    torch.channels_last if layout == "channels_last" else torch.contiguous_format))
            weight = torch.randn(cout, cin, 3, 3, dtype=dtype)
            b = torch.randn(cout, dtype=dtype) if bias else None
            before = torch.backends.cudnn.allow_tf32
            torch.backends.cudnn.allow_tf32 = tf32
            try:
                up.upsample_conv_forward(x, weight, b, activation, 0.2)
            finally:
                torch.backends.cudnn.allow_tf32 = before
        return call

    for dtype in up.DTYPES:
        name = _name(dtype)
        for block, (batch, _, cin, cout, h) in BLOCKS.items():  # as `ganfast bench` runs them
            for layout in ("nchw", "channels_last"):
                yield (f"upsample_conv {block} {layout} {name}",
                       launch(dtype, batch, cin, cout, h, h, layout))
        yield (f"upsample_conv 1x3x3x5->5, leaky_relu, sliced view {name}",
               launch(dtype, 1, 3, 5, 3, 5, "sliced", activation="leaky_relu"))
        yield (f"upsample_conv 2x20x5x7->20, no bias, relu {name}",
               launch(dtype, 2, 20, 20, 5, 7, bias=False, activation="relu"))
    batch, _, cin, cout, h = BLOCKS["sngan32-256-8"]
    yield ("upsample_conv sngan32-256-8 float32 without TF32",
           launch(torch.float32, batch, cin, cout, h, h, tf32=False))


VARIANTS: list[Callable] = [gradient_penalty_variants, spectral_norm_variants,
                            upsample_conv_variants]


def every_kernel() -> set:
    """Names of the kernels in ganfast.kernels' modules: the @triton.jit functions whose name
    ends in _kernel (the helpers they call are inlined, never launched), autotuned or not."""
    import importlib
    import pkgutil

    import ganfast.kernels
    from triton.runtime.jit import JITFunction

    names = set()
    for info in pkgutil.iter_modules(ganfast.kernels.__path__):
        module = importlib.import_module(f"ganfast.kernels.{info.name}")
        for value in vars(module).values():
            while not isinstance(value, JITFunction) and hasattr(value, "fn"):
                value = value.fn  # triton.autotune / triton.heuristics wrap the JITFunction
            if isinstance(value, JITFunction) and value.fn.__name__.endswith("_kernel"):
                names.add(value.fn.__name__)
    return names


def check(archs, variant_sources=VARIANTS, expected_kernels=None, out=sys.stdout) -> int:
    """Compile every variant for every target; print the table; 0 when all is well."""
    import triton

    compiled, launched = [], set()
    fake = install_compile_only(compiled, launched)
    problems, done, reused = [], set(), 0
    import ganfast.kernels

    print(f"triton {triton.__version__}, torch {torch.__version__}, kernels of "
          f"{os.path.dirname(ganfast.kernels.__file__)}\n", file=out)
    print("| target | variant | kernel | warps | stages | shared KB | registers | stack B "
          "| compile s |", file=out)
    print("|---|---|---|---|---|---|---|---|---|", file=out)
    for arch in archs:
        fake.capability = arch
        limit = MAX_SHARED[arch]
        for source in variant_sources:
            for label, launch in source():
                compiled.clear()
                try:
                    launch()
                except Exception as error:  # noqa: BLE001 - any compiler error is a finding
                    problems.append(f"sm_{arch} {label}: {type(error).__name__}: {error}")
                    print(f"| sm_{arch} | {label} | FAILED: {type(error).__name__} | | | | | | |",
                          file=out)
                    continue
                if not compiled:  # a launcher that returned early, a branch that moved
                    problems.append(f"sm_{arch} {label}: launched no kernel")
                for name, kernel, seconds in compiled:
                    if (arch, kernel.hash) in done:  # the same specialization as a row above
                        reused += 1
                        continue
                    done.add((arch, kernel.hash))
                    shared = kernel.metadata.shared
                    registers, stack = resource_usage(kernel.asm["cubin"])
                    print(f"| sm_{arch} | {label} | {name} | {kernel.metadata.num_warps} | "
                          f"{kernel.metadata.num_stages} | {shared / 1024:.1f} | {registers} | "
                          f"{stack} | {seconds:.2f} |", file=out)
                    if shared > limit:
                        problems.append(f"sm_{arch} {label}: {name} needs {shared} bytes of "
                                        f"shared memory, the target gives a block {limit}")
    expected = every_kernel() if expected_kernels is None else set(expected_kernels)
    if expected - launched:
        problems.append(f"never launched (add a variant): {sorted(expected - launched)}")
    print(f"\n{len(done)} kernels compiled ({reused} launches reused one of them)", file=out)
    for problem in problems:
        print(f"\nPROBLEM {problem}", file=out)
    if not problems:
        print(f"all variants compiled for sm_{', sm_'.join(map(str, archs))}", file=out)
    return 1 if problems else 0


def launcher_host_times(out=sys.stdout) -> None:
    """Host time of the launchers' Python path on tiny inputs, called directly (no op dispatch,
    no autograd): the launcher's checks and allocations, Triton's argument binding, cache key
    and cache hit. On CPU tensors: the CPU allocator, no device guard, a stub device and stream,
    and upsample-conv's weight-packing matmul computed here. Triton's launch metadata and C
    launcher, and the CUDA launch itself, need a GPU."""
    import timeit

    from ganfast.kernels import gradient_penalty as gp
    from ganfast.kernels import upsample_conv as up

    from ganfast.ops import spectral_norm as sn

    install_compile_only()
    x, per_sample = torch.randn(4, 3, 4, 4), torch.rand(4)
    weights = [torch.randn(8, 3, 3, 3), torch.randn(16, 8, 3, 3)]
    plan = sn.GroupPlan(weights, [0, 0], [1, 1])
    us = [torch.randn(8), torch.randn(16)]
    vs = [torch.randn(27), torch.randn(72)]
    conv_weight, bias = torch.randn(5, 3, 3, 3), torch.randn(5)
    launches = {
        "gradient_penalty.interpolate": lambda: gp.interpolate(x, x, per_sample),
        "gradient_penalty.norm_penalty": lambda: gp.norm_penalty(x, 10.0, 1.0),
        "gradient_penalty.norm_backward": lambda: gp.norm_backward(per_sample, x, per_sample,
                                                                   0.0, 1.0),
        "spectral_norm group forward (2 layers)": lambda: sn._launch("triton", plan, weights, us,
                                                                     vs, 1e-12),
        "upsample_conv_forward (with the weight's packing matmul)":
            lambda: up.upsample_conv_forward(x, conv_weight, bias, None, 0.2),
    }
    print("| launcher, tiny input | us per call, best of 5 x 2000 |\n|---|---|", file=out)
    for name, launch in launches.items():
        launch()  # compiled once here; then every call is a cache hit
        best = min(timeit.repeat(launch, number=2000, repeat=5)) / 2000
        print(f"| {name} | {best * 1e6:.1f} |", file=out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="80,89,90",
                        help="compute capabilities to compile for, comma-separated "
                             "(default: 80,89,90)")
    parser.add_argument("--host-time", action="store_true",
                        help="instead, time the launchers' Python path on tiny inputs "
                             "(compiling for sm_90 whatever --arch says)")
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET") == "1":
        parser.error("TRITON_INTERPRET=1 is set: the interpreter compiles nothing; unset it")
    try:
        archs = [int(a.strip().replace(".", "")) for a in args.arch.split(",") if a.strip()]
    except ValueError:
        parser.error(f"--arch takes compute capabilities such as 80,90; got {args.arch!r}")
    unknown = [a for a in archs if a not in MAX_SHARED]
    if unknown:
        parser.error(f"--arch: no shared-memory limit known for {unknown}; known: "
                     f"{', '.join(map(str, MAX_SHARED))}")
    if args.host_time:
        launcher_host_times()
        return 0
    return check(archs)


if __name__ == "__main__":
    sys.exit(main())
