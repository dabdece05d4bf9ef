"""The Triton kernels compile for the GPU targets (scripts/triton_compile_check.py): what the
interpreter tests cannot see, checked without a GPU."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("triton")

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def run_python(tmp_path, args, interpret=False):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    if interpret:
        env["TRITON_INTERPRET"] = "1"
    env["TRITON_CACHE_DIR"] = str(tmp_path / "triton-cache")  # compiled afresh, not from a cache
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=900)


def test_every_kernel_compiles_for_the_gpu_targets(tmp_path):
    """Every kernel of ganfast.kernels, in every variant its launchers make, compiles to a
    cubin for sm_80 (A100), sm_89 (99 KB of shared memory, as on the consumer GPUs) and sm_90
    (H100, H200) and fits its target's shared memory."""
    result = run_python(tmp_path, [str(SCRIPTS / "triton_compile_check.py"),
                                   "--arch", "80,89,90"])
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-6000:]
    assert "all variants compiled for sm_80, sm_89, sm_90" in result.stdout
    hopper_rows = [row for row in result.stdout.splitlines() if row.startswith("| sm_90 |")]
    for kernel in ("_interpolate_kernel", "_sum_squares_kernel", "_norms_and_penalty_kernel",
                   "_norm_backward_kernel", "_normalize_group_kernel",
                   "_normalize_group_backward_kernel", "_upsample_conv_kernel"):
        assert any(f"| {kernel} |" in row for row in hopper_rows), kernel


BROKEN = '''
import torch
import triton
import triton.language as tl


@triton.jit
def _type_changing_kernel(x_ptr, n):
    total = 0  # an integer that the loop makes a float: the interpreter runs it, the compiler
    for i in range(n):  # refuses a loop-carried value that changes type
        total += tl.load(x_ptr + i)
    tl.store(x_ptr, total)


@triton.jit
def _wide_dot_kernel(a_ptr, b_ptr, c_ptr, K, BLOCK: tl.constexpr):
    rows = tl.arange(0, BLOCK)
    acc = tl.zeros([BLOCK, BLOCK], dtype=tl.float32)
    for k in range(0, K, BLOCK):  # pipelined: a [128, 128] half tile of each operand per stage
        a = tl.load(a_ptr + rows[:, None] * K + k + rows[None, :])
        b = tl.load(b_ptr + (k + rows[:, None]) * BLOCK + rows[None, :])
        acc += tl.dot(a, b)
    tl.store(c_ptr + rows[:, None] * BLOCK + rows[None, :], acc)


def type_changing():
    x = torch.ones(8)
    _type_changing_kernel[(1,)](x, 8)
    return x


def variants():
    yield "type change", type_changing
    a = torch.randn(128, 512, dtype=torch.float16)
    b = torch.randn(512, 128, dtype=torch.float16)
    c = torch.empty(128, 128)
    yield "wide dot", lambda: _wide_dot_kernel[(1,)](a, b, c, 512, BLOCK=128, num_stages=4)
    yield "no launch", lambda: None  # a launcher that returns before its kernel
'''


def test_the_check_reports_what_only_the_compiler_sees(tmp_path):
    """A kernel the interpreter runs but the compiler refuses, one that needs more shared memory
    than the target has, a variant that launches nothing and a kernel no variant launches: each
    is reported, exit status 1."""
    (tmp_path / "broken.py").write_text(BROKEN)
    interpreted = run_python(tmp_path, ["-c", "import broken; print(float(broken.type_changing()[0]))"],
                             interpret=True)
    assert interpreted.returncode == 0, interpreted.stderr[-3000:]
    assert float(interpreted.stdout) == 8.0

    check = textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(SCRIPTS)!r}, "."]
        import broken, triton_compile_check as c
        sys.exit(c.check([89], [broken.variants], expected_kernels=[
            "_type_changing_kernel", "_wide_dot_kernel", "_never_launched_kernel"]))
    """)
    result = run_python(tmp_path, ["-c", check])
    assert result.returncode == 1, result.stdout[-6000:] + result.stderr[-6000:]
    problems = [line for line in result.stdout.splitlines() if line.startswith("PROBLEM")]
    assert len(problems) == 4, result.stdout
    assert problems[0].startswith("PROBLEM sm_89 type change: CompilationError")
    assert "_wide_dot_kernel needs" in problems[1] and "gives a block 101376" in problems[1]
    assert problems[2] == "PROBLEM sm_89 no launch: launched no kernel"
    assert problems[3] == "PROBLEM never launched (add a variant): ['_never_launched_kernel']"


def test_an_architecture_without_a_known_limit_is_refused(tmp_path):
    result = run_python(tmp_path, [str(SCRIPTS / "triton_compile_check.py"), "--arch", "90,75"])
    assert result.returncode == 2
    assert "--arch: no shared-memory limit known for [75]" in result.stderr


def test_launcher_host_times_are_printed(tmp_path):
    result = run_python(tmp_path, [str(SCRIPTS / "triton_compile_check.py"), "--host-time"])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = [row.split("|") for row in result.stdout.splitlines() if row.startswith("| ")]
    timed = {cells[1].strip(): float(cells[2]) for cells in rows[1:]}
    assert len(timed) == 5 and all(us > 0 for us in timed.values()), result.stdout
