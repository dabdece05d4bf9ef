"""The `ganfast` command: `ganfast info`, `ganfast bench`, `ganfast train`, `ganfast fid`."""

import argparse
import functools
import json
import signal
import sys
import threading
from pathlib import Path

import torch

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# (GPU, CPU) shapes: a DCGAN-64 batch, then feature-map gradients large enough to be
# bandwidth-bound on a GPU; the CPU set stays small so a laptop run takes seconds.
GP_SHAPES = {
    "cuda": [(64, 3, 64, 64), (256, 128, 32, 32), (64, 256, 64, 64)],
    "cpu": [(16, 3, 64, 64), (8, 64, 32, 32)],
}


def _print_info(args) -> int:
    from .info import info

    report = info()
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    ext = report["extension"]
    print(f"ganfast {report['ganfast']}  torch {report['torch']} (CUDA {report['torch_cuda']})"
          f"  triton {report['triton']}  python {report['python']}")
    print(f"device: {report['device']}")
    print(f"backend setting: {report['backend_setting']}")
    print(f"extension ganfast._C: {'loaded' if ext['loaded'] else 'not loaded: ' + ext['reason']}"
          + (f" (archs {ext['cuda_archs']}; {len(ext['registered_ops'])} ops)" if ext["loaded"] else ""))
    for op, entry in report["ops"].items():
        measured = "measured" if entry["auto_order_measured"] else "default order, not yet measured"
        print(f"  {op}: auto -> {entry['auto']} ({measured})")
        for name, status in entry["available"].items():
            print(f"    {name:7s} {status}")
    return 0


def _parse_shape(text: str) -> tuple:
    try:
        return tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shape takes sizes like 64x3x64x64, got {text!r}") from None


def _bench(args) -> int:
    if args.report:
        return _bench_report(args)
    # `timeout --signal=INT` signals the process and then its group, so a second SIGINT can
    # follow the first by microseconds: the first raises KeyboardInterrupt (the benchmark keeps
    # the rows timed so far and saves them), any later one is ignored while they are saved.
    previous = _sigint_once()
    try:
        return _bench_op(args)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _sigint_once():
    """Install the SIGINT handler above; the previous handler (None off the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(signum, frame):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise KeyboardInterrupt

    return signal.signal(signal.SIGINT, interrupt)


def _bench_op(args) -> int:
    if args.op == "upsample_conv":
        return _bench_upsample_conv(args)
    if args.op == "spectral_norm":
        return _bench_spectral_norm(args)
    if args.op == "fid":
        from .bench import fid as fid_bench

        quick = ["--dim", "256", "--stats-n", "2000", "--repeats", "1"] if args.quick else []
        fid_bench.main((["--device", args.device] if args.device else []) + quick)
        return 0
    from . import backends
    from .bench import cases as bench_cases
    from .bench import gradient_penalty as gp_bench
    from .bench import overhead

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        print("ganfast bench: --device cuda asked for, but torch sees no CUDA device", file=sys.stderr)
        return 2
    dtypes = [DTYPES[d] for d in args.dtype.split(",")] if args.dtype else (
        list(DTYPES.values()) if device.type == "cuda" else [torch.float32])
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
        # The full step's batch: a DCGAN-64 batch on GPU, smaller on a CPU (--batch: repeatable).
        for batch in args.batch or [16 if device.type == "cpu" else 64]:
            all_cases += list(gp_bench.full_cases(batch, dtypes[0], device, names))
        rows += bench_cases.run("gradient_penalty", all_cases, device,
                                lambda case: unavailable(case.backend))
        interrupted = bench_cases.last_run_interrupted
    if args.mode in ("all", "overhead") and not interrupted:
        rows += overhead.run(device, names, unavailable, quick=args.quick)
    first = next((row for row in rows if "skipped" not in row), None)  # an eager baseline
    if first is None:
        return _nothing_timed("gradient_penalty")
    copy = f"; copy bandwidth {first['copy_gbps']} GB/s" if "copy_gbps" in first else ""
    print(f"gradient_penalty on {first['device']} (torch {first['torch']}, triton {first['triton']})"
          + copy)
    _print_and_save(rows, args)
    return 0


def _nothing_timed(op: str) -> int:
    print(f"ganfast bench: no {op} case was timed (interrupted, or every case skipped)",
          file=sys.stderr)
    return 1


def _print_and_save(rows, args) -> None:
    from .bench import cases as bench_cases

    print(bench_cases.markdown_table(rows))
    if args.out:
        bench_cases.write_jsonl(rows, Path(args.out))
        print(f"rows appended to {args.out}")


def _bench_train_step(args, device, dtypes) -> int:
    from .bench import cases as bench_cases
    from .bench import train_step

    # GPU: the batch sizes of the issue; CPU: small enough for a 2-core machine.
    batches = args.batch or ([64, 256] if device.type == "cuda" else [16])
    if not args.dtype:  # fp32 and bf16 autocast (fp16 would need a GradScaler in the loop)
        dtypes = [torch.float32, torch.bfloat16] if device.type == "cuda" else [torch.float32]
    models = list(train_step.MODELS)
    backends = [b for b in train_step.BACKENDS if not (args.no_compile and "compile" in b)]
    if args.quick:
        batches = [2 if device.type == "cpu" else batches[0]]
    all_cases = train_step.cases(models, batches, dtypes, device, backends)
    rows = train_step.add_steps_per_s(
        bench_cases.run("train_step", all_cases, device, train_step.first_call_fails))
    first = next((row for row in rows if "skipped" not in row), None)
    if first is None:
        return _nothing_timed("train_step")
    print(f"train_step on {first['device']} (torch {first['torch']}); one step = one D and one G "
          "update")
    _print_and_save(rows, args)
    return 0


def _bench_upsample_conv(args) -> int:
    from .bench import cases as bench_cases
    from .bench import overhead
    from .bench import timing as bench_timing
    from .bench import upsample_conv as uc_bench

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtypes = [DTYPES[d] for d in args.dtype.split(",")] if args.dtype else (
        [torch.float32, torch.bfloat16] if device.type == "cuda" else [torch.float32])
    unknown = sorted(set(args.block or ()) - set(uc_bench.BLOCKS))
    if unknown:
        raise SystemExit(f"ganfast bench: --block {', '.join(unknown)} is not a known block; "
                         f"known: {', '.join(uc_bench.BLOCKS)}")
    blocks = args.block or list(uc_bench.BLOCKS)[: 1 if args.quick else None]
    backend_names = uc_bench.backends_for(device)
    rows, overhead_rows, interrupted = [], [], False
    if args.mode in ("all", "kernels"):
        all_cases = uc_bench.cases(blocks, dtypes, device, ["nchw", "channels_last"],
                                   backend_names, with_compile=not args.no_compile)
        rows = bench_cases.run("upsample_conv", all_cases, device)
        uc_bench.add_throughput(rows, device, functools.cache(
            lambda dtype: bench_timing.matrix_tflops(device, getattr(torch, dtype))))
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
    if args.out:
        bench_cases.write_jsonl(rows + overhead_rows, Path(args.out))
        print(f"rows appended to {args.out}")
    return 0


def _bench_spectral_norm(args) -> int:
    from .bench import spectral_norm as sn_bench

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    rows = sn_bench.run(device, mode=args.mode, quick=args.quick,
                        with_compile=not args.no_compile)
    print(f"spectral_norm on {device} (torch {torch.__version__})")
    print(sn_bench.markdown_table(rows))
    if args.out:
        from .bench import cases as bench_cases

        stamp = {"op": "spectral_norm", **bench_cases.environment(device)}
        bench_cases.write_jsonl([{**stamp, **row} for row in sn_bench.report_rows(rows)],
                                Path(args.out))
        print(f"rows appended to {args.out}")
    return 0


def _bench_report(args) -> int:
    from .bench import report

    if not args.out:
        print("ganfast bench --report: --out DIR is required (where report.md and the plots go)",
              file=sys.stderr)
        return 2
    written = report.write_report(args.report, Path(args.out), readme=args.readme)
    print(f"wrote {written['markdown']} and {len(written['plots'])} plot(s)"
          + (f"; updated {args.readme}" if args.readme else ""))
    if args.auto_table:
        from .bench import auto_table

        for op, entry in auto_table.write(report.load_rows(args.report)).items():
            print(f"auto order for {op}: {', '.join(entry['order'])}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ganfast", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="versions, device, extension status, backend per op")
    info.add_argument("--json", action="store_true", help="print the report as JSON")
    info.set_defaults(func=_print_info)

    bench = sub.add_parser("bench", help="time ganfast's kernels against canonical PyTorch")
    bench.add_argument("--op", default="gradient_penalty",
                       choices=["gradient_penalty", "spectral_norm", "upsample_conv", "train_step",
                                "fid"])
    bench.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available")
    bench.add_argument("--dtype", help="comma-separated from fp32,fp16,bf16 "
                                       "(default: all on GPU, fp32 on CPU)")
    bench.add_argument("--shape", type=_parse_shape, action="append",
                       help="a gradient shape such as 64x3x64x64 (repeatable)")
    bench.add_argument("--block", action="append",
                       help="upsample_conv: a generator block such as sngan32-256-4 (repeatable; "
                            "default: all of ganfast.bench.upsample_conv.BLOCKS)")
    bench.add_argument("--batch", type=int, action="append",
                       help="train_step, and gradient_penalty's full WGAN-GP step: a batch size "
                            "(repeatable; default: train_step 64 and 256 on GPU, the full step "
                            "64; 16 on CPU)")
    bench.add_argument("--quick", action="store_true",
                       help="the first default shape only, fewer calls per overhead case")
    bench.add_argument("--no-compile", action="store_true",
                       help="leave out torch.compile of the canonical code")
    bench.add_argument("--mode", choices=["all", "kernels", "overhead"], default="all",
                       help="kernels: device time per pass and a full step; overhead: host time "
                            "per public call on tiny inputs (default: both)")
    bench.add_argument("--out", help="append the rows as JSON lines to this file "
                                     "(with --report: the directory for report.md and plots)")
    bench.add_argument("--report", nargs="+", metavar="FILE",
                       help="instead of timing: a markdown table and plots from result files")
    bench.add_argument("--readme", help="with --report: also splice the table into this file, "
                                        "between its bench-report markers")
    bench.add_argument("--auto-table", action="store_true",
                       help="with --report: rank the backends by the GPU rows and write the "
                            "order auto uses (ganfast/ops/auto_backends.json)")
    bench.set_defaults(func=_bench)

    from .train import cli as train_cli

    train = sub.add_parser("train", help="train a GAN (default: digits, minutes on a CPU)",
                           description=train_cli.DESCRIPTION)
    train_cli.add_arguments(train)
    train.set_defaults(func=train_cli.run)

    from .metrics import cli as fid_cli

    fid = sub.add_parser("fid", help="FID (and KID, IS, precision/recall) of two image folders",
                         description=fid_cli.DESCRIPTION)
    fid_cli.add_arguments(fid)
    fid.set_defaults(func=fid_cli.run)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
