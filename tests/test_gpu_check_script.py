"""scripts/gpu_check.sh (`make gpu-check`), the device session's check, run here on the CPU:
its stages, time limits, deadline and what it leaves in OUT (the device tool returns at most
8 files)."""

import json
import os
import subprocess
import sys
from pathlib import Path

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


def _fake_python(tmp_path):
    path = tmp_path / "fake-python"
    path.write_text(FAKE_PYTHON)
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
    result = _run(out, "bench-sn", python=_fake_python(tmp_path), FAKE_MODE="catch",
                  MARK=str(mark), GPU_CHECK_SCALE="0.04", GPU_CHECK_GRACE="5")  # a 2 s limit
    assert result.returncode == 124
    assert _summary(out)[0].startswith("bench-spectral_norm: exit 124 (time limit)")
    # the benchmark got SIGINT (to save its rows), with its rows file named
    assert f"--out {out}/spectral_norm.jsonl" in mark.read_text()


def test_a_stage_ignoring_sigint_is_killed_after_the_grace(tmp_path):
    out = tmp_path / "out"
    result = _run(out, "bench-sn", python=_fake_python(tmp_path), FAKE_MODE="ignore",
                  GPU_CHECK_SCALE="0.04", GPU_CHECK_GRACE="1")
    assert result.returncode == 137
    assert _summary(out)[0].startswith("bench-spectral_norm: exit 137 (killed 1 s after")


def test_stages_past_the_deadline_are_skipped(tmp_path):
    out = tmp_path / "out"
    result = _run(out, "bench-sn", "bench-fid", python=_fake_python(tmp_path),
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
