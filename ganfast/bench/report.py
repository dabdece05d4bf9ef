"""Turn `ganfast bench` JSON lines into a markdown report, bar charts, and a README section.

The report sets each ganfast backend beside the canonical PyTorch code it replaces: the
eager and torch.compile rows are the baselines, so they appear as columns (eager ms, the
speedups) rather than as rows of their own.
"""

import json
import math
import os
import re
from pathlib import Path

from .._files import write_atomically

BASELINES = ("eager", "compile")
MODE_ORDER = ("overhead", "interp", "fwd", "bwd", "fwd+bwd", "full", "compile time")
DTYPE_ORDER = ("float32", "float16", "bfloat16")
BACKEND_ORDER = ("cuda", "triton", "torch")
CPU_LABEL = "CPU: the fallback path only, not a GPU figure"
BEGIN, END = "<!-- bench-report:begin -->", "<!-- bench-report:end -->"
REQUIRED = ("op", "mode", "shape", "dtype", "backend", "device")
DASH = "–"


# The numeric fields a row may carry (None: not measured) and the least each may be. GB/s may
# be 0: `ganfast bench` once wrote a small --shape's GB/s rounded to 0.0, and the report shows
# neither GB/s field (frac_of_copy is its figure).
POSITIVE = ("median_ms", "device_ms", "us_per_call", "speedup", "speedup_vs_compile",
            "steps_per_s")
NON_NEGATIVE = ("frac_of_copy", "frac_of_matrix", "saved_mb", "gbps", "copy_gbps")


def load_rows(paths) -> list[dict]:
    """Every row of the JSONL files, in file order; blank lines are allowed. A row that the
    report could not show truthfully (a field missing or of the wrong kind, a time that is not
    a positive finite number) is a ValueError naming its file and line."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    rows = []
    for path in map(Path, paths):
        with path.open() as f:
            for lineno, line in _numbered_lines(f, path):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
                problem = _row_problem(row)
                if problem:
                    raise ValueError(f"{path}:{lineno}: {problem}")
                rows.append(row)
    return rows


def _numbered_lines(f, path):
    try:
        yield from enumerate(f, 1)
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text file of JSON lines (ganfast bench --out writes "
                         "those)") from None


def _row_problem(row) -> str | None:
    if not isinstance(row, dict):
        return f"expected a JSON object, got {type(row).__name__}"
    missing = [k for k in REQUIRED if k not in row]
    if missing:
        return f"row lacks {', '.join(missing)}"
    for key in ("op", "mode", "dtype", "backend", "device"):
        if not isinstance(row[key], str) or not row[key]:
            return f"{key} must be a non-empty string, got {row[key]!r}"
    # compared when ordering runs (date, time) or grouping rows (case, block, layout)
    for key in ("date", "time", "case", "block", "layout"):
        if row.get(key) is not None and not isinstance(row[key], str):
            return f"{key} must be a string or null, got {row[key]!r}"
    shape = row["shape"]
    if not (isinstance(shape, list) and shape
            and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape)):
        return f"shape must be a list of positive integers, got {shape!r}"
    for key in POSITIVE + NON_NEGATIVE:
        value = row.get(key)
        if value is None:
            continue
        least = "positive" if key in POSITIVE else "non-negative"
        if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
                or (value <= 0 if key in POSITIVE else value < 0)):
            return f"{key} must be a {least} finite number or null, got {value!r}"
    return None


def _rank(order, value):
    # Known values in their stated order, anything new after them, alphabetically.
    return (order.index(value), "") if value in order else (len(order), str(value))


def _group_key(row):
    """(mode, case or block, shape, dtype, layout): the rows timed against one eager baseline,
    sortable."""
    return (_rank(MODE_ORDER, row["mode"]), _case(row), tuple(row["shape"]),
            _rank(DTYPE_ORDER, row["dtype"]), row.get("layout") or "")


def _case(row):
    """What the row measures beyond mode and shape: a case name, or a block (two blocks can
    share an input shape and differ in their output channels)."""
    return row.get("case") or row.get("block") or ""


def _sections(rows):
    """{(device, op): {"timed": {group: {backend: row}}, "skipped": [row], "shown": [row]}}.

    bench --out appends, so one file can hold several runs of the same case, and a later file
    may run it again: the row of the latest date wins, timed or skipped (the later one in
    `rows` on the same date), as a re-run is meant to supersede the one before it. "shown" is
    every row the section shows, whose versions and dates its heading gives.
    """
    latest = {}  # (device, op) -> {(group, backend): the latest row}
    for row in sorted(rows, key=_when):  # stable: the same date and time in file order
        latest.setdefault((_where(row), row["op"]), {})[_group_key(row), row["backend"]] = row
    sections = {}
    for section, entries in latest.items():
        s = sections[section] = {"timed": {}, "skipped": [], "shown": list(entries.values())}
        for (group, backend), row in entries.items():
            if "skipped" in row:
                s["skipped"].append(row)
            else:
                s["timed"].setdefault(group, {})[backend] = row
    # GPU figures first: they are what the project is about; the CPU fallback comes last.
    order = sorted(sections, key=lambda k: (_is_cpu(k[0]), k[0].lower(), k[1]))
    return {k: sections[k] for k in order}


def latest_rows(rows) -> list:
    """The rows the report shows: per device, op, group and backend the latest (_sections)."""
    return [row for section in _sections(rows).values() for row in section["shown"]]


def _when(row) -> tuple:
    """When a row was timed, for ordering: its date, then its time of day (rows from before
    the time field came sort first within their day, in file order)."""
    return row.get("date") or "", row.get("time") or ""


def _where(row) -> str:
    """The device a row was timed on. A CPU row names its CPU where it recorded one: the same
    code's CPU speedups differ between machines, so each machine's rows form their own section
    (rows from before the field existed stay plain "cpu")."""
    if row["device"] == "cpu" and row.get("cpu"):
        return f"cpu: {row['cpu']}"
    return row["device"]


def _is_cpu(where: str) -> bool:
    return where == "cpu" or where.startswith("cpu: ")


def _ganfast_backends(group):
    return sorted((b for b in group if b not in BASELINES), key=lambda b: _rank(BACKEND_ORDER, b))


def _distinct(rows, field):
    return ", ".join(sorted({str(r[field]) for r in rows if r.get(field) is not None})) or "none"


def _shape(shape):
    return "x".join(str(n) for n in shape)


def _number(x):
    return f"{x:.4g}" if abs(x) < 1e4 else f"{x:.0f}"


def _time(row):
    """The row's time as shown: host us per call for overhead rows, device ms otherwise."""
    if row is None:
        return DASH
    if row["mode"] == "overhead":
        us = row.get("us_per_call")
        return DASH if us is None else f"{_number(us)} us"
    ms = row.get("median_ms")
    return DASH if ms is None else _number(ms)


def _times(x):
    return DASH if x is None else f"{x:.2f}x"


def _percent(x):
    return DASH if x is None else f"{100 * x:.1f}%"


def _label(row):
    label = f"{row['mode']}: {_case(row)}" if _case(row) else row["mode"]
    return f"{label} ({row['layout']})" if row.get("layout") else label


def _megabytes(row):
    return DASH if row is None or row.get("saved_mb") is None else f"{row['saved_mb']:.3g}"


def _heading(device, op, rows) -> str:
    if _is_cpu(device):  # triton and torch's CUDA build play no part in CPU figures
        return (f"### {op} · {device} ({CPU_LABEL}) · torch {_distinct(rows, 'torch')}"
                f" · {_distinct(rows, 'date')}")
    return (f"### {op} · {device} · torch {_distinct(rows, 'torch')} · triton {_distinct(rows, 'triton')}"
            f" · CUDA {_distinct(rows, 'cuda')} · {_distinct(rows, 'date')}")


def markdown(rows, *, images=None) -> str:
    """One section per (device, op). `images` maps (device, op) to a link for its plot."""
    out = []
    for (device, op), s in _sections(rows).items():
        out += [_heading(device, op, s["shown"]), ""]
        if images and (device, op) in images:
            out += [f"![{op} speedup on {device}]({images[device, op]})", ""]
        # Activation memory (saved for backward beyond the inputs) and the fraction of the
        # matrix throughput reached, where the op's rows have them.
        memory = any(r.get("saved_mb") is not None for r in s["shown"])
        matrix = any(r.get("frac_of_matrix") is not None for r in s["shown"])
        if s["timed"]:
            out += ["| mode | shape | dtype | backend | median ms | eager ms | vs eager | vs torch.compile "
                    "| of copy bandwidth |" + (" of matrix throughput |" if matrix else "")
                    + (" saved MB | eager saved MB |" if memory else ""),
                    "|---|---|---|---|---:|---:|---:|---:|---:|" + ("---:|" if matrix else "")
                    + ("---:|---:|" if memory else "")]
        for key in sorted(s["timed"]):
            group = s["timed"][key]
            for backend in _ganfast_backends(group):
                row = group[backend]
                # A --quick run's figure, fewer calls and noisier, says so.
                shown = f"{backend} (quick)" if row.get("quick") else backend
                cells = [_label(row), _shape(row["shape"]), row["dtype"], shown, _time(row),
                         _time(group.get("eager")), _times(row.get("speedup")),
                         _times(row.get("speedup_vs_compile")), _percent(row.get("frac_of_copy"))]
                if matrix:
                    cells.append(_percent(row.get("frac_of_matrix")))
                if memory:
                    cells += [_megabytes(row), _megabytes(group.get("eager"))]
                out.append("| " + " | ".join(cells) + " |")
        if s["timed"]:
            out.append("")
        if any(r["mode"] == "overhead" for r in s["shown"]):
            out += ["Overhead rows: host microseconds per call on a tiny input, not device time.", ""]
        if s["skipped"]:
            # one row per (group, backend) already: _sections keeps the latest
            seen = sorted(((_group_key(r), r["backend"], _label(r), _shape(r["shape"]), r["dtype"],
                            str(r["skipped"])) for r in s["skipped"]),
                          key=lambda t: (t[0], _rank(BASELINES + BACKEND_ORDER, t[1])))
            out.append("Skipped:")
            out += [f"- {label} {shape} {dtype} {backend}: {reason}"
                    for _, backend, label, shape, dtype, reason in seen]
            out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def slug(*parts) -> str:
    return "-".join(re.sub(r"[^a-z0-9_]+", "-", str(p).lower()).strip("-") for p in parts)


def _png_name(device, op) -> str:
    return f"{slug(op, device)}.png"


def _plotted_groups(section) -> list[dict]:
    """The timed groups of a section that have a ganfast bar to draw (a speedup: a group timed
    without a baseline, such as FID's training-time distance, is in the table only), in the
    table's order."""
    timed = section["timed"]
    return [timed[k] for k in sorted(timed)
            if any(timed[k][b].get("speedup") is not None for b in _ganfast_backends(timed[k]))]


def plot(rows, out_dir) -> list[Path]:
    """One PNG per (device, op) of speedup vs eager: a bar per ganfast backend per group."""
    try:
        import matplotlib
    except ImportError as e:
        raise ImportError("plots need matplotlib: pip install 'ganfast[bench]'") from e
    matplotlib.use("Agg")  # files only: no display on a GPU box or in CI
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    paths = []
    for (device, op), s in _sections(rows).items():
        groups = _plotted_groups(s)
        if not groups:
            continue
        backends = sorted({b for g in groups for b in _ganfast_backends(g)},
                          key=lambda b: _rank(BACKEND_ORDER, b))
        height = 0.8 / len(backends)
        # Grows with the groups so that labels never overlap, however many shapes were run.
        fig, ax = plt.subplots(figsize=(9, 1.5 + 0.45 * len(groups) * max(1, len(backends) / 2)))
        values, labelled = [1.0], set()  # one legend entry per series, however many groups
        for i, group in enumerate(groups):
            for j, backend in enumerate(backends):
                speedup = group.get(backend, {}).get("speedup")
                if speedup is None:
                    continue
                y = i - 0.4 + height * (j + 0.5)
                # Bars grow from 1x, so a slowdown points left rather than hiding below the axis.
                ax.barh(y, speedup - 1, left=1, height=height * 0.9, color=colours[j % len(colours)],
                        label=None if backend in labelled else backend)
                labelled.add(backend)
                ax.text(speedup, y, f" {speedup:.2f}x ", va="center", fontsize=7,
                        ha="left" if speedup >= 1 else "right")
                values.append(speedup)
            compiled = group.get("compile", {}).get("speedup")
            if compiled is not None:
                # A thin line across the group: a marker at its centre hid the bars' labels.
                ax.vlines(compiled, i - 0.45, i + 0.45, color="black", linewidth=1.5,
                          label=None if "compile" in labelled else "torch.compile")
                labelled.add("compile")
                values.append(compiled)
        ax.axvline(1, color="grey", linestyle="--", linewidth=1)
        ax.set_xscale("log")
        ax.set_xlim(min(values) / 1.6, max(values) * 1.6)
        ax.set_yticks(range(len(groups)))
        firsts = [next(iter(g.values())) for g in groups]
        ax.set_yticklabels([f"{_label(r)} {_shape(r['shape'])} {r['dtype']}" for r in firsts], fontsize=8)
        ax.invert_yaxis()  # the table's order, top to bottom
        # Plain "2x" ticks: the default 2x10^0 reads badly for ratios near 1. Over a wide range,
        # powers of two and no minor labels (0.6x..0.9x ran into each other next to 1x).
        ticks = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}x")
        ax.xaxis.set_major_formatter(ticks)
        low, high = ax.get_xlim()
        if high / low > 8:
            ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=2))
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        else:
            ax.xaxis.set_minor_formatter(ticks)
            ax.tick_params(axis="x", which="minor", labelsize=7)
        modes = {r["mode"] for g in groups for r in g.values()}
        notes = (["overhead: host time per call"] if "overhead" in modes else []) \
            + (["compile time: ratio of compile times"] if "compile time" in modes else [])
        # The notes on a line of their own: after the axis name they ran off the figure.
        axis = "speedup vs eager, the code it replaces (log scale)"
        ax.set_xlabel("\n".join([axis, "; ".join(notes)][:1 + bool(notes)]))
        # The CPU caveat on a line of its own: after a CPU's long name it ran off the figure.
        where = f"{device}\nCPU fallback path only, not a GPU figure" if _is_cpu(device) else device
        ax.set_title(f"{op} on {where}\n{_distinct(s['shown'], 'date')}", fontsize=10)
        ax.legend(loc="best", fontsize=8)
        ax.grid(axis="x", which="both", alpha=0.3)
        fig.tight_layout()
        path = out_dir / _png_name(device, op)
        write_atomically(path, lambda tmp, fig=fig: fig.savefig(tmp, format="png", dpi=110))
        plt.close(fig)
        paths.append(path)
    return paths


def spliced(text: str, body: str, markers=(BEGIN, END), name="the README") -> str:
    """text with the lines between the markers replaced by body, the markers kept."""
    BEGIN, END = markers  # noqa: N806 - the module's markers unless others are given
    lines = text.splitlines(keepends=True)
    stripped = [line.strip() for line in lines]
    if stripped.count(BEGIN) != 1 or stripped.count(END) != 1 or stripped.index(BEGIN) > stripped.index(END):
        raise ValueError(f"{name}: the markers {BEGIN} and {END} are missing "
                         "(each must appear once, on a line of its own, begin before end)")
    begin, end = stripped.index(BEGIN), stripped.index(END)
    body = body if body.endswith("\n") or not body else body + "\n"
    return "".join(lines[:begin + 1]) + body + "".join(lines[end:])


def write_report(paths, out_dir, readme=None) -> dict:
    """report.md and the plots in out_dir; the same markdown spliced into `readme` if given.
    Everything is checked (the rows, the README's markers) before anything is written."""
    rows = load_rows(paths)
    if not rows:
        names = [paths] if isinstance(paths, (str, os.PathLike)) else paths
        raise ValueError(f"no result rows in {', '.join(map(str, names))}: nothing to report")
    out_dir = Path(out_dir)
    # A section of skipped rows only has no plot, so it gets no link.
    by_section = {k: out_dir / _png_name(*k) for k, section in _sections(rows).items()
                  if _plotted_groups(section)}

    def links(base):
        # Links relative to the file that holds them, so the report and README both render on GitHub.
        return {k: Path(os.path.relpath(p.resolve(), Path(base).resolve())).as_posix()
                for k, p in by_section.items()}

    new_readme = None
    if readme is not None:
        readme = Path(readme)
        # (relative to the file the links are written in: a symlink's target, elsewhere perhaps)
        new_readme = spliced(readme.read_text(), markdown(rows, images=links(readme.resolve().parent)),
                             name=str(readme))
        steps = [row for row in rows if row["op"] == "train_step"]
        if steps:
            new_readme = spliced(new_readme, train_step_table(steps), TRAIN_STEP_MARKERS,
                                 name=str(readme))
    plots = plot(rows, out_dir)
    report = out_dir / "report.md"
    text = "# ganfast benchmark report\n\n" + markdown(rows, images=links(out_dir))
    write_atomically(report, lambda tmp: Path(tmp).write_text(text))
    if new_readme is not None:
        write_atomically(readme, lambda tmp: Path(tmp).write_text(new_readme))
    return {"markdown": report, "plots": plots}


TRAIN_STEP_MARKERS = ("<!-- train-step:begin -->", "<!-- train-step:end -->")


def train_step_table(rows) -> str:
    """Whole training steps per second, stock layers against ganfast.accelerate, eager and
    compiled: the README's opening table (GPU rows first, CPU rows labelled)."""
    runs = {}
    # The row of the latest date wins, the later one in `rows` on the same date, as in _sections;
    # a full run's row over any --quick one (a smoke run of fewer calls, marked where shown).
    for row in sorted(rows, key=lambda r: (not r.get("quick"), _when(r))):
        runs.setdefault((_where(row), row["mode"], tuple(row["shape"]), row["dtype"]), {})[
            row["backend"]] = row
    lines = ["| device | model, loss | batch | dtype | stock steps/s | accelerated | speedup "
             "| stock compiled | accelerated compiled | speedup |",
             "|---|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for (device, mode, shape, dtype), by in sorted(runs.items(), key=lambda kv: (_is_cpu(kv[0][0]),
                                                                                 kv[0])):
        # A row without a time (not measured, or written by hand) shows a dash, as in markdown().
        def rate(backend, by=by):
            row = by.get(backend)
            if row is None:
                return DASH
            if "skipped" in row:
                return "fails"
            return DASH if row.get("median_ms") is None else f"{1e3 / row['median_ms']:.2f}"

        def ratio(backend, baseline, by=by):
            a, b = by.get(backend), by.get(baseline)
            if not a or not b or "skipped" in a or "skipped" in b:
                return DASH
            if a.get("median_ms") is None or b.get("median_ms") is None:
                return DASH
            return f"{b['median_ms'] / a['median_ms']:.2f}x"

        where = f"CPU{device.removeprefix('cpu')} (not a GPU figure)" if _is_cpu(device) else device
        if any(row.get("quick") for row in by.values()):
            mode = f"{mode} (quick)"
        lines.append(f"| {where} | {mode} | {shape[0]} | {dtype} | {rate('eager')} | "
                     f"{rate('ganfast')} | {ratio('ganfast', 'eager')} | {rate('compile')} | "
                     f"{rate('ganfast+compile')} | {ratio('ganfast+compile', 'compile')} |")
    return "\n".join(lines) + "\n"
