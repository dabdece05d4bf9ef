"""The `ganfast` command: `ganfast info`, `ganfast bench`, `ganfast train`, `ganfast fid`."""

import argparse
import json
import sys


def _print_info(args) -> int:
    from .info import info

    report = info()
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    ext = report["extension"]
    cuda = f"CUDA {report['torch_cuda']}" if report["torch_cuda"] else "a CPU-only build"
    triton = f"triton {report['triton']}" if report["triton"] else "triton not installed"
    print(f"ganfast {report['ganfast']}  torch {report['torch']} ({cuda})  {triton}"
          f"  python {report['python']}")
    print(f"device: {report['device']}")
    print(f"backend setting: {report['backend_setting']}")
    print(f"extension ganfast._C: {'loaded' if ext['loaded'] else 'not loaded: ' + ext['reason']}"
          + (f" (archs {ext['cuda_archs']}; {len(ext['registered_ops'])} ops)" if ext["loaded"] else ""))
    setting = report["backend_setting"]
    for op, entry in report["ops"].items():
        # how auto chose: only where it chose from an order (on a GPU; not under a backend set
        # by name, nor a refusal)
        measured = ("" if setting != "auto" or entry["auto"].startswith("refused")
                    or not report.get("cuda_available")
                    else " (measured)" if entry["auto_order_measured"]
                    else " (default order, not yet measured)")
        if setting.startswith("invalid"):  # the setting's line above says why
            print(f"  {op}: refused, the backend setting is invalid")
        else:
            print(f"  {op}: {setting} -> {entry['auto']}{measured}")
        for name, status in entry["available"].items():
            print(f"    {name:7s} {status}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="ganfast", description=__doc__)
    parser.add_argument("--version", action="version", version=f"ganfast {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="versions, device, extension status, backend per op")
    info.add_argument("--json", action="store_true", help="print the report as JSON")
    info.set_defaults(func=_print_info)

    from .bench import cli as bench_cli

    bench = sub.add_parser("bench", help="time ganfast's kernels against canonical PyTorch",
                           description=bench_cli.DESCRIPTION)
    bench_cli.add_arguments(bench)
    bench.set_defaults(func=bench_cli.run)

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
