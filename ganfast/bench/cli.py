"""`ganfast bench`: the command line of the benchmarks and of the report made from their rows."""

import argparse
import functools
import importlib.util
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import torch

from .cases import positive_int

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# (GPU, CPU) shapes: a DCGAN-64 batch, then feature-map gradients large enough to be
# bandwidth-bound on a GPU; the CPU set stays small so a laptop run takes seconds.
GP_SHAPES = {
    "cuda": [(64, 3, 64, 64), (256, 128, 32, 32), (64, 256, 64, 64)],
    "cpu": [(16, 3, 64, 64), (8, 64, 32, 32)],
}


DEFAULT_OP = "gradient_penalty"

DESCRIPTION = """Time ganfast beside the canonical PyTorch code it replaces (and torch.compile
of it), side by side in one run: speedups, GB/s and the fraction of the machine's limits, as a
table and, with --out FILE, JSON lines appended to FILE. CPU figures time the fallback path
only. --report FILES --out DIR turns result files into report.md and plots (--readme also
updates a README between its markers)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # No argparse default, so that --op given with --report is seen (and refused, not ignored).
    parser.add_argument("--op", choices=["gradient_penalty", "spectral_norm", "upsample_conv",
                                         "train_step", "fid"],
                        help=f"what to time (default: {DEFAULT_OP})")
    parser.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available")
    parser.add_argument("--dtype", type=_parse_dtypes,
                        help="comma-separated from fp32,fp16,bf16 (default on CPU: fp32; on GPU: "
                             "gradient_penalty all three, upsample_conv and train_step fp32,bf16; "
                             "gradient_penalty's full WGAN-GP step runs in the first only; "
                             "spectral_norm and fid take no --dtype). On most CPUs fp16 "
                             "convolutions and matrix products are emulated (not with "
                             "AVX512-FP16 or AMX-FP16), tens of times slower than fp32 (an "
                             "upsample_conv or train_step run can take many minutes), and "
                             "bf16 is fast only on CPUs with AVX512-BF16 or "
                             "AMX: such rows time the emulation")
    parser.add_argument("--shape", type=_parse_shape, action="append",
                        help="gradient_penalty: a gradient shape such as 64x3x64x64 "
                             "(repeatable; default: ganfast.bench.cli.GP_SHAPES of the device)")
    parser.add_argument("--block", action="append",
                        help="upsample_conv: a generator block such as sngan32-256-4 (repeatable; "
                             "default: all of ganfast.bench.upsample_conv.BLOCKS)")
    parser.add_argument("--batch", type=positive_int, action="append",
                        help="train_step, and gradient_penalty's full WGAN-GP step: a batch size "
                             "(repeatable; default: train_step 64 and 256 on GPU, 64 with "
                             "--quick; the full step 64; 16 on CPU, train_step --quick 2)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run (noisier figures; the rows are marked quick): "
                             "gradient_penalty and upsample_conv the first default shape or "
                             "block only, spectral_norm 1, 4 and 16 layers, train_step one "
                             "default batch size, fid D=256, N=2000 and fewer repeats; fewer calls "
                             "of the full WGAN-GP step, the host-time (overhead) cases and the "
                             "SNGAN-32 D cases (the other cases get the calls of a full run)")
    parser.add_argument("--no-compile", action="store_true",
                        help="leave out torch.compile of the canonical code")
    parser.add_argument("--mode", choices=["all", "kernels", "overhead"],
                        help="gradient_penalty, upsample_conv and spectral_norm: kernels: "
                             "device time per pass (and gradient_penalty's full WGAN-GP step); "
                             "overhead: host time per public call on tiny inputs (default: both)")
    parser.add_argument("--out", help="append the rows as JSON lines to this file "
                                      "(with --report: the directory for report.md and plots)")
    parser.add_argument("--report", nargs="+", metavar="FILE",
                        help="instead of timing: a markdown table and plots from result files")
    parser.add_argument("--readme", help="with --report: also splice the table into this file, "
                                         "between its lines <!-- bench-report:begin --> and "
                                         "<!-- bench-report:end --> (and, when train_step rows "
                                         "are given, the steps/s table between "
                                         "<!-- train-step:begin --> and <!-- train-step:end -->)")
    parser.add_argument("--auto-table", action="store_true",
                        help="with --report: rank the backends by the GPU rows and write the "
                             "order auto uses (ganfast/ops/auto_backends.json)")


def _parse_shape(text: str) -> tuple:
    try:
        shape = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        shape = ()
    if len(shape) < 2 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"takes a gradient shape [B, ...] of at least two positive "
                                         f"sizes, like 64x3x64x64; got {text!r}")
    return shape


def _parse_dtypes(text: str) -> list:
    names = [name.strip() for name in text.split(",")]
    unknown = [name for name in names if name not in DTYPES]
    if unknown:
        raise argparse.ArgumentTypeError(f"takes {', '.join(DTYPES)} (comma-separated); got "
                                         f"{', '.join(map(repr, unknown))}")
    return [DTYPES[name] for name in names]


# The options each op's benchmark reads: any other one given is refused, not silently ignored.
OP_OPTIONS = {
    "gradient_penalty": ("device", "dtype", "shape", "batch", "mode", "quick", "no_compile", "out"),
    "train_step": ("device", "dtype", "batch", "quick", "no_compile", "out"),
    "upsample_conv": ("device", "dtype", "block", "mode", "quick", "no_compile", "out"),
    "spectral_norm": ("device", "mode", "quick", "no_compile", "out"),
    "fid": ("device", "quick", "out"),
}


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


# The options only the kernel cases read: --mode overhead times fixed tiny float32 inputs.
KERNEL_OPTIONS = ("dtype", "shape", "batch", "block", "no_compile")


def _given(args, names) -> list:
    return [name for name in names if getattr(args, name) not in (None, False)]


def _bench_usage_error(args) -> str | None:
    """What is wrong with the options of a run, checked before anything is timed or written."""
    if args.report:
        timing = _given(args, ("op", "device", "quick", "mode", *KERNEL_OPTIONS))
        return (f"--report makes a report from result files and times nothing: it does not take "
                f"{', '.join(map(_option, timing))}") if timing else None
    if args.readme or args.auto_table:
        return f"{_option('readme' if args.readme else 'auto_table')} goes with --report FILES"
    if args.out == "":
        return "--out needs a file name (the JSON lines file the rows are appended to)"
    op = args.op or DEFAULT_OP
    wrong = [name for name in _given(args, ("mode", "out", *KERNEL_OPTIONS))
             if name not in OP_OPTIONS[op]]
    if wrong:
        return (f"--op {op} does not take {', '.join(map(_option, wrong))} (it takes "
                f"{', '.join(map(_option, OP_OPTIONS[op]))})")
    if args.mode == "overhead" and _given(args, KERNEL_OPTIONS):
        return (f"--mode overhead times fixed tiny float32 inputs: it does not take "
                f"{', '.join(map(_option, _given(args, KERNEL_OPTIONS)))}")
    if args.device == "cuda" and not torch.cuda.is_available():
        return "--device cuda asked for, but torch sees no CUDA device"
    if args.block:
        from . import upsample_conv as uc_bench

        unknown = sorted(set(args.block) - set(uc_bench.BLOCKS))
        if unknown:
            return (f"--block {', '.join(unknown)} is not a known block; known: "
                    f"{', '.join(uc_bench.BLOCKS)}")
    return _out_problem(Path(args.out), "file") if args.out else None


def _out_problem(path: Path, kind: str) -> str | None:
    """Why `path` cannot be written as a `kind` ("file" or "folder"), or None. Checked before a
    run, so that minutes of timing are not lost to a wrong --out at the end."""
    if kind == "file" and path.is_dir():
        return f"--out {path} is a folder; give the file to append the rows to, e.g. {path / 'rows.jsonl'}"
    if kind == "folder" and path.exists() and not path.is_dir():
        return f"--out {path} is a file; give the folder for report.md and the plots"
    if kind == "file" and path.exists():  # through a symlink, its target
        if not os.access(path, os.W_OK):
            return f"--out {path}: the file may not be written"
        return _not_rows(path)
    existing = next(p for p in (path if kind == "folder" else path.parent).absolute().joinpath("x").parents
                    if p.exists())
    if not existing.is_dir():
        return f"--out {path}: {existing} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"--out {path}: cannot write in {existing}"
    return None


def _not_rows(path: Path) -> str | None:
    """Why the rows must not be appended to an existing file, or None: one whose first line is
    not a `ganfast bench` row (a README or a training log given as --out by mistake) would have
    JSON appended to it, and --report would refuse the result. Only the first line is read; an
    empty file, a pipe (--out /dev/stdout) or a file this process may not read is written to."""
    from . import report

    try:
        if not path.is_file():
            return None
        with path.open("rb") as f:
            head = f.read(1 << 20)  # a row is well under this; a file of no lines is not read whole
    except OSError:
        return None
    first = next((line for line in head.splitlines() if line.strip()), None)
    if first is None:
        return None
    try:
        problem = report._row_problem(json.loads(first))
    except (UnicodeDecodeError, ValueError):  # not text, or not JSON
        problem = "it is not JSON"
    if problem:
        return (f"--out {path} holds something other than `ganfast bench` rows (its first line: "
                f"{problem}); the rows are appended to the file, so give a new file or one that "
                "ganfast bench wrote")
    return None


def _distinct(values):
    """The values in their first order, each once (a case asked for twice is timed once)."""
    return list(dict.fromkeys(values)) if values else values


def run(args) -> int:
    problem = _bench_usage_error(args)
    if problem:
        print(f"ganfast bench: {problem}", file=sys.stderr)
        return 2
    if args.report:
        return _bench_report(args)
    for name in ("dtype", "shape", "block", "batch"):
        setattr(args, name, _distinct(getattr(args, name)))
    args.mode = args.mode or "all"
    args.op = args.op or DEFAULT_OP
    previous = _sigint_once()
    try:
        return _bench_op(args)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
            from . import timing as bench_timing

            bench_timing.stop_requested = False  # answered, or the run is over: not for later calls


# `timeout --signal=INT` signals the process and then its group, so a second SIGINT can follow
# the first by microseconds: within this many seconds of the one that raised, a SIGINT is taken
# for the same interruption and ignored.
SIGINT_REPEAT_S = 1.0


def _sigint_once():
    """Install a SIGINT handler that raises KeyboardInterrupt (the benchmark keeps the rows
    timed so far and saves them) and ignores the SIGINTs that follow it while those rows are
    saved; the previous handler (None off the main thread).

    A later SIGINT raises again if the benchmark never took up the first: a KeyboardInterrupt
    raised in a weakref callback or a __del__ (torch.compile's caches have many) is printed and
    dropped by Python, and ignoring every SIGINT after it left a run that Ctrl-C could not stop
    (and `timeout` SIGKILLed, losing its rows)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    from . import cases as bench_cases
    from . import timing as bench_timing

    # not flags left by an earlier run in this process
    bench_cases.last_run_interrupted = bench_timing.stop_requested = False
    raised_at = []

    def interrupt(signum, frame):
        if raised_at and (bench_cases.last_run_interrupted
                          or time.monotonic() - raised_at[-1] < SIGINT_REPEAT_S):
            return
        raised_at.append(time.monotonic())
        # Raised where Python drops it (a weakref callback), the request stays for the timing
        # loops to raise again (timing.stop_if_requested); a row being written is finished
        # first: cut in half, it would make the whole file unreadable to --report.
        bench_timing.stop_requested = True
        if bench_cases.writing_rows:
            return
        raise KeyboardInterrupt

    return signal.signal(signal.SIGINT, interrupt)


def _bench_op(args) -> int:
    if args.op == "upsample_conv":
        return _bench_upsample_conv(args)
    if args.op == "spectral_norm":
        return _bench_spectral_norm(args)
    if args.op == "fid":
        from . import fid as fid_bench

        try:
            fid_bench.main((["--device", args.device] if args.device else [])
                           + (["--quick"] if args.quick else [])
                           + (["--out", args.out] if args.out else []))
        except KeyboardInterrupt:  # each part's rows were written as it ended
            print("bench fid: interrupted" + ("; the rows of the parts that ended are in "
                                              f"{args.out}" if args.out else ""), file=sys.stderr)
            return 130
        return 0
    from .. import backends
    from . import cases as bench_cases
    from . import gradient_penalty as gp_bench
    from . import overhead

    device = _bench_device(args)
    dtypes = args.dtype or (list(DTYPES.values()) if device.type == "cuda" else [torch.float32])
    if args.op == "train_step":
        return _bench_train_step(args, device, dtypes)
    shapes = args.shape or GP_SHAPES[device.type][: 1 if args.quick else None]
    names = [b for b in gp_bench.BACKENDS if device.type == "cuda" or b == "torch"]

    def unavailable(backend):
        return "" if backend in ("eager", "compile") else backends.unavailable_reason(backend, device)

    rows, interrupted = [], False
    if args.mode in ("all", "kernels"):
        all_cases = list(gp_bench.cases(shapes, dtypes, device, names,
                                        with_compile=not args.no_compile))
        # The full step's batch: a DCGAN-64 batch on GPU, smaller on a CPU (--batch: repeatable);
        # --quick times it fewer times (a CPU step of batch 16 takes about a second).
        for batch in args.batch or [16 if device.type == "cpu" else 64]:
            all_cases += list(gp_bench.full_cases(batch, dtypes[0], device, names,
                                                  reps=10 if args.quick else 60))
        rows += bench_cases.run("gradient_penalty", all_cases, device,
                                lambda case: unavailable(case.backend))
        interrupted = bench_cases.last_run_interrupted
    if args.mode in ("all", "overhead") and not interrupted:
        rows += overhead.run(device, names, unavailable, quick=args.quick)
    first = next((row for row in rows if "skipped" not in row), None)  # an eager baseline
    if first is None:
        return _nothing_timed("gradient_penalty")
    # On CPU each case has a ceiling of its own size (bench.timing.copy_bandwidth_gbps).
    copy = f"; copy bandwidth {first['copy_gbps']} GB/s" if device.type == "cuda" else ""
    print(f"gradient_penalty on {first['device']} (torch {first['torch']}, triton {first['triton']})"
          + copy)
    _print_and_save(rows, args)
    return _exit_status()


def _bench_device(args) -> torch.device:
    return torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))


def _nothing_timed(op: str) -> int:
    print(f"ganfast bench: no {op} case was timed (interrupted, or every case skipped)",
          file=sys.stderr)
    return _exit_status() or 1


def _exit_status() -> int:
    """0, or 130 (a shell's status for Ctrl-C) when SIGINT cut the run short: the rows printed
    and saved are then only part of the run, and a script must be able to tell."""
    from . import cases as bench_cases

    return 130 if bench_cases.last_run_interrupted else 0


def _print_and_save(rows, args) -> None:
    from . import cases as bench_cases

    print(bench_cases.markdown_table(rows))
    _save(rows, args)


def _save(rows, args) -> None:
    """Append the rows to --out, those of a --quick run marked as such (noisier figures)."""
    from . import cases as bench_cases

    if args.out:
        bench_cases.write_jsonl([{**row, "quick": True} if args.quick else row for row in rows],
                                Path(args.out))
        print(f"rows appended to {args.out}")


def _bench_train_step(args, device, dtypes) -> int:
    from . import cases as bench_cases
    from . import train_step

    # GPU: the batch sizes of the issue; CPU: small enough for a 2-core machine. --quick takes
    # one of them (2 on CPU), as it takes the first default shape of the other ops: batch sizes
    # asked for with --batch are all timed.
    if args.batch:
        batches = args.batch
    elif device.type == "cuda":
        batches = [64] if args.quick else [64, 256]
    else:
        batches = [2] if args.quick else [16]
    if not args.dtype:  # fp32 and bf16 autocast (fp16 would need a GradScaler in the loop)
        dtypes = [torch.float32, torch.bfloat16] if device.type == "cuda" else [torch.float32]
    models = list(train_step.MODELS)
    backends = [b for b in train_step.BACKENDS if not (args.no_compile and "compile" in b)]
    all_cases = train_step.cases(models, batches, dtypes, device, backends)
    rows = train_step.add_steps_per_s(
        bench_cases.run("train_step", all_cases, device, train_step.first_call_fails))
    first = next((row for row in rows if "skipped" not in row), None)
    if first is None:
        return _nothing_timed("train_step")
    print(f"train_step on {first['device']} (torch {first['torch']}); one step = one D and one G "
          "update")
    _print_and_save(rows, args)
    return _exit_status()


def _bench_upsample_conv(args) -> int:
    from . import cases as bench_cases
    from . import overhead
    from . import timing as bench_timing
    from . import upsample_conv as uc_bench

    device = _bench_device(args)
    dtypes = args.dtype or ([torch.float32, torch.bfloat16] if device.type == "cuda"
                            else [torch.float32])
    blocks = args.block or list(uc_bench.BLOCKS)[: 1 if args.quick else None]
    backend_names = uc_bench.backends_for(device)
    rows, overhead_rows, interrupted = [], [], False
    if args.mode in ("all", "kernels"):
        all_cases = uc_bench.cases(blocks, dtypes, device, ["nchw", "channels_last"],
                                   backend_names, with_compile=not args.no_compile)
        rows = bench_cases.run("upsample_conv", all_cases, device)
        try:  # seconds of matmuls and convolutions after the timed cases; none once interrupted
            if not bench_cases.last_run_interrupted:
                uc_bench.add_throughput(rows, device, functools.cache(
                    lambda dtype: bench_timing.matrix_tflops(device, getattr(torch, dtype))))
        except KeyboardInterrupt:  # the timed rows are kept, some without their throughput
            bench_cases.take_interrupt()
            print(f"bench upsample_conv: interrupted while measuring the matrix throughput; "
                  f"keeping the {len(rows)} rows timed", file=sys.stderr)
        interrupted = bench_cases.last_run_interrupted
    if args.mode in ("all", "overhead") and not interrupted:
        overhead_rows = overhead.timed_rows(
            "upsample_conv", list(uc_bench.overhead_cases(device, backend_names)), device,
            quick=args.quick)
    if not rows + overhead_rows:
        return _nothing_timed("upsample_conv")
    first = (rows + overhead_rows)[0]
    print(f"upsample_conv on {first['device']} (torch {first['torch']})")
    if rows:
        print(bench_cases.markdown_table(rows, uc_bench.COLUMNS))
    if overhead_rows:
        print(bench_cases.markdown_table(overhead_rows))
    _save(rows + overhead_rows, args)
    return _exit_status()


def _bench_spectral_norm(args) -> int:
    from . import spectral_norm as sn_bench

    device = _bench_device(args)
    rows = sn_bench.run(device, mode=args.mode, quick=args.quick,
                        with_compile=not args.no_compile)
    if not rows:
        return _nothing_timed("spectral_norm")
    print(f"spectral_norm on {device} (torch {torch.__version__})")
    print(sn_bench.markdown_table(rows))
    from . import cases as bench_cases

    stamp = {"op": "spectral_norm", **bench_cases.environment(device)}
    _save([{**stamp, **row} for row in sn_bench.report_rows(rows)], args)
    return _exit_status()


def _bench_report(args) -> int:
    from . import report

    def refuse(message):
        print(f"ganfast bench --report: {message}", file=sys.stderr)
        return 2

    if not args.out:
        return refuse("--out DIR is required (where report.md and the plots go)")
    problem = _out_problem(Path(args.out), "folder")
    if problem:
        return refuse(problem)
    from . import auto_table

    if importlib.util.find_spec("matplotlib") is None:
        print("ganfast bench --report: the plots need matplotlib: pip install 'ganfast[bench]'",
              file=sys.stderr)
        return 1
    if args.auto_table and not os.access(auto_table.AUTO_TABLE, os.W_OK):
        return refuse(f"--auto-table: {auto_table.AUTO_TABLE} may not be written")
    # The README is replaced last, through a temporary file beside it: checked now, or a
    # read-only one is found only after report.md and the plots were written. A symlink's
    # target is the file replaced (the link stays), so its target's folder is the one checked.
    readme = Path(args.readme) if args.readme else None
    if readme and readme.is_file() and not (os.access(readme, os.W_OK)
                                            and os.access(readme.resolve().parent, os.W_OK)):
        target = f" (a link to {readme.resolve()})" if readme.is_symlink() else ""
        return refuse(f"--readme {readme}{target}: the file (or its folder) may not be written")
    try:
        written = report.write_report(args.report, Path(args.out), readme=args.readme)
        measured = auto_table.write(report.load_rows(args.report)) if args.auto_table else {}
    except (OSError, ValueError) as error:  # a file missing or unreadable, a bad row, no markers
        if isinstance(error, OSError) and error.filename:
            return refuse(f"{error.filename2 or error.filename}: {error.strerror}")
        return refuse(error)
    print(f"wrote {written['markdown']} and {len(written['plots'])} plot(s)"
          + (f"; updated {args.readme}" if args.readme else ""))
    for op, entry in measured.items():
        print(f"auto order for {op}: {', '.join(entry['order'])} (from the GPU rows given)")
    if args.auto_table and not measured:
        print("--auto-table: no GPU rows to rank backends by in the files given (rows of --quick "
              f"runs and of ops without a choice of backend are not ranked); "
              f"{auto_table.AUTO_TABLE} unchanged")
    return 0

