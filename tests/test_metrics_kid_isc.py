"""kid and inception_score against torch-fidelity's functions on random features."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ganfast.metrics import inception_score, kid, precision_recall

metric_kid = pytest.importorskip("torch_fidelity.metric_kid")
metric_isc = pytest.importorskip("torch_fidelity.metric_isc")


@pytest.mark.parametrize("subsets,subset_size,d", [(10, 50, 16), (13, 40, 33)])
def test_kid_matches_torch_fidelity(subsets, subset_size, d):
    f1 = torch.randn(120, d, dtype=torch.float64) + 0.3
    f2 = torch.randn(90, d, dtype=torch.float64) * 1.2
    expected = metric_kid.kid_features_to_metric(
        f1,
        f2,
        kid_subsets=subsets,
        kid_subset_size=subset_size,
        verbose=False,
        rng_seed=7,
        kid_kernel="poly",
        kid_kernel_poly_degree=3,
        kid_kernel_poly_gamma=None,
        kid_kernel_poly_coef0=1.0,
    )
    mean, std = kid(f1, f2, subsets=subsets, subset_size=subset_size, seed=7)
    assert mean == pytest.approx(expected["kernel_inception_distance_mean"], rel=1e-9)
    assert std == pytest.approx(expected["kernel_inception_distance_std"], rel=1e-9)


def test_kid_bad_arguments():
    with pytest.raises(ValueError, match="subset_size"):
        kid(torch.randn(10, 4), torch.randn(10, 4), subset_size=11)
    with pytest.raises(ValueError, match="same width"):
        kid(torch.randn(10, 4), torch.randn(10, 5), subset_size=5)
    for kwargs, match in ((dict(degree=0), "degree must be an int >= 1"),
                          (dict(degree=2.5), "degree must be an int >= 1"),
                          (dict(gamma=-1.0), "gamma must be > 0")):
        with pytest.raises(ValueError, match=match):
            kid(torch.randn(10, 4), torch.randn(10, 4), subset_size=5, **kwargs)


def test_precision_recall_takes_numpy_and_names_bad_k_and_tile():
    fake, real = torch.randn(12, 3, dtype=torch.float64), torch.randn(9, 3, dtype=torch.float64)
    assert precision_recall(fake.numpy(), real.numpy()) == precision_recall(fake, real)
    for kwargs, match in ((dict(k=2.5), "k must be an int >= 1"), (dict(k=0), "k must be"),
                          (dict(tile=0), "tile must be an int >= 1")):
        with pytest.raises(ValueError, match=match):
            precision_recall(fake, real, **kwargs)


@pytest.mark.parametrize("n,splits", [(100, 10), (97, 3), (50, 1)])
def test_inception_score_matches_torch_fidelity(n, splits):
    logits = torch.randn(n, 1008) * 3
    expected = metric_isc.isc_features_to_metric(logits, splits=splits, shuffle=False)
    mean, std = inception_score(logits, splits=splits)
    assert mean == pytest.approx(expected["inception_score_mean"], rel=1e-10)
    assert std == pytest.approx(expected["inception_score_std"], rel=1e-8, abs=1e-12)


@pytest.mark.parametrize("n_fake,n_real,k,tile", [(60, 80, 3, 4096), (61, 47, 5, 16), (30, 30, 1, 7)])
def test_precision_recall_matches_torch_fidelity(n_fake, n_real, k, tile):
    from ganfast.metrics import precision_recall

    metric_prc = pytest.importorskip("torch_fidelity.metric_prc")
    fake = torch.randn(n_fake, 12, dtype=torch.float64) * 0.7
    real = torch.randn(n_real, 12, dtype=torch.float64) + 0.4
    expected = metric_prc.calculate_precision_recall_full(fake, real, neighborhood=k)
    assert precision_recall(fake, real, k=k, tile=tile) == pytest.approx(
        expected, abs=1e-6
    )  # theirs is a float32 mean; one sample moves it >= 1/80
    assert 0 < expected[0] < 1 or 0 < expected[1] < 1  # the comparison discriminates


@settings(max_examples=20, deadline=None)
@given(n1=st.integers(2, 60), n2=st.integers(2, 60), d=st.integers(1, 20),
       subsets=st.integers(1, 12), data=st.data())
def test_kid_on_drawn_sizes_matches_torch_fidelity(n1, n2, d, subsets, data):
    subset_size = data.draw(st.integers(2, min(n1, n2)), label="subset_size")
    seed = data.draw(st.integers(0, 2**16), label="seed")
    g = torch.Generator().manual_seed(seed)
    f1 = torch.randn(n1, d, generator=g, dtype=torch.float64)
    f2 = torch.randn(n2, d, generator=g, dtype=torch.float64) * 1.3 + 0.2
    expected = metric_kid.kid_features_to_metric(
        f1, f2, kid_subsets=subsets, kid_subset_size=subset_size, verbose=False, rng_seed=seed,
        kid_kernel="poly", kid_kernel_poly_degree=3, kid_kernel_poly_gamma=None,
        kid_kernel_poly_coef0=1.0)
    mean, std = kid(f1, f2, subsets=subsets, subset_size=subset_size, seed=seed)
    scale = abs(expected["kernel_inception_distance_mean"]) + 1e-12
    assert mean == pytest.approx(expected["kernel_inception_distance_mean"], rel=1e-9, abs=1e-12)
    assert std == pytest.approx(expected["kernel_inception_distance_std"], rel=1e-8, abs=1e-9 * scale)


@settings(max_examples=20, deadline=None)
@given(data=st.data(), classes=st.integers(2, 40), temperature=st.floats(0.1, 5.0))
def test_inception_score_on_drawn_sizes_matches_torch_fidelity(data, classes, temperature):
    splits = data.draw(st.integers(1, 8), label="splits")
    n = data.draw(st.integers(splits, 80), label="n")
    g = torch.Generator().manual_seed(data.draw(st.integers(0, 2**16), label="seed"))
    logits = torch.randn(n, classes, generator=g, dtype=torch.float64) * temperature
    expected = metric_isc.isc_features_to_metric(logits, splits=splits, shuffle=False)
    mean, std = inception_score(logits, splits=splits)
    assert mean == pytest.approx(expected["inception_score_mean"], rel=1e-9)
    assert std == pytest.approx(expected["inception_score_std"], rel=1e-6, abs=1e-9)


@settings(max_examples=20, deadline=None)
@given(n_fake=st.integers(2, 50), n_real=st.integers(2, 50), d=st.integers(1, 10),
       tile=st.integers(1, 64), data=st.data())
def test_precision_recall_on_drawn_sizes_and_tiles_matches_torch_fidelity(n_fake, n_real, d,
                                                                          tile, data):
    from ganfast.metrics import precision_recall

    metric_prc = pytest.importorskip("torch_fidelity.metric_prc")
    k = data.draw(st.integers(1, min(n_fake, n_real) - 1), label="k")
    g = torch.Generator().manual_seed(data.draw(st.integers(0, 2**16), label="seed"))
    fake = torch.randn(n_fake, d, generator=g, dtype=torch.float64) * 0.7
    real = torch.randn(n_real, d, generator=g, dtype=torch.float64) + 0.4
    expected = metric_prc.calculate_precision_recall_full(fake, real, neighborhood=k)
    assert precision_recall(fake, real, k=k, tile=tile) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("call,name", [
    (lambda f: kid(f, f, subsets=2.0, subset_size=5), "subsets"),
    (lambda f: kid(f, f, subsets=2, subset_size=10.0), "subset_size"),
    (lambda f: kid(f, f, subsets=2, subset_size=None), "subset_size"),
    (lambda f: kid(f, f, subsets=2, subset_size=5, seed=-1), "seed"),
    (lambda f: inception_score(f, splits=2.5), "splits"),
])
def test_count_arguments_must_be_ints_named(call, name):
    with pytest.raises(ValueError, match=f"^{name} must be an int"):
        call(torch.randn(20, 4, dtype=torch.float64))


def test_inception_score_with_a_class_no_row_predicts():
    # A class whose probability underflows to 0 in every row of a split adds 0 to the KL (its
    # limit), not NaN: the score equals that of the logits without the class.
    logits = torch.randn(30, 5, dtype=torch.float64)
    dead = torch.cat([logits, torch.full((30, 1), -1e4, dtype=torch.float64)], 1)
    got = inception_score(dead, splits=3)
    expected = inception_score(logits, splits=3)
    assert got == pytest.approx(expected, rel=1e-12)


def test_metrics_compute_on_the_first_tensors_device():
    # numpy arguments join the device of a tensor given after them.
    import numpy as np

    from ganfast.metrics._tensors import first_device

    meta = torch.zeros(1, device="meta")
    assert first_device(np.zeros(1), meta, torch.zeros(1)) == meta.device
    assert first_device(np.zeros(1), np.zeros(1)) is None


def test_kid_seed_none_draws_its_own_subsets():
    # Fixed features, shifted far enough that every subset's MMD is clearly positive (the
    # smallest of 3,000 seeded one-subset draws is 488; a shift of 0.5 let the unbiased
    # estimate of a 10-sample subset fall below zero now and then).
    f = torch.randn(30, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    draws = [kid(f, f + 3.0, subsets=3, subset_size=10, seed=None) for _ in range(5)]
    assert all(mean > 0 and std >= 0 for mean, std in draws)
    assert len({mean for mean, _ in draws}) > 1  # new subsets on each call, not a fixed seed


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_features_are_named(bad):
    # kid gave (nan, nan); precision_recall a precision and recall as if the row were a miss.
    good = torch.randn(12, 3, dtype=torch.float64)
    spoilt = good.clone()
    spoilt[4, 1] = bad
    with pytest.raises(ValueError, match="features1 holds NaN or infinite values"):
        kid(spoilt, good, subset_size=5)
    with pytest.raises(ValueError, match="features2 holds NaN or infinite values"):
        kid(good, spoilt, subset_size=5)
    with pytest.raises(ValueError, match="fake_features holds NaN or infinite values"):
        precision_recall(spoilt, good)
    with pytest.raises(ValueError, match="real_features holds NaN or infinite values"):
        precision_recall(good, spoilt.numpy())


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_logits_are_named(bad):
    # inception_score returned (nan, nan): NaN spreads through the softmax, and -inf gives
    # 0 * -inf in the KL.
    logits = torch.randn(20, 5, dtype=torch.float64)
    logits[3, 2] = bad
    with pytest.raises(ValueError, match="logits holds NaN or infinite values"):
        inception_score(logits, splits=2)
