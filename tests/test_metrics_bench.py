"""`ganfast bench --op fid`: every row is there and the ways it times agree on the value."""

import json

import pytest
import torch

from ganfast.bench import fid as fid_bench


def test_frechet_rows_agree_with_each_other():
    pytest.importorskip("pytorch_fid")
    rows = fid_bench.frechet_rows(48, repeats=1)
    names = [name for name, _, _ in rows]
    assert names == ["ganfast frechet_distance", "pytorch-fid (scipy sqrtm)",
                     "numpy eigvals (torch-fidelity)", "torch eigvals (torchmetrics)"]
    ours = rows[0][2]
    for _, seconds, value in rows:
        assert seconds > 0 and value == pytest.approx(ours, rel=1e-6)


def test_small_batch_and_stats_rows():
    [(name, seconds, value)] = fid_bench.small_batch_rows(32, 8, repeats=1)
    assert "n=8" in name and seconds > 0 and value > 0
    rows = fid_bench.stats_rows(300, 16, torch.device("cpu"), repeats=1, chunk=70)
    assert [name.split(" N=")[0] for name, _, _ in rows] == [
        "ganfast FeatureStats.update", "numpy float64 np.cov", "float64 raw sums"]
    for _, _, trace in rows:
        assert trace == pytest.approx(rows[0][2], rel=1e-6)  # fp32 features: fp32 GEMM


def test_rows_written_for_the_report(tmp_path, monkeypatch):
    # --out: ganfast's rows against the eager baseline (pytorch-fid's function, numpy's np.cov),
    # in the format `ganfast bench --report` reads, each with the value it gave; the other ways
    # timed in the ganfast row's peer_ms; Inception rows with images/s. Without pytorch-fid its
    # baseline row says so (skipped), superseding an older run's.
    from ganfast.bench import report

    out = tmp_path / "fid.jsonl"
    monkeypatch.setattr(fid_bench, "inception_rows", lambda batch, device, repeats: [
        ("FID Inception fp32", 0.5, 0.25), ("FID Inception bf16", 0.25, 0.2)])
    monkeypatch.setattr(fid_bench, "inception_tf1_rows", lambda batch, device, repeats: (
        [("ganfast FIDInceptionV3, tf1 resize", 0.4, 0.3), (fid_bench.TORCH_FIDELITY, 0.8, 0.3)],
        2e-7))
    for part in ("frechet", "stats", "inception"):
        fid_bench.main(["--device", "cpu", "--dim", "24", "--stats-n", "200", "--batch", "8",
                        "--repeats", "1", "--part", part, "--out", str(out)])
    rows = report.load_rows([out])
    by = {(r["mode"], r["dtype"], r["backend"]): r for r in rows}
    assert set(by) == {("frechet distance", "float64", "ganfast"),
                       ("frechet distance", "float64", "eager"),
                       ("frechet to a cached reference", "float64", "ganfast"),
                       ("stats update", "float32", "ganfast"), ("stats update", "float32", "eager"),
                       ("inception features", "float32", "ganfast"),
                       ("inception features", "bfloat16", "ganfast"),
                       ("inception features, tf1 resize", "float32", "ganfast"),
                       ("inception features, tf1 resize", "float32", "eager")}
    for (mode, dtype, backend), row in by.items():
        assert row["op"] == "fid" and row["device"] == "cpu"
        eager = by[mode, dtype, "eager"] if (mode, dtype, "eager") in by else None
        if eager is None:
            assert "speedup" not in row
        elif "skipped" in eager:  # pytorch-fid not installed here
            assert eager["skipped"] == "pytorch-fid (scipy sqrtm): not installed"
            assert "speedup" not in row
        elif backend == "ganfast":
            # written to 3 decimals: a ratio of 0.0032 (a tiny case, a busy machine) is 0.003
            assert row["speedup"] == pytest.approx(eager["median_ms"] / row["median_ms"],
                                                   rel=1e-2, abs=5e-4)
            assert row["value"] == pytest.approx(eager["value"], rel=1e-6)
    assert set(by["frechet distance", "float64", "ganfast"]["peer_ms"]) == {
        "numpy eigvals (torch-fidelity)", "torch eigvals (torchmetrics)"}
    assert set(by["stats update", "float32", "ganfast"]["peer_ms"]) == {"float64 raw sums"}
    assert by["stats update", "float32", "ganfast"]["shape"] == [200, 24]
    assert by["inception features", "bfloat16", "ganfast"]["images_per_s"] == 16.0  # batch 4 on CPU
    tf1 = {backend: by["inception features, tf1 resize", "float32", backend]
           for backend in ("ganfast", "eager")}
    assert (tf1["ganfast"]["images_per_s"], tf1["eager"]["images_per_s"]) == (10.0, 5.0)
    assert tf1["ganfast"]["speedup"] == 2.0 and tf1["ganfast"]["features_max_rel_diff"] == 2e-7


def test_precision_effect_measures_each_faster_way_against_fp32_nchw(capsys):
    fid_bench.main(["--device", "cpu", "--precision-effect", "4"])
    lines = capsys.readouterr().out.splitlines()[1:]
    assert lines[0].startswith("Inception on cpu (fp32 default there: channels_last), random "
                               "weights (batch-norm statistics calibrated), 2 x 4 random")
    for line, way in zip(lines[1:], ("fp32 channels_last", "bf16"), strict=True):
        assert line.startswith(f"  {way}: features |{way} - fp32 NCHW| / |fp32 NCHW| = ")
        error = float(line.split(" = ")[1].split(",")[0])
        assert 0 < error < 0.5  # rounding (amplified by this network), not another network


def test_inception_with_tf1_resize_is_timed_beside_torch_fidelitys_on_equal_features():
    # the acceptance's comparison: the same weights and images give the same features (1e-4)
    pytest.importorskip("torch_fidelity")
    rows, difference = fid_bench.inception_tf1_rows(2, torch.device("cpu"), repeats=1)
    assert [name for name, _, _ in rows] == ["ganfast FIDInceptionV3, tf1 resize",
                                             "ganfast, NCHW instead",  # channels_last on CPU
                                             fid_bench.TORCH_FIDELITY]
    assert all(seconds > 0 for _, seconds, _ in rows)
    assert difference < 1e-5
    for _, _, mean_feature in rows[1:]:
        assert mean_feature == pytest.approx(rows[0][2], rel=1e-5)


def test_a_missing_baseline_is_recorded_and_an_interrupted_run_keeps_its_rows(tmp_path,
                                                                               monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_pytorch_fid(name, *args, **kwargs):
        if name.startswith("pytorch_fid"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(builtins, "__import__", no_pytorch_fid)
    monkeypatch.setattr(fid_bench, "stats_rows", interrupted)
    out = tmp_path / "fid.jsonl"
    with pytest.raises(KeyboardInterrupt):
        fid_bench.main(["--device", "cpu", "--dim", "16", "--batch", "4", "--repeats", "1",
                        "--out", str(out)])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["mode"], r["backend"]) for r in rows] == [
        ("frechet distance", "ganfast"), ("frechet distance", "eager"),
        ("frechet to a cached reference", "ganfast")]
    assert rows[1]["skipped"] == "pytorch-fid (scipy sqrtm): not installed"


def test_a_slow_call_is_timed_once_after_its_warm_up(monkeypatch):
    calls = []
    clock = iter(range(0, 1000, 3))  # every call "takes" 3 s: over SLOW_CALL_S
    monkeypatch.setattr(fid_bench.time, "perf_counter", lambda: next(clock))
    timings = fid_bench.timed_cases({"slow": lambda: calls.append(1) or len(calls)}, repeats=5)
    assert len(calls) == 2 and timings == {"slow": (3, 2)}


def test_a_slow_case_is_timed_alone_and_the_quick_ones_in_turns(monkeypatch):
    # Each case advances a fake clock by its own duration: every median goes to its own name.
    clock, calls = [0.0], []

    def case(name, seconds):
        def call():
            calls.append(name)
            clock[0] += seconds
            return calls.count(name)
        return call

    monkeypatch.setattr(fid_bench.time, "perf_counter", lambda: clock[0])
    timings = fid_bench.timed_cases({"slow": case("slow", 3.0), "a": case("a", 0.25),
                                     "b": case("b", 0.5)}, repeats=3)
    assert timings == {"slow": (3.0, 2), "a": (0.25, 4), "b": (0.5, 4)}
    assert calls[:4] == ["slow", "slow", "a", "b"]  # the slow one's warm-up and its one timing


def test_a_stop_request_ends_the_turns_before_the_next_call(monkeypatch):
    from ganfast.bench import timing

    calls = []

    def case(name):
        def call():
            calls.append(name)
            if len(calls) == 4:  # in the first timed round
                monkeypatch.setattr(timing, "stop_requested", True)
        return call

    with pytest.raises(KeyboardInterrupt):
        fid_bench.timed_cases({"a": case("a"), "b": case("b"), "c": case("c")}, repeats=5)
    assert len(calls) == 4


def test_the_cases_are_timed_in_turns_each_with_its_last_value():
    # One case after the other would time each over a different stretch of a drifting load.
    calls = []

    def case(name):
        return lambda: calls.append(name) or f"{name}{calls.count(name)}"

    timings = fid_bench.timed_cases({"a": case("a"), "b": case("b"), "c": case("c")}, repeats=4)
    assert calls[:3] == ["a", "b", "c"]  # the warm-ups
    rounds = [calls[i:i + 3] for i in range(3, len(calls), 3)]
    assert len(rounds) == 4 and all(sorted(r) == ["a", "b", "c"] for r in rounds)
    assert {name: value for name, (_, value) in timings.items()} == {"a": "a5", "b": "b5", "c": "c5"}
    assert all(seconds >= 0 for seconds, _ in timings.values())


def test_quick_means_quick_when_called_directly(tmp_path, monkeypatch):
    """`python -m ganfast.bench.fid --quick` once only marked its rows and ran at D=2048."""
    from ganfast.bench import report

    sizes = []
    monkeypatch.setattr(fid_bench, "frechet_rows", lambda dim, repeats, device: sizes.append(
        (dim, repeats)) or [("ganfast", 0.5, 1.0), ("pytorch-fid", 1.0, 1.0)])
    monkeypatch.setattr(fid_bench, "small_batch_rows", lambda dim, batch, repeats, device: [
        ("FrechetReference", 0.1, 1.0)])
    monkeypatch.setattr(fid_bench, "stats_rows", lambda n, dim, device, repeats: sizes.append(
        (n, dim, repeats)) or [("ganfast", 0.5, 1.0)])
    out = tmp_path / "fid.jsonl"
    fid_bench.main(["--device", "cpu", "--quick", "--part", "frechet", "--out", str(out)])
    fid_bench.main(["--device", "cpu", "--quick", "--part", "stats", "--dim", "32"])
    assert sizes == [(256, 1), (2000, 32, 1)]
    assert all(row["quick"] for row in report.load_rows([out]))


@pytest.mark.parametrize("args,message", [
    (["--stats-n", "1"], "--stats-n takes at least 2 (a covariance), got 1"),
    (["--stats-n", "0"], "argument --stats-n: takes a positive integer, got '0'"),
    (["--dim", "-3"], "argument --dim: takes a positive integer, got '-3'"),
    (["--repeats", "x"], "argument --repeats: takes a positive integer, got 'x'"),
])
def test_sizes_that_measure_nothing_are_refused(args, message, capsys):
    """--stats-n 0 once ran at the default; 1 ended in a traceback from the covariance."""
    with pytest.raises(SystemExit) as exit_:
        fid_bench.main(["--device", "cpu", "--part", "stats", *args])
    assert exit_.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("device,message", [
    ("gpu", "argument --device: invalid choice: 'gpu'"),
    ("meta", "argument --device: invalid choice: 'meta'"),
])
def test_devices_the_benchmark_cannot_time_on_are_refused(device, message, capsys):
    """Any string was taken: 'gpu' ended in torch's traceback, 'meta' timed nothing."""
    with pytest.raises(SystemExit) as exit_:
        fid_bench.main(["--device", device, "--part", "stats"])
    assert exit_.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for a machine without CUDA")
def test_cuda_without_a_gpu_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_:
        fid_bench.main(["--device", "cuda", "--part", "stats"])
    assert exit_.value.code == 2 and "torch sees no CUDA device" in capsys.readouterr().err


def test_rows_appended_is_said_only_when_this_run_appended_some(tmp_path, monkeypatch, capsys):
    # --out may hold earlier runs' rows: interrupted before its first part ended, the run said
    # "rows appended to" a file it had not touched.
    def interrupted(*args):
        raise KeyboardInterrupt

    out = tmp_path / "fid.jsonl"
    out.write_text('{"earlier": "rows"}\n')
    monkeypatch.setattr(fid_bench, "frechet_rows", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fid_bench.main(["--device", "cpu", "--quick", "--out", str(out)])
    assert "rows appended" not in capsys.readouterr().out
    assert out.read_text() == '{"earlier": "rows"}\n'


def test_a_sigint_while_rows_are_written_stops_bench_fid(tmp_path, monkeypatch):
    # The SIGINT is left to the timing loops while a row is written; fid times in loops of its
    # own, which did not look: every part ran and the command exited 0 (SIGKILL under timeout).
    import os
    import pathlib
    import signal

    from ganfast.bench import cases
    from ganfast.cli import main

    parts = []

    def part(name, rows):
        return lambda *args, **kwargs: parts.append(name) or rows

    monkeypatch.setattr(fid_bench, "frechet_rows", part("frechet", [("ganfast", 0.1, 1.0)]))
    monkeypatch.setattr(fid_bench, "small_batch_rows", part("small", [("reference", 0.01, 1.0)]))
    monkeypatch.setattr(fid_bench, "stats_rows", part("stats", [("ganfast N=2", 0.1, 1.0)]))
    monkeypatch.setattr(fid_bench, "inception_rows", part("inception", [("a", 0.1, 1.0),
                                                                        ("b", 0.1, 1.0)]))
    monkeypatch.setattr(fid_bench, "inception_tf1_rows", part("tf1", ([("ganfast", 0.1, 1.0)],
                                                                      None)))
    real_open = pathlib.Path.open

    def open_during_a_write(self, mode="r", *args, **kwargs):
        if mode == "a" and cases.writing_rows and not parts[1:]:
            os.kill(os.getpid(), signal.SIGINT)  # timeout's SIGINT, then the group's copy
            os.kill(os.getpid(), signal.SIGINT)
        return real_open(self, mode, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "open", open_during_a_write)
    out = tmp_path / "fid.jsonl"
    assert main(["bench", "--op", "fid", "--device", "cpu", "--quick", "--out", str(out)]) == 130
    assert parts == ["frechet"]
    rows = [json.loads(line) for line in out.read_text().splitlines()]  # written whole
    assert {row["mode"] for row in rows} == {"frechet distance"}
