"""FeatureStats against np.cov (float64): streaming, offsets, dtypes, merge, all_reduce, .npz."""


import io
import os
import stat
import zipfile

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from hypothesis import given, settings
from hypothesis import strategies as st

from ganfast.metrics import FeatureStats
from ganfast.metrics import stats as stats_module
from ganfast.metrics.stats import _gram, _row_sums_float64, collective_device


def features(n, d, seed, offset=0.0, scale=1.0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) * scale + offset


def rel_err(a, b):
    return float(np.abs(np.asarray(a) - b).max() / np.abs(b).max())


@pytest.mark.parametrize("chunks", [[300], [1, 2, 97, 200], [150, 0, 149, 1]])
def test_uneven_chunks_equal_np_cov(chunks):
    x = features(sum(chunks), 17, len(chunks))
    stats = FeatureStats(17)
    start = 0
    for c in chunks:
        stats.update(torch.from_numpy(x[start : start + c]))
        start += c
    assert stats.count == x.shape[0]
    assert rel_err(stats.mean, x.mean(0)) < 1e-13
    assert rel_err(stats.covariance, np.cov(x, rowvar=False)) < 1e-12


@settings(max_examples=40, deadline=None)
@given(d=st.integers(1, 12), chunks=st.lists(st.integers(0, 40), min_size=1, max_size=6),
       offset=st.sampled_from([0.0, -7.5, 1e3]), dtype=st.sampled_from(["float64", "float32"]),
       seed=st.integers(0, 2**16))
def test_drawn_chunkings_equal_np_cov(d, chunks, offset, dtype, seed):
    # Any split of the rows (empty and one-row batches included) gives np.cov of the values as
    # given; float32 batches are folded with float32 products, so their tolerance is float32's.
    x = torch.from_numpy(features(sum(chunks), d, seed, offset=offset)).to(getattr(torch, dtype))
    exact = x.double().numpy()
    stats = FeatureStats(d)
    for part in x.split(chunks):
        stats.update(part)
    assert stats.count == sum(chunks)
    if sum(chunks) == 0:
        return
    tol = 1e-9 if dtype == "float64" else 1e-5
    assert rel_err(stats.mean, exact.mean(0)) < 1e-12
    if sum(chunks) >= 2:
        expected = np.atleast_2d(np.cov(exact, rowvar=False))
        got = np.asarray(stats.covariance)
        assert np.abs(got - expected).max() <= tol * max(np.abs(expected).max(), 1e-300)


def test_large_offset_float64():
    x = features(1000, 32, 3, offset=1e3, scale=1 / np.sqrt(32))
    stats = FeatureStats(32)
    for part in np.array_split(x, 7):
        stats.update(torch.from_numpy(part))
    assert rel_err(stats.covariance, np.cov(x, rowvar=False)) < 1e-9


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float16, 1e-5), (torch.bfloat16, 1e-5)])
def test_low_precision_inputs_with_offset(dtype, tol):
    x = torch.from_numpy(features(500, 24, 4, offset=100.0)).to(dtype)
    exact = x.double().numpy()  # the values as given; the error measured is the statistics' own
    stats = FeatureStats(24)
    for part in x.split(123):
        stats.update(part)
    assert rel_err(stats.covariance, np.cov(exact, rowvar=False)) < tol
    assert rel_err(stats.mean, exact.mean(0)) < 1e-12


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_update_compiles_fullgraph(dtype, tol):
    # FeatureStats.update is plain PyTorch (a GEMM is its kernel; see stats.py), so the compile
    # check is that a training step calling it traces as one graph, Python-side state included.
    x = torch.from_numpy(features(300, 17, 9, offset=50.0)).to(dtype)
    stats = FeatureStats(17)
    step = torch.compile(lambda s, f: s.update(f), fullgraph=True, backend="aot_eager")
    for part in x.split([1, 50, 97, 152]):
        step(stats, part)
    assert stats.count == 300
    assert rel_err(stats.covariance, np.cov(x.double().numpy(), rowvar=False)) < tol
    assert rel_err(stats.mean, x.double().numpy().mean(0)) < 1e-12


@pytest.mark.parametrize("rows", [1, 255, 256, 257, 1000])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_row_sums_float64_equal_a_float64_sum(rows, dtype):
    # On the CPU low-precision rows are summed block by block (CPU_SUM_BLOCK_ROWS): the same
    # float64 sums as one sum of the float64 copy.
    x = (torch.randn(rows, 37, dtype=torch.float64) * 3 + 100).to(dtype)[:, ::2]  # strided
    got = _row_sums_float64(x)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, x.double().sum(0), rtol=1e-14, atol=0)


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 9), columns=st.integers(1, 23), block=st.integers(1, 8),
       dtype=st.sampled_from([torch.float32, torch.float64]), seed=st.integers(0, 2**31 - 1))
def test_gram_by_blocks_equals_one_product(rows, columns, block, dtype, seed):
    # On the CPU _gram multiplies the lower block triangle and mirrors it; small blocks here
    # give every case of it (one block, a ragged last block, blocks of one column) on small x.
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, 2 * columns, dtype=torch.float64, generator=generator)[:, ::2]  # strided
    x = (x * 4 + 3).to(dtype)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(stats_module, "CPU_GRAM_BLOCK_COLUMNS", block)
        got = _gram(x)
    assert got.dtype == dtype
    exact = x.double()
    # rounding bound of a dot product: a few units of the dtype per row, times |x|^T |x|
    bound = (exact.abs().mT @ exact.abs()) * rows * 4 * torch.finfo(dtype).eps
    assert bool(((got.double() - exact.mT @ exact).abs() <= bound).all())
    block_of = torch.arange(columns) // block
    mirrored = block_of[:, None] != block_of[None, :]  # off the diagonal blocks: copies
    assert torch.equal(got[mirrored], got.mT[mirrored])


def test_wide_features_equal_np_cov():
    # D above CPU_GRAM_BLOCK_COLUMNS at its real value: three blocks, the last one ragged.
    assert 2 * stats_module.CPU_GRAM_BLOCK_COLUMNS < 1100
    x = np.random.default_rng(3).standard_normal((1500, 1100)) * 2 + 10
    stats = FeatureStats(1100)
    for part in np.array_split(x.astype(np.float32), 3):
        stats.update(part)
    expected = np.cov(x.astype(np.float32).astype(np.float64), rowvar=False)
    assert rel_err(stats.covariance, expected) < 1e-6


def test_merge_equals_one_update():
    x = torch.from_numpy(features(301, 9, 5))
    a, b, whole = FeatureStats(9), FeatureStats(9), FeatureStats(9).update(x)
    a.update(x[:100])
    b.update(x[100:])
    a.merge(b)
    assert a.count == whole.count
    torch.testing.assert_close(a.covariance, whole.covariance, rtol=1e-12, atol=0)
    torch.testing.assert_close(a.mean, whole.mean, rtol=1e-12, atol=1e-14)


def _all_reduce_worker(rank, world, port, x, out, idle_rank):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    stats = FeatureStats(x.shape[1])
    if rank != idle_rank:  # the idle rank saw no batch: its share went to the others
        busy = [r for r in range(world) if r != idle_rank]
        stats.update(x[busy.index(rank)::len(busy)])
    stats.all_reduce()
    torch.save({"count": stats.count, "mean": stats.mean, "cov": stats.covariance}, f"{out}/{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.parametrize("idle_rank", [None, 1])
def test_all_reduce_gloo_two_processes(tmp_path, idle_rank):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    x = torch.from_numpy(features(101, 6, 6))
    mp.spawn(_all_reduce_worker, args=(2, port, x, str(tmp_path), idle_rank), nprocs=2)
    for rank in range(2):
        got = torch.load(tmp_path / f"{rank}.pt", weights_only=True)
        assert got["count"] == 101
        assert rel_err(got["cov"], np.cov(x.numpy(), rowvar=False)) < 1e-12
        assert rel_err(got["mean"], x.numpy().mean(0)) < 1e-12


def test_collective_device_sends_cpu_state_from_the_cuda_device_under_nccl(monkeypatch):
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
    cpu, cuda1 = torch.device("cpu"), torch.device("cuda", 1)
    assert collective_device("nccl", cpu) == torch.device("cuda", 3)
    assert collective_device("nccl", cuda1) == cuda1
    assert collective_device("gloo", cpu) == cpu
    assert collective_device("gloo", cuda1) == cuda1


def test_save_load_npz_readable_as_pytorch_fid_stats(tmp_path):
    x = features(50, 5, 7)
    stats = FeatureStats(5).update(torch.from_numpy(x))
    path = tmp_path / "ref.npz"
    stats.save(path)
    with np.load(path) as f:  # what pytorch-fid reads: f["mu"], f["sigma"]
        np.testing.assert_allclose(f["mu"], x.mean(0), rtol=1e-12)
        np.testing.assert_allclose(f["sigma"], np.cov(x, rowvar=False), rtol=1e-12)
    again = FeatureStats.load(path)
    assert again.count == 50
    torch.testing.assert_close(again.covariance, stats.covariance)
    assert [p.name for p in tmp_path.iterdir()] == ["ref.npz"]  # no temp file left behind
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # as np.savez would make it


def test_load_without_count_and_bad_inputs(tmp_path):
    np.savez(tmp_path / "plain.npz", mu=np.zeros(3), sigma=np.eye(3))
    with pytest.raises(ValueError, match="count="):
        FeatureStats.load(tmp_path / "plain.npz")
    assert FeatureStats.load(tmp_path / "plain.npz", count=10).count == 10
    stats = FeatureStats(4)
    with pytest.raises(ValueError, match=r"\[N, 4\]"):
        stats.update(torch.zeros(3, 5))
    with pytest.raises(TypeError, match="features"):
        stats.update(torch.zeros(3, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="at least 2 samples"):
        _ = stats.covariance
    for count in (1, 2.5, -5, True):
        with pytest.raises(ValueError, match="count must be an int >= 2"):
            FeatureStats.load(tmp_path / "plain.npz", count=count)
    assert FeatureStats.load(tmp_path / "plain.npz", count=np.int64(7)).count == 7
    assert FeatureStats(np.int64(5)).num_features == 5
    for bad in (True, 2.0, 0):
        with pytest.raises(ValueError, match="num_features must be a positive int"):
            FeatureStats(bad)
    with pytest.raises(FileNotFoundError, match="cannot save statistics to .*missing.*does not exist"):
        FeatureStats.load(tmp_path / "plain.npz", count=3).save(tmp_path / "missing" / "x.npz")


@pytest.mark.gpu
def test_gpu_all_reduce_nccl_from_a_process_that_saw_no_batch(tmp_path):
    # One process (one GPU is enough): its statistics were never moved to CUDA, and NCCL
    # refuses CPU tensors.
    dist.init_process_group("nccl", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        stats = FeatureStats(5).all_reduce()
    finally:
        dist.destroy_process_group()
    assert stats.count == 0
    assert stats.mean.abs().sum() == 0


@pytest.mark.gpu
def test_gpu_update_matches_cpu():
    x = torch.from_numpy(features(777, 64, 8, offset=50.0))
    gpu = FeatureStats(64)
    for part in x.float().cuda().split(100):
        gpu.update(part)
    assert rel_err(gpu.covariance.cpu(), np.cov(x.float().double().numpy(), rowvar=False)) < 1e-5


def test_float32_features_fewer_than_dimensions_give_np_cov_fid():
    # With fewer samples than features the covariance is rank-deficient; float32 products would
    # put rounding noise (~1e-7 of its scale) into its null space, and each such direction adds
    # sqrt(noise) to tr sqrt(S1 S2). The statistics of float32 features give np.cov's FID.
    from ganfast.metrics import frechet_distance

    rng = np.random.default_rng(7)
    d = 256
    mix = rng.standard_normal((d, d))
    few = np.maximum(rng.standard_normal((100, d)) @ mix, 0).astype(np.float32)
    many = np.maximum(rng.standard_normal((2000, d)) @ mix + 0.3, 0).astype(np.float32)
    stats = [FeatureStats(d), FeatureStats(d)]
    for s, x in zip(stats, (few, many), strict=True):
        for start in range(0, len(x), 50):
            s.update(torch.from_numpy(x[start:start + 50]))
    got = frechet_distance(stats[0].mean, stats[0].covariance, stats[1].mean, stats[1].covariance)
    few64, many64 = few.astype(np.float64), many.astype(np.float64)
    expected = frechet_distance(few64.mean(0), np.cov(few64, rowvar=False),
                                many64.mean(0), np.cov(many64, rowvar=False))
    assert got == pytest.approx(expected, rel=1e-8)


@pytest.mark.parametrize("contents,message", [
    (dict(mu=np.array(["a", "b"]), sigma=np.eye(2)), "mu must hold real numbers"),
    (dict(mu=np.zeros(2, complex), sigma=np.eye(2)), "mu must hold real numbers"),
    (dict(mu=np.zeros(2), sigma=np.eye(2), count=np.array([10, 20])), "count must be a single"),
    (dict(mu=np.zeros(3), sigma=np.array([[1.0, 5, 0], [0, 1, 0], [0, 0, 1]]), count=5),
     "sigma is not symmetric"),
    # was FeatureStats(0)'s "num_features must be a positive int", naming no file
    (dict(mu=np.zeros(0), sigma=np.zeros((0, 0)), count=5), "mu and sigma are empty"),
    # these two were loaded; frechet_distance refused them later, naming "sigma1", no file
    (dict(mu=np.zeros(3), sigma=np.array([[1.0, 2, 0], [2, 1, 0], [0, 0, 1]]), count=5),
     r"sigma is not a covariance matrix \(positive semi-definite\): it has the eigenvalue -1"),
    (dict(mu=np.zeros(3), sigma=np.diag([1.0, -1e-3, 1.0]), count=5),
     "sigma has negative variances on its diagonal"),
    # the raw second moments count at 1e-4 only: at a mean of 100 these passed as rounding
    (dict(mu=np.full(3, 100.0), sigma=np.array([[1.0, 2, 0], [2, 1, 0], [0, 0, 1]]), count=5),
     r"sigma is not a covariance matrix \(positive semi-definite\): it has the eigenvalue -1"),
    (dict(mu=np.full(3, 100.0), sigma=np.diag([1.0, -1e-3, 1.0]), count=5),
     "sigma has negative variances on its diagonal"),
])
def test_load_refuses_statistics_that_are_not_a_covariance(tmp_path, contents, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **contents)
    with pytest.raises(ValueError, match=f"bad.npz: {message}"):
        FeatureStats.load(path)


def test_load_takes_pytorch_fid_statistics_of_fewer_images_than_features(tmp_path):
    # pytorch-fid's statistics: np.mean and np.cov of float32 activations. Of fewer images than
    # features the covariance is singular, its smallest eigenvalues negative by rounding (and
    # one from a float32 computation, -1e-8 of the largest): loaded, and the FID from the file
    # is the one from the arrays.
    from ganfast.metrics import frechet_distance

    act = np.maximum(features(40, 64, 5), 0).astype(np.float32)
    mu, sigma = np.mean(act, axis=0), np.cov(act, rowvar=False)
    w, v = np.linalg.eigh(sigma)
    assert w[0] < 0
    rounded = (v * np.where(w < 1e-9 * w[-1], -1e-8 * w[-1], w)) @ v.T
    other = features(500, 64, 6)
    for i, s in enumerate((sigma, rounded)):
        np.savez(tmp_path / f"{i}.npz", mu=mu, sigma=s)
        stats = FeatureStats.load(tmp_path / f"{i}.npz", count=40)
        got = frechet_distance(stats.mean, stats.covariance, other.mean(0),
                               np.cov(other, rowvar=False))
        expected = frechet_distance(mu.astype(np.float64), s, other.mean(0),
                                    np.cov(other, rowvar=False))
        assert got == pytest.approx(expected, rel=1e-12)


def test_load_takes_raw_sum_covariances_whose_rounding_is_negative(tmp_path):
    # A covariance formed from raw sums (StyleGAN's metric_utils, torchmetrics), E[x x^T] -
    # mu mu^T, is exact to the raw second moments only: a dead feature's variance, or every
    # entry of a collapsed generator's covariance, is rounding of either sign. Loaded, as
    # frechet_distance takes the arrays (they were refused as "negative variances" or "not a
    # covariance matrix").
    from ganfast.metrics import frechet_distance

    rng = np.random.default_rng(7)
    dead = rng.standard_normal((500, 4)).astype(np.float32)
    dead[:, 2] = np.float32(0.88238147)
    collapsed = np.repeat(rng.standard_normal((1, 64)).astype(np.float32) + 0.5, 300, axis=0)
    for name, f in (("dead", dead), ("collapsed", collapsed)):
        x = f.astype(np.float64)
        n, mu = len(x), x.mean(0)
        sigma = ((x.T @ x) / n - np.outer(mu, mu)) * n / (n - 1)
        sigma = (sigma + sigma.T) / 2
        assert np.linalg.eigvalsh(sigma)[0] < 0 or sigma.diagonal().min() < 0  # (the case)
        np.savez(tmp_path / f"{name}.npz", mu=mu, sigma=sigma, count=n)
        stats = FeatureStats.load(tmp_path / f"{name}.npz")
        other = features(200, x.shape[1], 8)
        expected = frechet_distance(mu, sigma, other.mean(0), np.cov(other, rowvar=False))
        got = frechet_distance(stats.mean, stats.covariance, other.mean(0),
                               np.cov(other, rowvar=False))
        assert got == pytest.approx(expected, rel=1e-12)


def test_load_takes_a_count_stored_as_a_whole_float(tmp_path):
    path = tmp_path / "float_count.npz"
    np.savez(path, mu=np.zeros(2), sigma=np.eye(2), count=np.float64(100.0))
    assert FeatureStats.load(path).count == 100


def test_non_finite_statistics_are_refused_when_read_and_never_saved(tmp_path):
    # update() takes the batch without a check (a device sync per batch); NaN or inf stays in
    # the state, so reading a result or saving refuses it.
    x = features(20, 4, 3)
    x[7, 1] = np.nan
    stats = FeatureStats(4).update(torch.from_numpy(x[:10])).update(torch.from_numpy(x[10:]))
    for read in (lambda: stats.mean, lambda: stats.covariance,
                 lambda: stats.save(tmp_path / "nan.npz")):
        with pytest.raises(ValueError, match="(mean|covariance) holds NaN or infinite values: a "
                                             "batch given to update"):
            read()
    assert not any(tmp_path.iterdir())  # nothing written, not even a temporary file
    merged = FeatureStats(4).update(torch.from_numpy(features(5, 4, 1))).merge(stats)
    with pytest.raises(ValueError, match="covariance holds NaN"):
        _ = merged.covariance
    path = tmp_path / "inf.npz"
    np.savez(path, mu=np.zeros(4), sigma=np.diag([1.0, np.inf, 1.0, 1.0]), count=9)
    with pytest.raises(ValueError, match="inf.npz: sigma holds NaN or infinite values"):
        FeatureStats.load(path)


def test_save_of_fewer_than_two_samples_names_the_file_and_writes_nothing(tmp_path):
    # It was refused by the covariance property's message alone, which named no file.
    for n in (0, 1):
        stats = FeatureStats(3).update(torch.from_numpy(features(n, 3, 0)))
        with pytest.raises(ValueError, match=f"cannot save statistics to .*one.npz: they hold {n} "
                                             r"sample\(s\); the covariance needs at least 2 "
                                             r"\(unbiased: it divides by count - 1\)"):
            stats.save(tmp_path / "one.npz")
    assert not any(tmp_path.iterdir())


def test_load_refuses_a_count_that_contradicts_the_files(tmp_path):
    path = tmp_path / "counted.npz"
    FeatureStats(3).update(torch.from_numpy(features(30, 3, 2))).save(path)
    with pytest.raises(ValueError, match="count=5 contradicts the count 30 stored in .*counted.npz"):
        FeatureStats.load(path, count=5)
    assert FeatureStats.load(path, count=30).count == 30
    assert FeatureStats.load(path, count=np.int64(30)).count == 30


def test_update_takes_reversed_numpy_arrays():
    # torch.from_numpy refused negative strides (a reversed view) with its own error.
    x = features(40, 5, 4)
    reversed_rows = FeatureStats(5).update(x[::-1])
    copied = FeatureStats(5).update(x[::-1].copy())
    torch.testing.assert_close(reversed_rows.covariance, copied.covariance, rtol=0, atol=0)
    torch.testing.assert_close(FeatureStats(5).update(x[:, ::-1]).mean, torch.from_numpy(x[:, ::-1].mean(0)),
                               rtol=1e-12, atol=1e-14)


def test_meta_sparse_and_masked_batches_are_refused_and_leave_the_state():
    # A meta batch was counted and moved the state to 'meta' (the first batch's device): every
    # later read failed with torch's "Cannot copy out of meta tensor; no data!". A sparse batch
    # failed inside the centring ("expected sizes of 'self' and 'other' to match"); a masked
    # array's hidden values were folded in.
    x = features(20, 4, 5)
    stats = FeatureStats(4)
    for bad, match in ((torch.zeros(3, 4, device="meta"), "is a tensor on the 'meta' device"),
                       (torch.from_numpy(x).to_sparse(), "must be a dense tensor, got layout"),
                       (np.ma.masked_array(x, mask=x > 1), "is a numpy masked array with masked")):
        with pytest.raises(ValueError, match=f"^features {match}"):
            stats.update(bad)
    assert stats.count == 0
    stats.update(torch.from_numpy(x))
    assert rel_err(stats.covariance, np.cov(x, rowvar=False)) < 1e-12
    with pytest.raises(ValueError, match=r"^device must hold values \(the CPU or a GPU\), got 'meta'"):
        FeatureStats(4, device="meta")


def test_load_takes_big_endian_arrays(tmp_path):
    # torch.from_numpy refused them ("given numpy array has byte order different from the native
    # byte order"), naming no file: arrays another machine, or astype('>f8'), wrote.
    x = features(30, 4, 6, offset=3.0)
    path = tmp_path / "big_endian.npz"
    np.savez(path, mu=x.mean(0).astype(">f8"), sigma=np.cov(x, rowvar=False).astype(">f8"),
             count=np.array(30, dtype=">i8"))
    stats = FeatureStats.load(path)
    assert stats.count == 30
    assert rel_err(stats.mean, x.mean(0)) < 1e-15
    assert rel_err(stats.covariance, np.cov(x, rowvar=False)) < 1e-15
    merged = stats.merge(FeatureStats(4).update(torch.from_numpy(x)))
    assert rel_err(merged.covariance, np.cov(np.concatenate([x, x]), rowvar=False)) < 1e-12


def test_load_names_the_file_for_object_arrays_and_a_bad_stored_count(tmp_path):
    # numpy's "Object arrays cannot be loaded when allow_pickle=False" named neither the file
    # nor the array; a stored count that is no count was refused as if it were the argument.
    path = tmp_path / "odd.npz"
    np.savez(path, mu=np.array([1.0, "a"], dtype=object), sigma=np.eye(2), count=5)
    with pytest.raises(ValueError, match="odd.npz: mu must hold real numbers, got an object array"):
        FeatureStats.load(path)
    for count in (np.array("5"), np.array(1), np.array(2.5)):
        np.savez(path, mu=np.zeros(2), sigma=np.eye(2), count=count)
        with pytest.raises(ValueError, match="odd.npz: count must be an int >= 2"):
            FeatureStats.load(path)


def test_load_names_the_file_and_array_of_truncated_data(tmp_path):
    # numpy's own ValueError for a damaged array is kept, with the file and key before it (not
    # taken for an object array)
    saved = io.BytesIO()
    np.save(saved, np.arange(6.0))
    path = tmp_path / "cut.npz"
    with zipfile.ZipFile(path, "w") as npz:
        npz.writestr("mu.npy", saved.getvalue()[:-16])
        npz.writestr("sigma.npy", saved.getvalue())
    with pytest.raises(ValueError, match=r"cut.npz: mu: .*expected 48 bytes") as refused:
        FeatureStats.load(path, count=2)
    assert "object array" not in str(refused.value)
