"""`ganfast bench --op fid`: every row is there and the ways it times agree on the value."""

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
