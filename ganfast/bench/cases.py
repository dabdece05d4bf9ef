"""A benchmark case, the run that times a list of them, and the rows it writes.

Row fields (benchmarks/results/README.md): op, mode, shape, dtype, backend, median_ms (what eager code sees,
host time the device could not hide included), device_ms (the kernels alone, replayed from
a CUDA graph; GPU only), gbps and frac_of_copy (from device_ms when there is one; of the
memory's copy bandwidth on CUDA, of a copy of the same size on CPU: copy_gbps), speedup
(vs the eager canonical code of the same mode/shape/dtype, from median_ms),
speedup_vs_compile, device, cpu (the host CPU: model, vector ISA, threads), torch, triton,
cuda, ganfast (its version), date and time (UTC); quick: true for rows of a --quick run.
"""

import argparse
import dataclasses
import datetime
import importlib.metadata
import json
import os
import platform
import sys
from pathlib import Path

import torch
from tqdm import tqdm

import ganfast

from . import timing as bench_timing
from .timing import copy_bandwidth_gbps, device_ms, interleaved_ms, median_ms


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"takes a positive integer, got {text!r}")
    return value


@dataclasses.dataclass
class Case:
    mode: str
    key: dict  # shape, dtype
    backend: str  # "eager" / "compile" (the canonical code) or a ganfast backend
    fn: object
    bytes_moved: int | None  # the minimum traffic of the mode, for GB/s; None: time only
    reps: int = 60  # timed calls on CPU, the fewest of its group's (a GPU times by duration)
    extra: dict = dataclasses.field(default_factory=dict)  # more columns of its row (memory)


def cpu_description() -> str:
    """The host CPU as rows record it: model, the vector ISA ATen dispatches to, threads.

    CPU speedups depend on the machine as well as the code (a fused form that does fewer
    multiply-adds less efficiently wins by more where the GEMMs are slower: benchmarks/NOTES.md
    has the same build on two machines). On a GPU host it says whose host time the overhead
    rows measured."""
    try:  # Linux names the model here; elsewhere platform's answer (maybe only "x86_64")
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f
                         if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or platform.machine()
    return f"{model}, {torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads"


def environment(device: torch.device) -> dict:
    now = datetime.datetime.now(datetime.timezone.utc)
    try:
        triton_version = importlib.metadata.version("triton")
    except importlib.metadata.PackageNotFoundError:
        triton_version = None
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "cpu": cpu_description(),
        "torch": torch.__version__,
        "triton": triton_version,
        "cuda": torch.version.cuda,
        "ganfast": ganfast.__version__,
        "date": now.date().isoformat(),
        "time": now.strftime("%H:%M:%S UTC"),  # orders the runs of one day
    }


# Whether the last run() (or overhead.timed_rows, spectral_norm.run) was cut short by SIGINT:
# the CLI then saves what it has, stops, and exits with 130.
last_run_interrupted = False


def take_interrupt() -> None:
    """Mark the run as cut short by SIGINT: the caller keeps the rows it has, and the timing
    loops stop raising the request (timing.stop_requested) that the interrupt answered."""
    global last_run_interrupted
    last_run_interrupted = True
    bench_timing.stop_requested = False


def run(op: str, cases, device: torch.device, skip=lambda case: "") -> list[dict]:
    """Time every case; a case `skip` gives a reason for is recorded with that reason.

    On CPU the backends of one (mode, shape, ...) group are timed in turn, call by call
    (interleaved_ms): the load of a shared machine drifts, and taking each figure over the same
    stretch of time keeps the speedups honest. On CUDA each case is timed by itself.

    Interrupted (Ctrl-C, or SIGINT from `timeout` when a device session's time is short), it
    returns the rows of the groups already timed, so that they are printed and saved."""
    global last_run_interrupted
    last_run_interrupted = False
    env = environment(device)
    # The copy ceiling (timing.copy_bandwidth_gbps): the memory's on CUDA, on CPU a copy the
    # size of the case, whose data stays in cache as the case's does.
    memory_gbps = copy_bandwidth_gbps(device) if device.type == "cuda" else None
    ceilings = {}

    def copy_gbps(case):
        if memory_gbps or not case.bytes_moved:
            return memory_gbps
        if case.bytes_moved not in ceilings:
            ceilings[case.bytes_moved] = copy_bandwidth_gbps(device, case.bytes_moved)
        return ceilings[case.bytes_moved]

    groups: dict[tuple, list[Case]] = {}
    for case in cases:  # in order of first appearance, wherever a group's cases stand
        groups.setdefault((case.mode, json.dumps(case.key)), []).append(case)
    rows = []
    total = sum(len(members) for members in groups.values())
    with tqdm(total=total, desc=f"bench {op}", unit="case", leave=False) as progress:
        for (mode, key), members in groups.items():
            # A CPU group is timed as one (interleaved_ms): say which one is under way.
            progress.set_postfix_str(f"{mode} {' '.join(map(str, json.loads(key).values()))}")
            try:
                rows += _group_rows(op, members, device, skip, env, copy_gbps)
            except KeyboardInterrupt:  # the group under way is dropped, the finished ones kept
                take_interrupt()
                print(f"bench {op}: interrupted; keeping the {len(rows)} rows timed so far",
                      file=sys.stderr)
                break
            progress.update(len(members))
    return rows


def _group_rows(op, members: list[Case], device, skip, env: dict, copy_gbps) -> list:
    timings = _time_group(members, device, skip)
    baselines = {case.backend: ms for case, ms in zip(members, timings, strict=True)
                 if not isinstance(ms, str)}
    rows = []
    for case, timing in zip(members, timings, strict=True):
        row = {"op": op, "mode": case.mode, **case.key, "backend": case.backend, **case.extra}
        if isinstance(timing, str):
            rows.append({**row, "skipped": timing, **env})
            continue
        rows.append({**row, **_timing_columns(case, timing, baselines, device, copy_gbps),
                     **env})
    return rows


def _time_group(members: list[Case], device: torch.device, skip) -> list:
    """Median ms of each case, or the reason it was not timed (skipped; out of memory on
    CUDA, where one case's failure must not lose the others' rows)."""
    timings = []
    for case in members:  # skip() may run a case's first call (train_step's compiles)
        bench_timing.stop_if_requested()
        timings.append(skip(case) or None)
    todo = [i for i, reason in enumerate(timings) if reason is None]
    if device.type == "cpu" and todo:
        reps = min(members[i].reps for i in todo)
        medians = interleaved_ms({i: members[i].fn for i in todo}, reps=reps)
        for i in todo:
            timings[i] = medians[i]
        return timings
    for i in todo:
        try:
            timings[i] = median_ms(members[i].fn, device, reps=members[i].reps)
        except torch.OutOfMemoryError as error:  # record it and go on: the other rows stand
            torch.cuda.empty_cache()
            timings[i] = f"out of memory: {str(error).splitlines()[0]}"
    return timings


def _timing_columns(case: Case, ms: float, baselines: dict, device, copy_gbps) -> dict:
    eager, compiled = baselines.get("eager"), baselines.get("compile")
    # Bandwidth is the kernels' figure: device time when the call can be graph-captured.
    kernels_ms = device_ms(case.fn, device) if case.bytes_moved else None
    gbps = case.bytes_moved / ((kernels_ms or ms) * 1e-3) / 1e9 if case.bytes_moved else None
    ceiling = copy_gbps(case)
    return {
        "median_ms": round(ms, 4),
        "device_ms": round(kernels_ms, 4) if kernels_ms else None,
        "gbps": _rate(gbps) if gbps else None,
        "frac_of_copy": round(gbps / ceiling, 3) if gbps else None,
        "speedup": round(eager / ms, 2) if eager else None,
        "speedup_vs_compile": round(compiled / ms, 2) if compiled else None,
        "copy_gbps": _rate(ceiling) if ceiling else None,
    }


def _rate(gbps: float) -> float:
    """GB/s to one decimal, or to three significant digits below 0.05: to one decimal a small
    --shape's rate was written as 0.0, as if nothing moved (and the report refused the row)."""
    return round(gbps, 1) if gbps >= 0.05 else float(f"{gbps:.3g}")


# True while write_jsonl appends rows: `ganfast bench`'s SIGINT handler then leaves the
# interrupt to the timing loops rather than cut a row in half.
writing_rows = False


def write_jsonl(rows: list[dict], path: Path) -> None:
    global writing_rows
    path.parent.mkdir(parents=True, exist_ok=True)
    # A file whose last line has no newline (a hand-written row) would have the first row
    # appended to that line, and the report refuse both.
    newline_first = _ends_mid_line(path)
    lines = ("\n" if newline_first else "") + "".join(json.dumps(row) + "\n" for row in rows)
    writing_rows = True
    try:
        with path.open("a") as f:
            f.write(lines)
    finally:
        writing_rows = False


def _ends_mid_line(path: Path) -> bool:
    """Whether a regular file's last byte is other than a newline (not asked of a pipe such as
    --out /dev/stdout, which cannot be read back)."""
    try:
        if not path.is_file() or path.stat().st_size == 0:
            return False
        with path.open("rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) != b"\n"
    except OSError:  # a file this process may append to but not read: appended as it is
        return False


def markdown_table(rows: list[dict], columns: list[str] | None = None) -> str:
    columns = columns or ["mode", "case", "shape", "dtype", "backend", "median_ms", "us_per_call",
                          "steps_per_s", "gbps", "frac_of_copy", "speedup", "speedup_vs_compile"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        if "skipped" in row:
            cells = [str(row.get(c, "")) for c in columns[:5]] + [f"skipped: {row['skipped']}"]
            cells += [""] * (len(columns) - len(cells))
        else:
            cells = ["" if row.get(c) is None else str(row[c]) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
