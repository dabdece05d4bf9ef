"""scripts/gpu_check.sh (`make gpu-check`), the device session's check, run here on the CPU:
its stages, time limits, deadline and what it leaves in OUT (the device tool returns at most
8 files)."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "gpu_check.sh"

# Stands in for python3 in a stage: "import ..." checks fail (no xdist here), anything else
# runs until SIGINT, which it either catches (writes the marker, exits) or ignores.
FAKE_PYTHON = """#!/usr/bin/env bash
case "$*" in *import*) exit 1 ;; esac
if [ "$FAKE_MODE" = catch ]; then trap 'echo "$*" > "$MARK"; exit 0' INT; else trap '' INT; fi
sleep 30 & wait $!
"""


def _run(out, *stages, python=sys.executable, **env):
    # no peer wheels unless a test gives some (a .whl/ left by `make gpu-wheels` in this checkout
    # would be installed and named in the summary)
    env = {**os.environ, "GPU_PY": str(python), "GPU_CHECK_WHEELS": str(out) + ".no-wheels",
           "TMPDIR": str(Path(out).parent), **env}
    return subprocess.run(["bash", str(SCRIPT), str(out), *stages], env=env, text=True,
                          capture_output=True, timeout=120)


def _summary(out):
    return (out / "summary.txt").read_text().splitlines()


def _python(tmp_path, script=None):
    """An executable stand-in for the device's python: FAKE_PYTHON or another script."""
    path = tmp_path / ("fake-python" if script is None else "recording-python")
    path.write_text(FAKE_PYTHON if script is None else script)
    path.chmod(0o755)
    return path


def test_stages_leave_few_files_and_a_summary(tmp_path):
    out = tmp_path / "out"
    assert _run(out, "info").returncode == 0
    # a second call into the same OUT keeps the first one's logs in the one archive
    assert _run(out, "info").returncode == 0
    assert sorted(p.name for p in out.iterdir()) == ["logs.tar.gz", "summary.txt"]
    assert [line.split(",")[0] for line in _summary(out)] == ["info: exit 0"] * 2
    listing = subprocess.run(["tar", "tzf", str(out / "logs.tar.gz")], text=True,
                             capture_output=True, check=True).stdout.split()
    assert "logs/info.log" in listing
    info = subprocess.run(["tar", "xzOf", str(out / "logs.tar.gz"), "logs/info.json"], text=True,
                          capture_output=True, check=True).stdout
    assert json.loads(info)["ops"]


def test_a_full_run_leaves_at_most_eight_files(tmp_path):
    # The device tool returns at most 8 files from OUT: every stage at once must fit.
    out = tmp_path / "out"
    for name in ("gpu-tests.xml", *(f"{op}.jsonl" for op in (
            "gradient_penalty", "upsample_conv", "spectral_norm", "train_step", "fid"))):
        out.mkdir(exist_ok=True)
        (out / name).write_text("")  # what the tests and benchmark stages write
    assert _run(out, "info").returncode == 0
    assert len(list(out.iterdir())) <= 8


def test_a_stage_at_its_limit_gets_sigint_first(tmp_path):
    out, mark = tmp_path / "out", tmp_path / "interrupted"
    result = _run(out, "bench-sn", python=_python(tmp_path), FAKE_MODE="catch",
                  MARK=str(mark), GPU_CHECK_SCALE="0.04", GPU_CHECK_GRACE="5")  # a 2 s limit
    assert result.returncode == 124
    assert _summary(out)[0].startswith("bench-spectral_norm: exit 124 (time limit)")
    # the benchmark got SIGINT (to save its rows), with its rows file named
    assert f"--out {out}/spectral_norm.jsonl" in mark.read_text()


def test_a_stage_ignoring_sigint_is_killed_after_the_grace(tmp_path):
    out = tmp_path / "out"
    result = _run(out, "bench-sn", python=_python(tmp_path), FAKE_MODE="ignore",
                  GPU_CHECK_SCALE="0.04", GPU_CHECK_GRACE="1")
    assert result.returncode == 137
    assert _summary(out)[0].startswith("bench-spectral_norm: exit 137 (killed 1 s after")


def test_stages_past_the_deadline_are_skipped(tmp_path):
    out = tmp_path / "out"
    result = _run(out, "bench-sn", "bench-fid", python=_python(tmp_path),
                  FAKE_MODE="catch", MARK=str(tmp_path / "m"), GPU_CHECK_DEADLINE="20",
                  GPU_CHECK_GRACE="1")
    # 20 s less the grace and a 5 s margin leave 14 s: under the 15 s a stage needs
    assert result.returncode == 0
    assert [line.split(",")[0] for line in _summary(out)] == [
        "bench-spectral_norm: skipped", "bench-fid: skipped"]


def test_unknown_stage_is_refused_before_any_stage_runs(tmp_path):
    result = _run(tmp_path / "out", "info", "benchmarks")
    assert result.returncode == 2
    assert "unknown stage benchmarks" in result.stderr and "bench-upsample" in result.stderr
    assert not (tmp_path / "out").exists()


def _wheel(folder: Path, name: str, module: str | None = None) -> Path:
    """A minimal pure-Python wheel holding module `module` (default: its name), as `make
    gpu-wheels` downloads."""
    import zipfile

    path = folder / f"{name}-0.1-py3-none-any.whl"
    info = f"{name}-0.1.dist-info"
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr(f"{module or name}.py", "PEER = True\n")
        wheel.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
        wheel.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\n"
                                        "Root-Is-Purelib: true\nTag: py3-none-any\n")
        wheel.writestr(f"{info}/RECORD", "")
    return path


def test_carried_peer_wheels_are_installed_for_the_stages(tmp_path):
    # The device image lacks pytorch-fid and torch-fidelity: wheels carried in .whl/ are
    # installed for the run, and the stages import them.
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel(wheels, "ganfast_test_peer")
    python = tmp_path / "python-with-peer-check"
    python.write_text(f"""#!/usr/bin/env bash
case "$*" in *"ganfast info"*) exec {sys.executable} -c "import ganfast_test_peer" ;; esac
exec {sys.executable} "$@"
""")
    python.chmod(0o755)
    out = tmp_path / "out"
    # a path relative to where the script is called, as OUT
    result = subprocess.run(["bash", str(SCRIPT), "out", "info"], cwd=tmp_path, text=True,
                            capture_output=True, timeout=120, env={
                                **os.environ, "GPU_PY": str(python), "TMPDIR": str(tmp_path),
                                "GPU_CHECK_WHEELS": "wheels"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert _summary(out)[0] == "peers: ganfast_test_peer-0.1-py3-none-any.whl"
    assert _summary(out)[1].startswith("info: exit 0")
    # a wheel whose module cannot be imported under its name is said so
    _wheel(wheels, "ganfast_test_broken", module="elsewhere")
    _run(tmp_path / "out3", "info", python=python, GPU_CHECK_WHEELS=str(wheels))
    assert _summary(tmp_path / "out3")[0] == (
        "peers: ganfast_test_broken-0.1-py3-none-any.whl ganfast_test_peer-0.1-py3-none-any.whl "
        "(not importable: ganfast_test_broken)")
    # without the wheels the import fails: the check above is the installation's
    assert _run(tmp_path / "out2", "info", python=python,
                GPU_CHECK_WHEELS=str(tmp_path / "none")).returncode != 0


@pytest.mark.parametrize("setting, value", [
    ("GPU_CHECK_DEADLINE", "420s"), ("GPU_CHECK_DEADLINE", "7m"), ("GPU_CHECK_GRACE", "ten"),
    ("GPU_CHECK_SCALE", "half"), ("GPU_CHECK_SCALE", "0"), ("GPU_CHECK_GRACE", "0"),
    ("GPU_CHECK_DRY_RUN", "yes"), ("GPU_CHECK_DRY_BUILD_S", "10s")])
def test_a_setting_that_is_not_a_number_is_refused_before_any_stage(tmp_path, setting, value):
    # GPU_CHECK_DEADLINE=420s made every stage fail its deadline check: all skipped, exit 0, a
    # device call spent on nothing; GPU_CHECK_SCALE=half ran each stage for 1 s.
    out = tmp_path / "out"
    result = _run(out, "info", **{setting: value})
    assert result.returncode == 2
    assert f"gpu_check: {setting} must be" in result.stderr and f"got {value}" in result.stderr
    assert not out.exists()


RECORDING_PYTHON = """#!/usr/bin/env bash
case "$*" in
  *ganfast.info*) echo "ganfast._C: not loaded: the CUDA extension failed to compile"; exit 1 ;;
  *import*) exit 1 ;;
  *"ganfast info"*) echo "{}"; exit 0 ;;
esac
echo "$*" >> "$CALLS"
case "$*" in *"ganfast bench"*) echo $$ > "$MARK.tmp"; mv "$MARK.tmp" "$MARK"; exec sleep 60 ;; esac
"""


def test_the_build_installs_offline_with_the_compile_log_and_says_if_the_extension_loads(tmp_path):
    # The device machine has no network: pip is told so (--no-index). A compile that fails is a
    # warning in a passing install, which pip hides without -v: the log now holds nvcc's output,
    # and the summary says whether ganfast._C loads (the second call runs no info stage).
    out, calls = tmp_path / "out", tmp_path / "calls"
    result = _run(out, "build", python=_python(tmp_path, RECORDING_PYTHON), CALLS=str(calls))
    assert result.returncode == 1
    pip = calls.read_text().split()
    assert pip[:3] == ["-m", "pip", "install"]
    assert {"--no-index", "-v", "-e", "--no-build-isolation", "--no-deps"} <= set(pip)
    line = _summary(out)[0]
    assert line.startswith("build: exit 1, ")
    assert line.endswith("s; ganfast._C: not loaded: the CUDA extension failed to compile")


def test_a_call_cut_short_keeps_the_finished_stages_logs_in_few_files(tmp_path):
    # The device tool's own limit (less device time left than timeout_s) kills the whole call:
    # the logs were archived only at the end, so none came back, and logs/ held a file per stage
    # beyond the 8 files that come back.
    import signal
    import time

    out, mark = tmp_path / "out", tmp_path / "bench-started"
    env = {**os.environ, "GPU_PY": str(_python(tmp_path, RECORDING_PYTHON)), "CALLS": str(tmp_path / "c"),
           "MARK": str(mark), "GPU_CHECK_WHEELS": str(tmp_path / "none"), "TMPDIR": str(tmp_path)}
    script = subprocess.Popen(["bash", str(SCRIPT), str(out), "info", "bench-sn"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        for _ in range(600):  # the benchmark stage is running once the mark is there
            if mark.exists() or script.poll() is not None:
                break
            time.sleep(0.1)
        assert mark.exists(), "the benchmark stage did not start"
    finally:
        os.killpg(script.pid, signal.SIGKILL)  # as the device tool stops a call
        script.wait()
        if mark.exists():  # the stand-in benchmark, in timeout's process group
            os.kill(int(mark.read_text()), signal.SIGKILL)
    names = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert names == ["logs.tar.gz", "logs/bench-spectral_norm.log", "summary.txt"]
    listing = subprocess.run(["tar", "tzf", str(out / "logs.tar.gz")], text=True,
                             capture_output=True, check=True).stdout.split()
    assert {"logs/info.log", "logs/info.json"} <= set(listing)
    assert _summary(out)[0].startswith("info: exit 0")


def test_a_dry_run_runs_no_stage_and_shows_the_limits_of_the_worst_case(tmp_path):
    out, calls = tmp_path / "out", tmp_path / "calls"
    result = _run(out, "build", "bench-upsample", "bench-sn", python=_python(tmp_path, RECORDING_PYTHON),
                  CALLS=str(calls), GPU_CHECK_DRY_RUN="1", GPU_CHECK_DEADLINE="300",
                  GPU_CHECK_GRACE="10")
    assert result.returncode == 0, result.stderr
    assert not calls.exists()  # nothing ran
    assert "== build (limit 240s): bash -c" in result.stdout
    summary = _summary(out)
    assert summary[0] == "build: dry run, limit 240s"
    # 300 s less the build's 240 + 10 s of grace, the next stage's 10 s and a 5 s margin
    assert re.fullmatch(r"bench-upsample_conv: dry run, limit 3[0-5]s", summary[1])
    assert summary[2].startswith("bench-spectral_norm: skipped")
    assert sorted(p.name for p in out.iterdir()) == ["logs.tar.gz", "summary.txt"]


def test_a_dry_run_shows_a_warm_machines_limits_with_the_build_time_given(tmp_path):
    # The two calls of a session as documented, on a warm machine (the build kept: seconds):
    # every stage keeps its whole limit, but the last, which gets what the others leave.
    out, calls = tmp_path / "out", tmp_path / "calls"
    started = time.monotonic()
    result = _run(out, "build", "bench-upsample", "bench-sn", "bench-fid", "bench-train",
                  python=_python(tmp_path, RECORDING_PYTHON), CALLS=str(calls),
                  GPU_CHECK_DRY_RUN="1", GPU_CHECK_DEADLINE="300", GPU_CHECK_DRY_BUILD_S="10")
    ran_s = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert not calls.exists()
    summary = _summary(out)
    assert summary[:4] == ["build: dry run, limit 240s", "bench-upsample_conv: dry run, limit 100s",
                           "bench-spectral_norm: dry run, limit 60s", "bench-fid: dry run, limit 45s"]
    # 300 s less the build's 10, each stage's limit and 10 s of grace, and a 5 s margin: 40 s,
    # less the whole seconds the script's own clock (bash's SECONDS) saw pass, as on the device,
    # where the peers' install before the first stage takes time from the last: at most one more
    # than the seconds the call took, as a second's boundary may fall in a call of 0.1 s
    last = re.fullmatch(r"bench-train_step: dry run, limit (\d+)s", summary[4])
    assert last, summary[4]
    assert 40 - (int(ran_s) + 1) <= int(last[1]) <= 40, (summary[4], ran_s)
