"""`ganfast info` and `python -m ganfast` on the command line."""

import json
import subprocess
import sys

import pytest


def test_info_prints_json_with_every_op_backend():
    out = subprocess.run([sys.executable, "-m", "ganfast", "info", "--json"], check=True,
                         capture_output=True, text=True).stdout
    report = json.loads(out)
    assert report["torch"]
    assert report["ops"]["gradient_penalty"]["auto"] in ("torch", "triton", "cuda")
    assert set(report["extension"]) >= {"built", "loaded", "reason"}


@pytest.mark.parametrize("setting,expected", [
    # (the machine's reason follows: no CUDA device, or a CPU-only build of torch)
    ("cuda", "refused: ganfast backend 'cuda' cannot run the gradient_penalty ops here: "),
    ("Torch", "refused: GANFAST_BACKEND must be one of"),
])
def test_info_explains_a_global_backend_that_cannot_run(setting, expected):
    # The command a user runs after a BackendUnavailable: it answers, rather than raising again.
    import os

    env = {**os.environ, "GANFAST_BACKEND": setting, "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run([sys.executable, "-m", "ganfast", "info", "--json"], check=True,
                         capture_output=True, text=True, env=env).stdout
    report = json.loads(out)
    assert report["ops"]["gradient_penalty"]["auto"].startswith(expected)
    assert report["backend_setting"] == (setting if setting == "cuda" else
                                         f"invalid (GANFAST_BACKEND must be one of auto, cuda, "
                                         f"triton, torch; got {setting!r})")


def test_info_human_readable():
    out = subprocess.run([sys.executable, "-m", "ganfast", "info"], check=True,
                         capture_output=True, text=True).stdout
    assert "gradient_penalty" in out and "extension" in out


def _info_report(setting: str, auto: str, cuda: bool) -> dict:
    entry = {"auto": auto, "auto_order_measured": True, "available": {"torch": "yes"}}
    return {"ganfast": "0", "torch": "2.11.0+cpu", "torch_cuda": None, "triton": None,
            "python": "3.11", "device": "cpu", "cuda_available": cuda, "backend_setting": setting,
            "extension": {"loaded": False, "reason": "not built"},
            "ops": {"gradient_penalty": entry}}


@pytest.mark.parametrize("setting,auto,line", [
    ("auto", "cuda", "gradient_penalty: auto -> cuda (measured)"),  # (a GPU's report)
    ("auto", "torch", "gradient_penalty: auto -> torch\n"),  # on a CPU, no order to measure
    ("torch", "torch", "gradient_penalty: torch -> torch\n"),
    ("cuda", "refused: it needs CUDA tensors", "gradient_penalty: cuda -> refused: it needs CUDA "
     "tensors\n"),
    ("invalid (GANFAST_BACKEND ...)", "refused: GANFAST_BACKEND ...",
     "gradient_penalty: refused, the backend setting is invalid\n"),
])
def test_info_text_says_what_the_setting_chose(monkeypatch, capsys, setting, auto, line):
    # "CUDA None" and "triton None" were printed for a CPU-only torch without triton, and a
    # refusal or a backend set by name read "auto -> refused: ... (measured)"
    from ganfast.cli import main

    # the module (ganfast.info is the function ganfast exports)
    report = _info_report(setting, auto, cuda=auto == "cuda")
    monkeypatch.setattr(sys.modules["ganfast.info"], "info", lambda: report)
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "torch 2.11.0+cpu (a CPU-only build)  triton not installed" in out
    assert "None" not in out and line in out


def test_bench_writes_rows_side_by_side(tmp_path):
    import ganfast
    from ganfast.cli import main

    out = tmp_path / "rows.jsonl"
    assert main(["bench", "--device", "cpu", "--shape", "3x2x5x5", "--batch", "2",
                 "--no-compile", "--mode", "kernels", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    modes = {(r["mode"], r["backend"]) for r in rows}
    for mode in ("interp", "fwd", "bwd", "fwd+bwd", "full"):
        assert {(mode, "eager"), (mode, "torch")} <= modes
    for row in rows:
        assert row["median_ms"] > 0 and row["device"] == "cpu" and row["date"]
        assert row["ganfast"] == ganfast.__version__ and row["time"].endswith(" UTC")
        assert "quick" not in row  # a full run's rows
        if row["backend"] == "eager":
            assert row["speedup"] == 1.0
        assert (row["gbps"] is None) == (row["mode"] == "full")  # full: time only
        assert row["shape"] == ([2, 3, 64, 64] if row["mode"] == "full" else [3, 2, 5, 5])


def test_bench_overhead_mode_times_host_calls(tmp_path):
    from ganfast.cli import main

    out = tmp_path / "rows.jsonl"
    assert main(["bench", "--device", "cpu", "--mode", "overhead", "--quick", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    cases = {(r["case"], tuple(r["shape"]), r["backend"]) for r in rows}
    for case, shape in [("per_sample_norm", (4, 3, 4, 4)), ("interpolate", (4, 3, 4, 4)),
                        ("penalty fwd+bwd", (4, 3, 4, 4)), ("wgan-gp step", (4, 3, 8, 8)),
                        ("wgan-gp step", (16, 3, 32, 32))]:
        assert {(case, shape, "eager"), (case, shape, "torch")} <= cases
    for row in rows:
        assert row["mode"] == "overhead" and row["us_per_call"] > 0 and row["quick"] is True
        assert row["speedup"] == pytest.approx(
            next(r["us_per_call"] for r in rows if r["case"] == row["case"]
                 and r["shape"] == row["shape"] and r["backend"] == "eager") / row["us_per_call"],
            rel=0.02)


def test_auto_table_ranks_backends_by_measured_speedup():
    from ganfast.bench import auto_table

    def row(backend, speedup, mode="fwd+bwd", shape=(64, 256, 64, 64)):
        return dict(op="gradient_penalty", mode=mode, shape=list(shape), dtype="float32",
                    backend=backend, speedup=speedup, device="NVIDIA H100", date="2026-11-22")

    rows = [row("eager", 1.0), row("cuda", 2.0), row("triton", 3.0), row("torch", 1.0),
            row("cuda", 2.0, "overhead", (4, 3, 4, 4)), row("triton", 0.5, "overhead", (4, 3, 4, 4)),
            row("torch", 1.0, "overhead", (4, 3, 4, 4)),
            dict(row("cuda", 9.0), device="cpu")]  # CPU rows never rank GPU backends
    entry = auto_table.table(rows)["gradient_penalty"]
    assert entry["by_shape_class"] == {"small": ["cuda", "torch", "triton"],
                                       "large": ["triton", "cuda", "torch"]}
    assert entry["order"] == ["cuda", "triton", "torch"]  # geometric means: 2, 1.22, 1
    assert entry["measured"] is True and entry["device"] == ["NVIDIA H100"]


def test_auto_table_write_keeps_an_ops_kernels(tmp_path):
    # An op without a cuda kernel never gets cuda in its measured order.
    import json

    from ganfast.bench import auto_table

    path = tmp_path / "auto.json"
    path.write_text(json.dumps({"upsample_conv": {"order": ["torch", "triton"],
                                                  "kernels": ["triton", "torch"]}}))
    rows = [dict(op="upsample_conv", mode="fwd+bwd", shape=[16, 256, 8, 8], dtype="bfloat16",
                 backend=b, speedup=s, device="NVIDIA H100", date="2026-12-02")
            for b, s in (("eager", 1.0), ("triton", 2.0), ("torch", 1.5))]
    entry = auto_table.write(rows, path)["upsample_conv"]
    assert entry["order"] == ["triton", "torch"] and entry["kernels"] == ["triton", "torch"]
    assert entry["by_shape_class"] == {"small": ["triton", "torch"], "large": ["triton", "torch"]}
    assert json.loads(path.read_text())["upsample_conv"] == entry


def test_info_says_which_backends_an_op_has_no_kernel_for():
    import ganfast

    ops = ganfast.info()["ops"]
    assert ops["upsample_conv"]["available"]["cuda"] == "upsample_conv has no cuda kernel"
    assert "no cuda kernel" not in ops["spectral_norm"]["available"]["cuda"]
    assert "no cuda kernel" not in ops["gradient_penalty"]["available"]["cuda"]


def _bench_machine(monkeypatch, cases, gpu=False):
    """cases.run without the machine's copy-bandwidth measurement (and, gpu=True, as on a GPU
    whose kernels are not graph-timed), its interrupt flag restored after the test."""
    from ganfast.bench import timing

    monkeypatch.setattr(cases, "copy_bandwidth_gbps", lambda device, bytes_moved=None: 10.0)
    monkeypatch.setattr(timing, "matrix_tflops", lambda device, dtype: 1.0)
    monkeypatch.setattr(cases, "last_run_interrupted", False)
    if gpu:
        monkeypatch.setattr(cases, "device_ms", lambda fn, device: None)
        monkeypatch.setattr(cases, "environment", lambda device: {"device": "a GPU"})


def test_bench_records_out_of_memory_and_goes_on(monkeypatch):
    # One case running out of device memory must not lose the rows of the others.
    import torch

    from ganfast.bench import cases

    def timed(fn, device, **timing):
        if fn is failing:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 256.00 MiB.")
        return 1.0

    def failing():
        pass

    monkeypatch.setattr(cases, "median_ms", timed)
    _bench_machine(monkeypatch, cases, gpu=True)
    key = dict(shape=[2, 3], dtype="float32")
    rows = cases.run("gradient_penalty", [cases.Case("fwd", key, "eager", lambda: None, 24),
                                          cases.Case("fwd", key, "triton", failing, 24),
                                          cases.Case("fwd", key, "torch", lambda: None, 24)],
                     torch.device("cuda"))
    assert [r["backend"] for r in rows] == ["eager", "triton", "torch"]
    assert rows[1]["skipped"] == "out of memory: CUDA out of memory. Tried to allocate 256.00 MiB."
    assert rows[2]["median_ms"] == 1.0 and rows[2]["speedup"] == 1.0


def test_bench_on_cpu_times_a_group_in_turn(monkeypatch):
    # On CPU the backends of one group are called in turn, call by call, so a drifting load
    # hits each figure alike; the speedup is against the group's eager row wherever it stands.
    import torch

    from ganfast.bench import cases

    calls = []
    key = dict(shape=[2, 3], dtype="float32")
    other = dict(shape=[4, 3], dtype="float32")

    def case(key, backend, label=None):
        return cases.Case("fwd", key, backend, lambda: calls.append(label or backend), None,
                          reps=4)

    _bench_machine(monkeypatch, cases)
    listed = [case(key, "torch"), case(key, "eager"), case(other, "eager", "other eager"),
              case(key, "triton"), case(other, "torch", "other torch")]
    rows = cases.run("gradient_penalty", listed, torch.device("cpu"),
                     skip=lambda case: "no GPU" if case.backend == "triton" else "")
    timed = [c for c in calls if not c.startswith("other")]
    rounds = [timed[i:i + 2] for i in range(0, len(timed), 2)]
    assert len(rounds) >= 4 and all(sorted(r) == ["eager", "torch"] for r in rounds)
    # and the order changes from round to round: in a fixed one, each follows the same other
    assert {r[0] for r in rounds} == {"torch", "eager"}
    # the second group (its cases listed apart) is timed after the first, in turn as well
    first_other = calls.index("other eager")
    assert first_other >= len(timed) and "torch" not in calls[first_other:]
    assert [(r["shape"], r["backend"]) for r in rows] == [
        ([2, 3], "torch"), ([2, 3], "eager"), ([2, 3], "triton"), ([4, 3], "eager"),
        ([4, 3], "torch")]
    assert rows[2]["skipped"] == "no GPU"

    # The speedups from the group's medians, eager listed first or not, and none without eager.
    monkeypatch.setattr(cases, "interleaved_ms", lambda fns, reps: {
        i: 2.0 if i == 0 else 5.0 for i in fns})
    rows = cases.run("gradient_penalty", listed[:2], torch.device("cpu"))
    assert [(r["median_ms"], r["speedup"]) for r in rows] == [(2.0, 2.5), (5.0, 1.0)]
    rows = cases.run("gradient_penalty", listed[:1], torch.device("cpu"))
    assert rows[0]["median_ms"] == 2.0 and rows[0]["speedup"] is None


def test_cuda_timing_gives_a_slow_call_its_reps(monkeypatch):
    # do_bench times as many calls as fit in 100 ms (two of a 50 ms step): a call slower than
    # DO_BENCH_MAX_MS is timed `reps` times with CUDA events instead; fast ones stay with
    # do_bench (its L2 flush between calls).
    import torch
    import triton.testing

    from ganfast.bench import timing

    asked = []
    monkeypatch.setattr(timing, "_cuda_events_ms",
                        lambda fn, warmup, reps: asked.append(("events", reps)) or fn())
    monkeypatch.setattr(triton.testing, "do_bench",
                        lambda fn, **kw: asked.append(("do_bench", kw["rep"])) or 0.5)
    assert timing.median_ms(lambda: 50.0, torch.device("cuda"), reps=40) == 50.0
    assert asked == [("events", 3), ("events", 40)]
    asked.clear()
    assert timing.median_ms(lambda: 0.2, torch.device("cuda"), reps=40) == 0.5
    assert asked == [("events", 3), ("do_bench", 100)]


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_gradient_penalty_bench_interpolates_in_the_inputs_dtype(dtype):
    # A float32 alpha would promote eager's half-precision interpolation to a float32 result:
    # more work than ganfast's, and an inflated speedup.
    import torch

    from ganfast.bench import gradient_penalty as gp_bench

    dtype = getattr(torch, dtype)
    interp = [c for c in gp_bench.cases([(4, 3, 5, 5)], [dtype], torch.device("cpu"), ("torch",),
                                        with_compile=False) if c.mode == "interp"]
    outputs = {c.backend: c.fn() for c in interp}
    assert set(outputs) == {"eager", "torch"}
    assert all(out.dtype == dtype for out in outputs.values())
    tol = 1e-5 if dtype == torch.float32 else 1e-2  # a lerp and a*r + (1-a)*f round apart
    torch.testing.assert_close(outputs["torch"], outputs["eager"], rtol=tol, atol=tol)


def test_spectral_norm_bench_runs_ganfast_rows_on_the_torch_route(monkeypatch):
    # Its "ganfast" rows are reported as the torch backend: whatever the global setting or the
    # shipped auto order, they run it, and the setting before the run is restored.
    import torch

    from ganfast import backends
    from ganfast.bench import spectral_norm as sn_bench

    seen = []
    monkeypatch.setattr(sn_bench, "_run_into",
                        lambda *a: seen.append(backends.get_backend()))
    backends.set_backend("triton")
    try:
        sn_bench.run(torch.device("cpu"))
        assert seen == ["torch"] and backends.get_backend() == "triton"
        inner = sn_bench.with_backend("cuda", lambda: seen.append(backends.get_backend()))
        inner()
        assert seen[-1] == "cuda" and backends.get_backend() == "triton"
    finally:
        backends.set_backend(None)


def test_backend_scope_restores_the_earlier_choice_set_or_not(monkeypatch):
    import pytest

    from ganfast import backends

    backends.set_backend(None)
    monkeypatch.setattr(backends, "_environment", "torch")  # as GANFAST_BACKEND=torch at import
    with backends.backend_scope("triton"):
        assert backends.get_backend() == "triton"
    assert backends._selected is None and backends.get_backend() == "torch"
    backends.set_backend("cuda")
    try:
        with pytest.raises(KeyError), backends.backend_scope("auto"):
            assert backends.get_backend() == "auto"
            raise KeyError("inside the block")
        assert backends.get_backend() == "cuda"
        with pytest.raises(ValueError, match="backend_scope"), backends.backend_scope("cpu"):
            pass
        assert backends.get_backend() == "cuda"
    finally:
        backends._selected = None  # (set_backend would read the real environment again)


def test_interleaved_timing_changes_the_order_of_any_number_of_calls():
    # Each fn is called once per round; over the rounds each one starts a round and follows
    # every other (a rotation would leave "a" always after "c" when it is not first).
    from ganfast.bench.timing import interleaved_ms

    calls = []
    fns = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    assert set(interleaved_ms(fns, reps=30, warmup=0)) == set("abc")
    rounds = [calls[i:i + 3] for i in range(0, len(calls), 3)]
    assert len(rounds) == 30 and all(sorted(r) == list("abc") for r in rounds)
    for name in "abc":
        before = {r[r.index(name) - 1] if r.index(name) else None for r in rounds}
        assert before == {None} | set("abc") - {name}
    assert interleaved_ms({}) == {}


def test_a_cpu_copy_ceiling_is_its_fastest_call_not_a_loaded_median(monkeypatch):
    # Timed while neighbours loaded the machine, the median copy once gave a ceiling 2000x too
    # low, and a case's row ran at 60 times "100%" of it.
    import torch

    from ganfast.bench import timing

    def one_quiet_call_among_loaded_ones(fn, warmup, reps):
        fn()
        return [0.002] + [1000.0] * (reps - 1)

    numel = 1000  # float32 values: 8,000 bytes read and written per copy
    monkeypatch.setattr(timing, "_cpu_call_ms", one_quiet_call_among_loaded_ones)
    gbps = timing.copy_bandwidth_gbps(torch.device("cpu"), bytes_moved=8 * numel)
    assert gbps == pytest.approx(2 * numel * 4 / 0.002e-3 / 1e9)


def test_bench_interrupted_keeps_the_rows_timed_so_far(monkeypatch, tmp_path, capsys):
    # `timeout --signal=INT` ends a stage of a device session's check: the groups timed before
    # the interrupt are still printed and saved (scripts/gpu_check.sh relies on it).
    from ganfast.bench import cases
    from ganfast.cli import main

    timed, groups_before_interrupt = [], [2]

    def interleaved(fns, reps):
        if len(timed) == groups_before_interrupt[0]:
            raise KeyboardInterrupt
        timed.append(len(fns))
        return {i: 1.0 for i in fns}

    monkeypatch.setattr(cases, "interleaved_ms", interleaved)
    _bench_machine(monkeypatch, cases)
    out = tmp_path / "rows.jsonl"
    # 130, as a shell reports Ctrl-C: a script can tell the rows saved are only part of the run
    assert main(["bench", "--op", "upsample_conv", "--device", "cpu", "--no-compile",
                 "--block", "sngan32-256-4", "--out", str(out)]) == 130
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == sum(timed) == 4  # fwd and bwd of the NCHW group: eager and torch each
    assert {r["mode"] for r in rows} == {"fwd", "bwd"}
    assert "interrupted; keeping the 4 rows" in capsys.readouterr().err and cases.last_run_interrupted

    timed.clear()  # interrupted before the first group: nothing to save
    groups_before_interrupt[0] = 0
    assert main(["bench", "--op", "upsample_conv", "--device", "cpu", "--no-compile",
                 "--block", "sngan32-256-4"]) == 130


def test_bench_interrupted_while_measuring_device_time_keeps_finished_groups(monkeypatch):
    # On CUDA each case is also graph-captured and replayed (device_ms): an interrupt there
    # drops only the group under way.
    import torch

    from ganfast.bench import cases

    def device_time(fn, device):
        if fn is interrupted:
            raise KeyboardInterrupt
        return 0.5

    def interrupted():
        pass

    _bench_machine(monkeypatch, cases, gpu=True)
    monkeypatch.setattr(cases, "median_ms", lambda fn, device, **timing: 1.0)
    monkeypatch.setattr(cases, "device_ms", device_time)
    first, second = dict(shape=[2, 3], dtype="float32"), dict(shape=[4, 3], dtype="float32")
    rows = cases.run("gradient_penalty", [
        cases.Case("fwd", first, "eager", lambda: None, 24),
        cases.Case("fwd", first, "cuda", lambda: None, 24),
        cases.Case("fwd", second, "eager", lambda: None, 24),
        cases.Case("fwd", second, "cuda", interrupted, 24)], torch.device("cuda"))
    assert [(r["shape"], r["backend"], r["device_ms"]) for r in rows] == [
        ([2, 3], "eager", 0.5), ([2, 3], "cuda", 0.5)]
    assert cases.last_run_interrupted


def test_bench_sigint_saves_once_and_restores_the_handler(monkeypatch, tmp_path, capsys):
    # A real SIGINT in the kernel cases of the penalty benchmark: the rows before it are saved,
    # the overhead cases are not started, a second SIGINT while saving is ignored, and the
    # process's own handler is back afterwards.
    import os
    import signal

    from ganfast.bench import cases, overhead
    from ganfast.cli import main

    seen = []

    def interleaved(fns, reps):
        if seen:
            try:
                os.kill(os.getpid(), signal.SIGINT)  # the handler raises at once
            except KeyboardInterrupt:
                os.kill(os.getpid(), signal.SIGINT)  # timeout's second signal: ignored
                seen.append("second SIGINT ignored")
                raise
        seen.append(len(fns))
        return {i: 1.0 for i in fns}

    monkeypatch.setattr(cases, "interleaved_ms", interleaved)
    _bench_machine(monkeypatch, cases)
    monkeypatch.setattr(overhead, "run", lambda *a, **k: pytest.fail("overhead after SIGINT"))
    before = signal.getsignal(signal.SIGINT)
    out = tmp_path / "rows.jsonl"
    assert main(["bench", "--op", "gradient_penalty", "--device", "cpu", "--quick",
                 "--no-compile", "--out", str(out)]) == 130
    assert seen[1] == "second SIGINT ignored"
    assert len(out.read_text().splitlines()) == seen[0]  # the first group's rows
    assert signal.getsignal(signal.SIGINT) is before
    assert "interrupted; keeping" in capsys.readouterr().err


def test_a_sigint_that_python_dropped_does_not_make_the_run_unstoppable(monkeypatch):
    # A KeyboardInterrupt raised in a weakref callback (torch.compile's caches have many) is
    # printed and dropped by Python: the benchmark never sees it. The next Ctrl-C must stop the
    # run; the handler once ignored every SIGINT after the first, and a time-limited stage
    # (gpu_check.sh) ended in SIGKILL with its rows lost.
    import os
    import signal
    import weakref

    from ganfast.bench import cases, timing
    from ganfast.bench import cli as bench_cli

    class Cached:
        pass

    dropped = []
    monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: dropped.append(
        unraisable.exc_type))
    monkeypatch.setattr(cases, "last_run_interrupted", False)
    monkeypatch.setattr(timing, "stop_requested", False)
    monkeypatch.setattr(bench_cli, "SIGINT_REPEAT_S", 0.0)  # the next Ctrl-C comes later
    previous = bench_cli._sigint_once()
    try:
        entry = Cached()
        ref = weakref.ref(entry, lambda _: os.kill(os.getpid(), signal.SIGINT))
        del entry  # the callback runs, the handler raises in it, and Python drops that
        assert ref() is None and dropped == [KeyboardInterrupt]
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, previous)


def test_timeouts_single_sigint_dropped_by_python_still_stops_the_run(monkeypatch, tmp_path):
    # `timeout --signal=INT` sends one SIGINT, to the process and then its group microseconds
    # apart (the second ignored as the same interruption). When Python drops the
    # KeyboardInterrupt (raised in a weakref callback), no third SIGINT comes: the timing
    # loops must honour the request, or the stage runs on until SIGKILL and loses its rows.
    import os
    import signal
    import weakref

    from ganfast.bench import cases, overhead, timing
    from ganfast.cli import main

    class Cached:
        pass

    dropped, groups = [], []
    monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: dropped.append(
        unraisable.exc_type))
    real_interleaved_ms = cases.interleaved_ms

    def interleaved(fns, reps):
        groups.append(len(fns))
        if len(groups) == 2:  # the second group: timeout's signal lands in a weakref callback
            entry = Cached()
            ref = weakref.ref(entry, lambda _: os.kill(os.getpid(), signal.SIGINT))
            del entry
            assert ref() is None and dropped == [KeyboardInterrupt]
            os.kill(os.getpid(), signal.SIGINT)  # the group's copy: ignored, nothing raised
        return real_interleaved_ms({i: (lambda: None) for i in fns}, reps=reps)

    monkeypatch.setattr(cases, "interleaved_ms", interleaved)
    _bench_machine(monkeypatch, cases)
    monkeypatch.setattr(overhead, "run", lambda *a, **k: pytest.fail("overhead after SIGINT"))
    out = tmp_path / "rows.jsonl"
    assert main(["bench", "--op", "gradient_penalty", "--device", "cpu", "--quick",
                 "--no-compile", "--out", str(out)]) == 130
    assert len(groups) == 2  # stopped in the second group, not after every group
    assert len(out.read_text().splitlines()) == groups[0]  # the first group's rows
    assert not timing.stop_requested  # answered: later timing in this process is not stopped


def test_a_sigint_while_rows_are_written_is_left_to_the_timing_loops(monkeypatch):
    # Raised inside write_jsonl, the interrupt cut a row in half and the report refused the file.
    import os
    import signal

    from ganfast.bench import cases, timing
    from ganfast.bench import cli as bench_cli

    monkeypatch.setattr(cases, "last_run_interrupted", False)
    monkeypatch.setattr(timing, "stop_requested", False)
    previous = bench_cli._sigint_once()
    try:
        monkeypatch.setattr(cases, "writing_rows", True)
        os.kill(os.getpid(), signal.SIGINT)  # nothing raised while the row is written
        monkeypatch.setattr(cases, "writing_rows", False)
        assert timing.stop_requested
        with pytest.raises(KeyboardInterrupt):
            timing.interleaved_ms({"a": lambda: None}, reps=3)
    finally:
        signal.signal(signal.SIGINT, previous)


def test_bench_upsample_conv_interrupted_measuring_matrix_throughput_keeps_its_rows(
        tmp_path, monkeypatch, capsys):
    # After the timed cases, the matrix throughput takes seconds of matmuls and convolutions; a
    # SIGINT there (a stage's time limit) lost every row timed before it.
    from ganfast.bench import cases, overhead, timing
    from ganfast.bench import upsample_conv as uc_bench
    from ganfast.cli import main

    def interrupted(device, dtype):
        raise KeyboardInterrupt

    monkeypatch.setitem(uc_bench.BLOCKS, "tiny-3-4-5", (2, 2, 3, 4, 5))
    monkeypatch.setattr(cases, "interleaved_ms", lambda fns, reps: {i: 1.0 for i in fns})
    _bench_machine(monkeypatch, cases)
    monkeypatch.setattr(timing, "matrix_tflops", interrupted)
    monkeypatch.setattr(overhead, "timed_rows", lambda *a, **k: pytest.fail("overhead after SIGINT"))
    out = tmp_path / "rows.jsonl"
    assert main(["bench", "--op", "upsample_conv", "--device", "cpu", "--no-compile",
                 "--block", "tiny-3-4-5", "--out", str(out)]) == 130
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 12  # fwd, bwd, fwd+bwd x eager, torch x two layouts
    assert "interrupted while measuring the matrix throughput" in capsys.readouterr().err


def test_a_small_shapes_bandwidth_is_written_as_a_figure_the_report_reads(monkeypatch):
    # 8 bytes in a millisecond is 8e-6 GB/s: rounded to one decimal it was written as 0.0 (and
    # its copy ceiling too), which the report refuses as a GB/s figure.
    import time

    import torch

    from ganfast.bench import cases, report

    monkeypatch.setattr(cases, "copy_bandwidth_gbps", lambda device, bytes_moved=None: 0.004)
    monkeypatch.setattr(cases, "last_run_interrupted", False)
    key = dict(shape=[2, 1], dtype="float32")
    [row] = cases.run("gradient_penalty", [
        cases.Case("fwd", key, "eager", lambda: time.sleep(1e-3), 8, reps=3)], torch.device("cpu"))
    assert 0 < row["gbps"] < 1e-5 and row["copy_gbps"] == 0.004
    assert row["frac_of_copy"] == round(row["gbps"] / 0.004, 3)
    assert report._row_problem(row) is None


def test_rows_appended_after_a_line_without_its_newline_are_kept(tmp_path):
    # A rows file whose last line lacks its newline (written by hand, or cut short by a killed
    # run): the first appended row ran into that line, and the report refused both.
    from ganfast.bench import cases, report

    out = tmp_path / "rows.jsonl"
    earlier = dict(op="fid", mode="fwd", shape=[1], dtype="float32", backend="eager", device="cpu")
    out.write_text(json.dumps(earlier))
    cases.write_jsonl([{**earlier, "backend": "ganfast"}], out)
    cases.write_jsonl([{**earlier, "backend": "torch"}], out)
    assert [r["backend"] for r in report.load_rows(out)] == ["eager", "ganfast", "torch"]


def test_bench_interrupted_in_the_overhead_cases_keeps_the_kernel_rows(monkeypatch, tmp_path):
    from ganfast.bench import cases, overhead
    from ganfast.cli import main

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cases, "interleaved_ms", lambda fns, reps: {i: 1.0 for i in fns})
    _bench_machine(monkeypatch, cases)
    monkeypatch.setattr(overhead, "host_us", interrupted)  # SIGINT in the first overhead case
    out = tmp_path / "rows.jsonl"
    assert main(["bench", "--op", "gradient_penalty", "--device", "cpu", "--quick",
                 "--no-compile", "--out", str(out)]) == 130
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows and all(row["mode"] != "overhead" for row in rows)


def test_bench_spectral_norm_overhead_rows(tmp_path):
    from ganfast.cli import main

    out = tmp_path / "sn.jsonl"
    assert main(["bench", "--op", "spectral_norm", "--device", "cpu", "--mode", "overhead",
                 "--quick", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["impl"] for r in rows} == {"pytorch", "ganfast", "ganfast once()"}
    assert {tuple(r["shape"]) for r in rows} == {(1,), (4,), (16,)}
    assert all(r["op"] == "spectral_norm" and r["us"] > 0 and r["speedup"] > 0 for r in rows)
    # the report's format: PyTorch's spectral norm is the eager baseline
    assert {r["backend"] for r in rows} == {"eager", "torch", "torch once()"}
    assert all(r["mode"] == "overhead" and r["us_per_call"] == r["us"] for r in rows)
    from ganfast.bench.report import load_rows

    assert len(load_rows(out)) == len(rows)


def test_bench_upsample_conv_runs_the_named_block_and_refuses_unknown_ones(tmp_path, monkeypatch,
                                                                          capsys):
    from ganfast.bench import cases
    from ganfast.bench import upsample_conv as uc_bench
    from ganfast.cli import main

    monkeypatch.setitem(uc_bench.BLOCKS, "tiny-3-4-5", (2, 2, 3, 4, 5))
    _bench_machine(monkeypatch, cases)
    out = tmp_path / "rows.jsonl"
    assert main(["bench", "--op", "upsample_conv", "--device", "cpu", "--no-compile",
                 "--block", "tiny-3-4-5", "--mode", "kernels", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["block"] for r in rows} == {"tiny-3-4-5"}
    assert {r["layout"] for r in rows} == {"nchw", "channels_last"}
    assert main(["bench", "--op", "upsample_conv", "--device", "cpu", "--block", "no-such-block"]) == 2
    assert "--block no-such-block is not a known block; known: " in capsys.readouterr().err


def test_bench_upsample_conv_overhead_rows(tmp_path):
    # Host time of the public call on a tiny block beside the unfused pair, in the report's
    # format; --mode overhead times no kernel case.
    from ganfast.bench.report import load_rows, markdown
    from ganfast.cli import main

    out = tmp_path / "uc.jsonl"
    assert main(["bench", "--op", "upsample_conv", "--device", "cpu", "--mode", "overhead",
                 "--quick", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["case"], r["backend"]) for r in rows] == [
        ("fwd", "eager"), ("fwd", "torch"), ("fwd+bwd", "eager"), ("fwd+bwd", "torch")]
    for row in rows:
        assert row["op"] == "upsample_conv" and row["mode"] == "overhead"
        assert row["shape"] == [2, 8, 4, 4] and row["us_per_call"] > 0
        eager = next(r for r in rows if r["case"] == row["case"] and r["backend"] == "eager")
        assert row["speedup"] == pytest.approx(eager["us_per_call"] / row["us_per_call"], rel=0.02)
    assert "| overhead: fwd+bwd | 2x8x4x4 | float32 | torch (quick) |" in markdown(load_rows(out))


def test_bench_usage_errors_are_named_before_anything_is_timed(tmp_path, monkeypatch, capsys):
    import os

    import torch

    from ganfast.bench import cases, overhead
    from ganfast.bench import fid as fid_bench
    from ganfast.bench import spectral_norm as sn_bench
    from ganfast.cli import main

    for module, name in ((cases, "run"), (overhead, "run"), (sn_bench, "run"), (fid_bench, "main")):
        monkeypatch.setattr(module, name, lambda *a, **k: pytest.fail("timed despite a usage error"))
    (tmp_path / "afile").write_text("")
    refused = [
        (["--op", "spectral_norm", "--dtype", "bf16"],
         "--op spectral_norm does not take --dtype (it takes --device, --mode, --quick"),
        (["--op", "train_step", "--shape", "2x3", "--mode", "overhead"],
         "--op train_step does not take --mode, --shape"),
        (["--op", "fid", "--mode", "kernels"], "--op fid does not take --mode"),
        (["--op", "fid", "--out", str(tmp_path)], f"--out {tmp_path} is a folder; give the file"),
        (["--readme", "README.md"], "--readme goes with --report FILES"),
        (["--auto-table"], "--auto-table goes with --report FILES"),
        (["--out", str(tmp_path)], f"--out {tmp_path} is a folder; give the file"),
        (["--out", str(tmp_path / "afile" / "rows.jsonl")], "afile is a file, not a folder"),
        (["--out", ""], "--out needs a file name"),
        (["--mode", "overhead", "--dtype", "fp16", "--batch", "3"],
         "--mode overhead times fixed tiny float32 inputs: it does not take --dtype, --batch"),
        (["--op", "upsample_conv", "--mode", "overhead", "--block", "sngan32-256-4"],
         "it does not take --block"),
        (["--report", "rows.jsonl", "--out", str(tmp_path / "r"), "--device", "cpu", "--quick"],
         "--report makes a report from result files and times nothing: it does not take --device, "
         "--quick"),
        # --op picks what to time: with --report it was ignored, every op's rows reported
        (["--report", "rows.jsonl", "--out", str(tmp_path / "r"), "--op", "fid"],
         "times nothing: it does not take --op"),
    ]
    if not torch.cuda.is_available():
        refused.append((["--op", "spectral_norm", "--device", "cuda"], "torch sees no CUDA device"))
    for args, message in refused:
        assert main(["bench", *args]) == 2, args
        assert message in capsys.readouterr().err, args
    # Values argparse checks itself: its usage message and status 2.
    for args, message in [
            (["--dtype", "fp64"], "--dtype: takes fp32, fp16, bf16 (comma-separated); got 'fp64'"),
            (["--batch", "0"], "--batch: takes a positive integer, got '0'"),
            (["--shape", "4"], "--shape: takes a gradient shape"),
            (["--shape", "0x3"], "got '0x3'")]:
        with pytest.raises(SystemExit) as exit_info:
            main(["bench", *args])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err, args
    assert not (tmp_path / "r").exists()
    # A rows file that may not be written (what os.access answers an ordinary user for 0444).
    read_only = tmp_path / "rows.jsonl"
    read_only.write_text("")
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, m: False if os.fspath(p) == str(read_only)
                        else real_access(p, m))
    assert main(["bench", "--out", str(read_only)]) == 2
    assert f"--out {read_only}: the file may not be written" in capsys.readouterr().err


def test_version_and_missing_plot_package(tmp_path, monkeypatch, capsys):
    import importlib.metadata
    import importlib.util

    import ganfast
    from ganfast.cli import main

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out == f"ganfast {ganfast.__version__}\n"
    # the package metadata takes its version from ganfast.__version__: the two cannot drift apart
    assert importlib.metadata.version("ganfast") == ganfast.__version__
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "matplotlib" else real_find_spec(name, *a))
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps(dict(op="x", mode="fwd", shape=[1], dtype="float32", backend="eager",
                                    device="cpu")) + "\n")
    assert main(["bench", "--report", str(rows), "--out", str(tmp_path / "r")]) == 1
    assert "the plots need matplotlib: pip install 'ganfast[bench]'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_bench_refuses_to_append_rows_to_a_file_of_something_else(tmp_path, monkeypatch, capsys):
    # `--out README.md` (or a training log) appended JSON rows to it after minutes of timing,
    # and --report then refused the file: refused before anything is timed, the file untouched.
    from ganfast.bench import cases, overhead
    from ganfast.cli import main

    monkeypatch.setattr(cases, "run", lambda *a, **k: pytest.fail("timed despite a usage error"))
    others = {"README.md": b"# My GAN\n\nnotes\n",
              "metrics.jsonl": json.dumps({"step": 1, "loss_d": 0.5}).encode() + b"\n",
              "image.png": b"\x89PNG\r\n\x1a\n\x00\x00\xff"}
    for name, data in others.items():
        path = tmp_path / name
        path.write_bytes(data)
        assert main(["bench", "--device", "cpu", "--out", str(path)]) == 2, name
        assert f"--out {path} holds something other than `ganfast bench` rows" in \
            capsys.readouterr().err
        assert path.read_bytes() == data
    # What bench wrote, an empty file, or one of blank lines are appended to: the run goes on
    # (here to timing nothing, so status 1).
    row = dict(op="gradient_penalty", mode="fwd", shape=[2, 3], dtype="float32", backend="eager",
               device="cpu", median_ms=1.0)
    monkeypatch.setattr(cases, "run", lambda *a, **k: [])
    monkeypatch.setattr(overhead, "run", lambda *a, **k: [])
    for text in ("", "\n\n", json.dumps(row) + "\n"):
        (tmp_path / "rows.jsonl").write_text(text)
        assert main(["bench", "--device", "cpu", "--out", str(tmp_path / "rows.jsonl")]) == 1
        assert "no gradient_penalty case was timed" in capsys.readouterr().err


def test_bench_times_a_case_asked_for_twice_once(monkeypatch):
    # `--dtype fp32,fp32` or a repeated --shape/--batch timed every case twice, its rows doubled.
    from ganfast.bench import cases
    from ganfast.cli import main

    timed = []
    monkeypatch.setattr(cases, "run", lambda op, all_cases, *a, **k: timed.extend(all_cases) or [])
    assert main(["bench", "--device", "cpu", "--mode", "kernels", "--no-compile",
                 "--dtype", "fp32,fp32", "--shape", "2x3", "--shape", "2x3", "--shape", "1x3",
                 "--batch", "2", "--batch", "2"]) == 1  # nothing timed: cases.run is stubbed
    keys = [(c.mode, tuple(c.key["shape"]), c.key["dtype"], c.backend) for c in timed]
    assert len(keys) == len(set(keys))
    assert {tuple(shape) for mode, shape, _, _ in keys if mode != "full"} == {(2, 3), (1, 3)}
    assert {tuple(shape) for mode, shape, _, _ in keys if mode == "full"} == {(2, 3, 64, 64)}


def test_info_on_a_cpu_machine_says_what_else_each_backend_lacks(monkeypatch):
    # The reason was "it needs CUDA tensors; got tensors on cpu" (info is given no tensors),
    # whatever else was missing: triton not installed, the extension not built.
    import torch

    import ganfast
    from ganfast import _extension, backends

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(_extension, "load", lambda: (False, "extension not built: nvcc not found"))
    monkeypatch.setattr(backends, "_triton_reason", lambda: "triton is not installed (no module)")
    available = ganfast.info()["ops"]["gradient_penalty"]["available"]
    no_device = ("is a CPU-only build" if torch.version.cuda is None
                 else "no CUDA device (torch.cuda.is_available() is False)")
    assert available["cuda"] == f"{no_device}; extension not built: nvcc not found"
    assert available["triton"] == f"{no_device}; triton is not installed (no module)"
    assert available["torch"] == "yes"
    monkeypatch.setattr(torch.version, "cuda", None)
    monkeypatch.setattr(torch.version, "hip", None, raising=False)
    assert ganfast.info()["ops"]["spectral_norm"]["available"]["triton"].startswith(
        f"torch {torch.__version__} is a CPU-only build; triton is not installed")
    # with nothing else missing, the machine's reason alone
    monkeypatch.setattr(backends, "_triton_reason", lambda: "")
    assert ganfast.info()["ops"]["spectral_norm"]["available"]["triton"] == \
        f"torch {torch.__version__} is a CPU-only build"


def test_info_names_the_cpu_and_the_gpus_compute_capability(monkeypatch):
    # "cpu (x86_64)" said nothing a bench row's section is named by; on a GPU, the capability
    # is what the extension's archs ("archs 80;90") are to be compared with.
    import torch

    import ganfast
    from ganfast import backends
    from ganfast.bench.cases import cpu_description

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert ganfast.info()["device"] == f"cpu ({cpu_description()})"
    monkeypatch.setattr(backends, "_resolved", {})  # resolutions on the pretend GPU are not kept
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA Pretend")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (7, 5))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert ganfast.info()["device"] == "NVIDIA Pretend (compute capability 7.5)"
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert ganfast.info()["device"] == "NVIDIA Pretend (compute capability 7.5); 4 GPUs"


def test_bench_help_says_half_precision_on_cpu_is_emulated(capsys):
    # --dtype fp16 on CPU: a --quick upsample_conv run did not end in 5 minutes where fp32 took
    # 1.5 (a 2-core AMD EPYC); the help now says so before a user starts one.
    from ganfast.cli import main

    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "On most CPUs fp16 convolutions and matrix products are emulated" in text
    assert "bf16 is fast only on CPUs with AVX512-BF16 or AMX" in text
