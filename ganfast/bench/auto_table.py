"""The backend order that "auto" tries on CUDA, decided by measurement.

`ganfast bench --report FILES --auto-table` ranks each op's ganfast backends by the geometric
mean of their speedup over eager canonical code across every GPU row of the op (device time
per pass and host time per call alike), and writes ganfast/ops/auto_backends.json, which the
package ships and ganfast.backends reads. The ranking per shape class (small inputs, where
host time decides, and large ones, where bandwidth does) is recorded beside it, so a
disagreement between the classes is visible in the table.
"""

import json
import math
from pathlib import Path

from .._files import write_atomically
from ..backends import AUTO_TABLE, auto_table

GPU_BACKENDS = ("cuda", "triton", "torch")
SMALL_NUMEL = 1 << 20  # below this many elements a pass costs less than its launch


def _shape_class(row) -> str:
    return "small" if row["mode"] == "overhead" or math.prod(row["shape"]) < SMALL_NUMEL \
        else "large"


def _ranking(rows) -> list[str]:
    logs = {}
    for row in rows:
        if row.get("speedup"):
            logs.setdefault(row["backend"], []).append(math.log(row["speedup"]))
    scores = {b: sum(v) / len(v) for b, v in logs.items()}
    ranked = sorted(scores, key=lambda b: -scores[b])
    return ranked + [b for b in GPU_BACKENDS if b not in ranked]


def table(rows) -> dict:
    """{op: {"order": [...], "by_shape_class": {...}, "measured": True, "device", "date"}}."""
    from .report import latest_rows

    result = {}
    # The ops that have backends to choose among (the shipped table's: not fid or train_step,
    # whatever their rows call ganfast). A --quick run's rows are too few calls to rank by;
    # compile-time rows time torch.compile, not a step. Of repeated runs of a case, the latest
    # row, as the report shows it (older runs must not outvote a newer one).
    usable = [r for r in rows if not r.get("quick") and r["mode"] != "compile time"]
    gpu = [r for r in latest_rows(usable) if r["device"] != "cpu"
           and r["backend"] in GPU_BACKENDS and r["op"] in auto_table() and "skipped" not in r]
    for op in sorted({r["op"] for r in gpu}):
        mine = [r for r in gpu if r["op"] == op]
        result[op] = {
            "order": _ranking(mine),
            "by_shape_class": {c: _ranking([r for r in mine if _shape_class(r) == c])
                               for c in ("small", "large")},
            "measured": True,
            "device": sorted({r["device"] for r in mine}),
            # rows may lack a date (the report accepts them): the latest of those that have one
            "date": max((r["date"] for r in mine if r.get("date")), default=None),
            "note": "ranked by the geometric mean speedup over eager canonical code "
                    "(ganfast bench --report ... --auto-table)",
        }
    return result


def write(rows, path: Path = AUTO_TABLE) -> dict:
    """Merge the measured ops into the shipped table (ops without GPU rows keep their entry);
    the entries written, none (and the file untouched) when no row is a GPU row.
    An op's "kernels" (the backends it has a kernel for) are kept, and its orders hold only
    those."""
    current = json.loads(path.read_text()) if path.exists() else {}
    measured = table(rows)
    for op, entry in measured.items():
        known = current.get(op, {}).get("kernels")
        if known:
            entry["kernels"] = known
            entry["order"] = [b for b in entry["order"] if b in known]
            entry["by_shape_class"] = {c: [b for b in order if b in known]
                                       for c, order in entry["by_shape_class"].items()}
        current[op] = entry
    if measured:
        text = json.dumps(current, indent=2) + "\n"
        write_atomically(path, lambda tmp: Path(tmp).write_text(text))
    return {op: current[op] for op in measured}
