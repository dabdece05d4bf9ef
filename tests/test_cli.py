"""`ganfast info` and `python -m ganfast` on the command line."""

import json
import subprocess
import sys


def test_info_prints_json_with_every_op_backend():
    out = subprocess.run([sys.executable, "-m", "ganfast", "info", "--json"], check=True,
                         capture_output=True, text=True).stdout
    report = json.loads(out)
    assert report["torch"]
    assert report["ops"]["gradient_penalty"]["auto"] in ("torch", "triton", "cuda")
    assert set(report["extension"]) >= {"built", "loaded", "reason"}


def test_info_human_readable():
    out = subprocess.run([sys.executable, "-m", "ganfast", "info"], check=True,
                         capture_output=True, text=True).stdout
    assert "gradient_penalty" in out and "extension" in out


def test_bench_writes_rows_side_by_side(tmp_path):
    from ganfast.cli import main

    out = tmp_path / "rows.jsonl"
    assert main(["bench", "--device", "cpu", "--shape", "3x2x5x5", "--no-compile",
                 "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    modes = {(r["mode"], r["backend"]) for r in rows}
    for mode in ("interp", "fwd", "bwd", "fwd+bwd", "full"):
        assert {(mode, "eager"), (mode, "torch")} <= modes
    for row in rows:
        assert row["median_ms"] > 0 and row["device"] == "cpu" and row["date"]
        if row["backend"] == "eager":
            assert row["speedup"] == 1.0
        assert (row["gbps"] is None) == (row["mode"] == "full")  # full: time only
