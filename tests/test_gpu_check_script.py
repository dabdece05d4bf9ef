"""scripts/gpu_check.sh (`make gpu-check`), the device session's check, run here on the CPU:
its stages, time limits and what it leaves in OUT (the device tool returns at most 8 files)."""

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "gpu_check.sh"


def _run(out, *stages, scale="1"):
    env = {**os.environ, "GPU_PY": sys.executable, "GPU_CHECK_SCALE": scale}
    return subprocess.run(["bash", str(SCRIPT), str(out), *stages], env=env, text=True,
                          capture_output=True, timeout=120)


def test_stages_leave_at_most_eight_files_and_a_summary(tmp_path):
    assert _run(tmp_path, "info").returncode == 0
    result = _run(tmp_path, "bench-fid", scale="0.01")  # a second call; bench-fid limited to 1 s
    assert result.returncode == 0, result.stderr
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["info.json", "logs.tar.gz", "summary.txt"]
    assert json.loads((tmp_path / "info.json").read_text())["ops"]
    summary = (tmp_path / "summary.txt").read_text().splitlines()
    assert summary[0].startswith("info: exit 0")
    assert summary[1].startswith("bench-fid: exit 124 (time limit)")
    listing = subprocess.run(["tar", "tzf", str(tmp_path / "logs.tar.gz")], text=True,
                             capture_output=True, check=True).stdout.split()
    assert {"logs/info.log", "logs/bench-fid.log"} <= set(listing)


def test_unknown_stage_is_refused_with_the_known_ones(tmp_path):
    result = _run(tmp_path, "benchmarks")
    assert result.returncode == 2
    assert "unknown stage benchmarks" in result.stderr and "bench-upsample" in result.stderr
