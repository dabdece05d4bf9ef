"""`ganfast bench --op fid`: every row is there and the ways it times agree on the value."""

import importlib.util

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


def test_rows_written_for_the_report(tmp_path):
    # --out: ganfast's rows against the eager baseline (pytorch-fid's function when installed,
    # numpy's np.cov), in the format `ganfast bench --report` reads, with the value each gave.
    from ganfast.bench import report

    out = tmp_path / "fid.jsonl"
    for part in ("frechet", "stats"):
        fid_bench.main(["--device", "cpu", "--dim", "24", "--stats-n", "200", "--batch", "8",
                        "--repeats", "1", "--part", part, "--out", str(out)])
    rows = report.load_rows([out])
    by = {(r["mode"], r["backend"]): r for r in rows}
    expected = {("frechet to a cached reference", "torch"), ("frechet distance", "torch"),
                ("stats update", "torch"), ("stats update", "eager")}
    if importlib.util.find_spec("pytorch_fid"):
        expected.add(("frechet distance", "eager"))
    assert set(by) == expected
    for (mode, _), row in by.items():
        assert row["op"] == "fid" and row["device"] == "cpu" and row["median_ms"] > 0
        eager = by.get((mode, "eager"))
        if eager is None:
            assert row["speedup"] is None
        else:
            assert row["speedup"] == pytest.approx(eager["median_ms"] / row["median_ms"], rel=1e-2)
            assert row["value"] == pytest.approx(eager["value"], rel=1e-6)
    assert by[("stats update", "torch")]["shape"] == [200, 24]
