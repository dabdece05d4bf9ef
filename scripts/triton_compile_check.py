#!/usr/bin/env python
"""Compile every Triton kernel of ganfast for real GPU targets, on a machine without a GPU.

    python scripts/triton_compile_check.py [--arch 80,89,90]

The CPU tests run the kernels under TRITON_INTERPRET=1, which executes their Python semantics
with numpy and never compiles them: what only the compiler checks (a loop-carried value that
changes type, tl.dot's shape and dtype rules, pointer casts, the shared memory a pipelined
tl.dot needs) first shows on the GPU machine, whose time is scarce. Here each launcher is
called as its op calls it (every dtype it takes, the branches that pick another kernel or
constexpr, the block sizes of the benchmarked shapes), on CPU tensors, with a Triton driver
that stands for a GPU of each target: Triton compiles the kernel down to a cubin (ptxas
included) and does not launch it.

Prints one table row per compiled variant and target: dynamic shared memory, registers and
spill stack per thread (cuobjdump of the cubin). Exit status 1 when a variant fails to compile,
needs more shared memory than its target gives one block, or a kernel of ganfast.kernels was
never launched (a new kernel without a variant here).
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


def install_compile_only(compiled: list, launched: set) -> CompileOnlyDriver:
    """Make every kernel launch compile and return instead (JITFunction.run's warmup mode),
    adding the kernel's name to `launched` and, once compiled, (name, compiled kernel,
    seconds) to `compiled`."""
    from triton.runtime import driver
    from triton.runtime.jit import JITFunction

    fake = CompileOnlyDriver()
    driver.set_active(fake)
    run = JITFunction.run

    def compile_only(self, *args, grid, warmup, **kwargs):
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
# only dtypes, layouts and the branches matter, the values are never read.

DTYPES_ALL = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def _acc(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def gradient_penalty_variants():
    from ganfast.kernels import gradient_penalty as gp

    for dtype in DTYPES_ALL:
        name = str(dtype).removeprefix("torch.")
        small = torch.randn(4, 3, 8, 8, dtype=dtype)
        large = torch.randn(2, 3, 128, 128, dtype=dtype)  # rows past SMALL_ROW: two launches
        acc = _acc(dtype)
        yield f"interpolate {name}", lambda x=small, a=acc: gp.interpolate(
            x, x.clone(), torch.rand(x.shape[0], dtype=a))
        yield f"norm_penalty one launch {name}", lambda x=small: gp.norm_penalty(x, 10.0, 1.0)
        yield f"norm_penalty two launches {name}", lambda x=large: gp.norm_penalty(x, 10.0, 1.0)
        yield f"norm_backward broadcast grad {name}", lambda x=small, a=acc: gp.norm_backward(
            torch.ones((), dtype=a).expand(x.shape[0]), x, torch.rand(x.shape[0], dtype=a),
            0.5, -1.0)
        yield f"norm_backward channels_last {name}", lambda x=large, a=acc: gp.norm_backward(
            torch.rand(x.shape[0], dtype=a), x.to(memory_format=torch.channels_last),
            torch.rand(x.shape[0], dtype=a), 0.0, 1.0)


def spectral_norm_variants():
    from ganfast.ops import spectral_norm as sn

    for dtype in DTYPES_ALL:
        name = str(dtype).removeprefix("torch.")
        # A conv (dim 0), a transposed conv (dim 1: read in place) and a linear layer.
        weights = [torch.randn(8, 3, 3, 3, dtype=dtype), torch.randn(6, 5, 4, 4, dtype=dtype),
                   torch.randn(5, 7, dtype=dtype)]
        dims = [0, 1, 0]
        plan = sn.GroupPlan(weights, dims, [1, 1, 0])
        us = [torch.randn(w.shape[d], dtype=dtype) for w, d in zip(weights, dims, strict=True)]
        vs = [torch.randn(w.numel() // w.shape[d], dtype=dtype) for w, d in zip(weights, dims, strict=True)]

        def forward_and_backward(plan=plan, weights=weights, us=us, vs=vs):
            out, work, sigma, meta = sn._launch("triton", plan, weights, us, vs, 1e-12)
            sn._launch_backward("triton", meta, torch.randn_like(out), out, work, sigma)

        yield f"normalize_group fwd+bwd {name}", forward_and_backward


def upsample_conv_variants():
    from ganfast.kernels import upsample_conv as up

    from ganfast.bench.upsample_conv import BLOCKS

    channels = sorted({(cin, cout) for _, _, cin, cout, _ in BLOCKS.values()}, reverse=True)

    def launch(dtype, cin, cout, channels_last=False, bias=True, activation="leaky_relu",
               tf32=True):
        def call():
            x = torch.randn(2, cin, 3, 5, dtype=dtype)
            if channels_last:
                x = x.to(memory_format=torch.channels_last)
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
        name = str(dtype).removeprefix("torch.")
        for cin, cout in channels:  # the benchmarked generator blocks' block sizes
            yield f"upsample_conv {cin}->{cout} {name}", launch(dtype, cin, cout)
        cin, cout = channels[0]
        yield (f"upsample_conv {cin}->{cout} channels_last {name}",
               launch(dtype, cin, cout, channels_last=True))
        yield f"upsample_conv 3->5 no bias, relu {name}", launch(dtype, 3, 5, bias=False,
                                                                 activation="relu")
        yield f"upsample_conv 3->5 no activation {name}", launch(dtype, 3, 5, activation=None)
    cin, cout = channels[0]
    yield f"upsample_conv {cin}->{cout} float32 without TF32", launch(torch.float32, cin, cout,
                                                                       tf32=False)


VARIANTS: list[Callable] = [gradient_penalty_variants, spectral_norm_variants,
                            upsample_conv_variants]


def every_kernel() -> set:
    """Names of the @triton.jit kernels in ganfast.kernels' modules."""
    from ganfast.kernels import gradient_penalty, spectral_norm, upsample_conv
    from triton.runtime.jit import JITFunction

    return {value.fn.__name__ for module in (gradient_penalty, spectral_norm, upsample_conv)
            for value in vars(module).values()
            if isinstance(value, JITFunction) and value.fn.__name__.endswith("_kernel")}


def check(archs, variant_sources=VARIANTS, expected_kernels=None, out=sys.stdout) -> int:
    """Compile every variant for every target; print the table; 0 when all is well."""
    import triton

    compiled, launched = [], set()
    fake = install_compile_only(compiled, launched)
    problems, done, reused = [], set(), 0
    print(f"triton {triton.__version__}, torch {torch.__version__}\n", file=out)
    print("| target | variant | kernel | warps | stages | shared KB | registers | stack B "
          "| compile s |", file=out)
    print("|---|---|---|---|---|---|---|---|---|", file=out)
    for arch in archs:
        fake.capability = arch
        limit = MAX_SHARED.get(arch)
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
                    if limit is not None and shared > limit:
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="80,89,90",
                        help="compute capabilities to compile for, comma-separated "
                             "(default: 80,89,90)")
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET") == "1":
        parser.error("TRITON_INTERPRET=1 is set: the interpreter compiles nothing; unset it")
    try:
        archs = [int(a.strip().replace(".", "")) for a in args.arch.split(",") if a.strip()]
    except ValueError:
        parser.error(f"--arch takes compute capabilities such as 80,90; got {args.arch!r}")
    return check(archs)


if __name__ == "__main__":
    sys.exit(main())
