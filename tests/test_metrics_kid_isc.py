"""kid and inception_score against torch-fidelity's functions on random features."""

import numpy as np
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


def _saved_for_backward(call):
    """The shapes of the tensors autograd saved while `call` ran: none when it built no graph."""
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(tuple(t.shape)) or t,
                                                  lambda t: t):
        call()
    return saved


def test_features_that_require_grad_build_no_graph():
    # Features straight from a network in training mode: the results are floats, yet the
    # metrics recorded a graph through their GEMMs and distance tiles, holding all of them in
    # memory until they returned (every subset's kernels for kid).
    f = torch.randn(30, 4, dtype=torch.float64, requires_grad=True)
    g = torch.randn(30, 4, dtype=torch.float64)
    for call in (lambda: kid(f, g, subsets=3, subset_size=10), lambda: inception_score(f, splits=2),
                 lambda: precision_recall(f, g), lambda: precision_recall(g, f)):
        assert _saved_for_backward(call) == []
    assert kid(f, g, subsets=3, subset_size=10) == kid(f.detach(), g, subsets=3, subset_size=10)


def test_reversed_numpy_arrays_are_taken():
    # torch.from_numpy refused negative strides (`x[::-1]`) with its own error, naming no argument.
    import numpy as np

    x = np.random.default_rng(0).standard_normal((30, 4))
    y = np.random.default_rng(1).standard_normal((25, 4)) + 0.3
    reversed_, copy = x[::-1], x[::-1].copy()
    assert kid(reversed_, y, subsets=3, subset_size=10) == kid(copy, y, subsets=3, subset_size=10)
    assert kid(y, x[:, ::-1], subsets=3, subset_size=10) == kid(y, x[:, ::-1].copy(), subsets=3,
                                                                 subset_size=10)
    assert inception_score(reversed_, splits=3) == inception_score(copy, splits=3)
    assert precision_recall(reversed_, y[::-1]) == precision_recall(copy, y[::-1].copy())


def test_numpy_dtypes_torch_lacks_are_named():
    with pytest.raises(TypeError, match="^features1: numpy dtype object has no torch dtype"):
        kid(np.zeros((10, 4), dtype=object), np.zeros((10, 4)), subset_size=5)


def test_big_endian_numpy_features_are_taken():
    # torch.from_numpy refuses another byte order than the machine's, naming no argument
    f = np.random.default_rng(0).standard_normal((12, 4))
    g = f[::-1] + 1
    expected = kid(f, g, subsets=2, subset_size=5), precision_recall(f, g)
    swapped = [x.astype(">f8") for x in (f, g)]
    assert (kid(*swapped, subsets=2, subset_size=5), precision_recall(*swapped)) == expected


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int8, torch.int16, torch.int32])
def test_kid_takes_integer_features_of_any_width(dtype):
    # int32 and int64 were taken, uint8 and int16 refused as not "real numbers".
    f = torch.randint(0, 100, (20, 4), generator=torch.Generator().manual_seed(0))
    g = torch.randint(0, 100, (20, 4), generator=torch.Generator().manual_seed(1))
    expected = kid(f.double(), g.double(), subsets=3, subset_size=10)
    assert kid(f.to(dtype), g.to(dtype), subsets=3, subset_size=10) == expected


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int16, torch.int64])
def test_precision_recall_takes_integer_features_as_kid_does(dtype):
    # refused before ("must be a 2-D floating-point tensor") while kid took them
    f = torch.randint(0, 50, (30, 3), generator=torch.Generator().manual_seed(0))
    g = torch.randint(0, 50, (40, 3), generator=torch.Generator().manual_seed(1))
    expected = precision_recall(f.float(), g.float())
    assert precision_recall(f.to(dtype), g.to(dtype)) == expected
    with pytest.raises(ValueError, match=r"real_features must be a 2-D real-valued .* torch.bool"):
        precision_recall(f.float(), g > 25)


def test_empty_feature_widths_and_logits_are_named():
    # kid divided by zero (gamma = 1 / D), precision_recall gave (1.0, 1.0) for features of no
    # width, inception_score 1.0 for logits of no classes, and blamed splits for no rows.
    empty = torch.zeros(10, 0, dtype=torch.float64)
    with pytest.raises(ValueError, match="^features1 and features2 must have at least 1 feature"):
        kid(empty, empty, subsets=2, subset_size=5)
    with pytest.raises(ValueError, match="^fake_features and real_features must have at least 1 feature"):
        precision_recall(empty, empty)
    for shape in ((10, 0), (0, 5)):
        with pytest.raises(ValueError, match=r"^logits must be \[N, C\] with at least 1 row and 1 class"):
            inception_score(torch.zeros(shape), splits=1)


@pytest.mark.parametrize("kwargs,match", [
    (dict(gamma=float("inf")), "^gamma must be > 0 and finite"),
    (dict(gamma=float("nan")), "^gamma must be > 0 and finite"),
    (dict(gamma="0.5"), "^gamma must be > 0 and finite"),
    (dict(coef0=float("nan")), "^coef0 must be a finite number"),
    (dict(coef0=float("-inf")), "^coef0 must be a finite number"),
    (dict(coef0=None), "^coef0 must be a finite number"),
    (dict(gamma=True), "^gamma must be > 0 and finite"),
    (dict(gamma=torch.tensor([0.5, 0.5])), "^gamma must be > 0 and finite"),
    (dict(coef0=np.array(True)), "^coef0 must be a finite number"),
])
def test_kid_gamma_and_coef0_must_be_finite_numbers(kwargs, match):
    # an infinite gamma or a NaN coef0 gave (nan, nan); a string or None an operator's TypeError
    f = torch.randn(10, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match=match):
        kid(f, f + 1, subsets=2, subset_size=5, **kwargs)


def test_kid_takes_gamma_and_coef0_as_one_element_tensors_and_arrays():
    # as before the finiteness checks: a 0-d tensor or array is one number
    f = torch.randn(12, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    expected = kid(f, f + 1, subsets=2, subset_size=5, gamma=0.25, coef0=2.0)
    for gamma, coef0 in ((torch.tensor(0.25), np.array(2.0)), (np.float32(0.25), torch.tensor(2))):
        assert kid(f, f + 1, subsets=2, subset_size=5, gamma=gamma, coef0=coef0) == expected


def test_kid_names_a_kernel_that_overflows_float64():
    # (nan, nan) or (finite, inf) came back for finite features the kernel's power overflowed
    f = torch.randn(10, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for features, degree in ((f, 1000), (f * 1e60, 3)):
        with pytest.raises(ValueError, match="^kid overflows float64"):
            kid(features, features + 1, subsets=2, subset_size=5, degree=degree)
    mean, std = kid(f, f + 1, subsets=2, subset_size=5, degree=100)  # large, still finite
    assert abs(mean) < float("inf") and std < float("inf")


@pytest.mark.parametrize("offset", [1e3, 1e4])
def test_precision_recall_of_float32_features_far_from_the_origin_equals_float64(offset):
    # cdist's |x|^2 + |y|^2 - 2 x.y form cancelled the offset's share of the norms in float32:
    # (1.0, 1.0) at 1e4 for (0.98, 0.20), off at 1e3 too (torch-fidelity's numbers as well).
    g = torch.Generator().manual_seed(1)
    fake = (torch.randn(200, 16, generator=g, dtype=torch.float64) * 0.7 + offset).float()
    real = (torch.randn(300, 16, generator=g, dtype=torch.float64) + 0.4 + offset).float()
    expected = precision_recall(fake.double(), real.double())  # the same float32 values, exactly
    assert 0 < expected[0] < 1 and 0 < expected[1] < 1
    assert precision_recall(fake, real) == expected


def test_precision_recall_computes_in_the_wider_dtype_of_its_arguments():
    # Real features 2e-9 from 1 rounded to 1 in float32 when the fakes were float32, which put
    # the fake at -1 on the ball's edge (precision 2/3); with the fakes float64 it was outside.
    real = torch.tensor([[0.0], [1 - 2e-9], [5.0], [20.0]], dtype=torch.float64)
    fake = torch.tensor([[-1.0], [30.0], [40.0]], dtype=torch.float32)
    expected = precision_recall(fake.double(), real, k=1)
    assert expected[0] == pytest.approx(1 / 3)
    assert precision_recall(fake, real, k=1) == expected
    assert precision_recall(real, fake, k=1) == precision_recall(real, fake.double(), k=1)


@pytest.mark.parametrize("dtype", [torch.uint16, torch.uint32, torch.uint64])
def test_precision_recall_takes_unsigned_integer_features_past_uint8(dtype):
    # The finiteness check's aminmax has no kernel for uint16, uint32, uint64: they passed the
    # dtype check and failed with torch's NotImplementedError ("aminmax_cpu" not implemented).
    f = torch.randint(0, 50, (30, 3), generator=torch.Generator().manual_seed(0))
    g = torch.randint(0, 50, (40, 3), generator=torch.Generator().manual_seed(1))
    metric_prc = pytest.importorskip("torch_fidelity.metric_prc")
    expected = metric_prc.calculate_precision_recall_full(f.double(), g.double(), neighborhood=3)
    assert 0 < expected[0] < 1 or 0 < expected[1] < 1
    assert precision_recall(f.to(dtype), g.to(dtype)) == pytest.approx(expected, abs=1e-6)
    assert precision_recall(f.to(dtype), g.double()) == precision_recall(f.double(), g.double())


@pytest.mark.parametrize("dtype,factor", [
    (torch.float32, 2.0**70), (torch.float32, 2.0**-90), (torch.bfloat16, 2.0**80),
    (torch.float64, 2.0**600), (torch.float64, 2.0**-560),
    # the scale itself outside the dtype's range: 2**140 for float32, 2**1029 for float64
    # (subnormal features: an OverflowError computing it, (0.0, 0.0) from an inf scale)
    (torch.float32, 2.0**-140), (torch.float64, 2.0**-1029),
])
def test_precision_recall_of_features_whose_squared_distances_leave_the_dtype(dtype, factor):
    # Squared distances overflowed (float32 features past ~1e17: every distance inf, every
    # sample inside every ball) or underflowed (below ~1e-19: every distance 0): (1.0, 1.0)
    # either way. A power of two rescales every distance exactly alike, so the balls are
    # those of the features at scale 1: torch-fidelity's numbers on them.
    metric_prc = pytest.importorskip("torch_fidelity.metric_prc")
    g = torch.Generator().manual_seed(4)
    # the values `dtype` holds (bfloat16 rounds them; computed in float32, as wide a range)
    fake = (torch.randn(60, 8, generator=g, dtype=torch.float64) * 0.7).to(dtype).double()
    real = (torch.randn(50, 8, generator=g, dtype=torch.float64) + 0.4).to(dtype).double()
    expected = metric_prc.calculate_precision_recall_full(fake, real, neighborhood=3)
    assert 0 < expected[0] < 1 and 0 < expected[1] < 1  # (1.0, 1.0) would fail
    scaled = precision_recall((fake * factor).to(dtype), (real * factor).to(dtype))
    assert scaled == pytest.approx(expected, abs=1e-6)


def test_kid_seed_past_numpys_range_is_named():
    # numpy's RandomState refused it with its own "Seed must be between 0 and 2**32 - 1"
    f = torch.randn(12, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    with pytest.raises(ValueError, match=r"^seed must be an int in \[0, 4294967295\] \(numpy's "
                                         r"RandomState seed\), got 4294967296"):
        kid(f, f + 1, subsets=2, subset_size=5, seed=2**32)
    expected = metric_kid.kid_features_to_metric(
        f, f + 1, kid_subsets=2, kid_subset_size=5, verbose=False, rng_seed=2**32 - 1,
        kid_kernel="poly", kid_kernel_poly_degree=3, kid_kernel_poly_gamma=None,
        kid_kernel_poly_coef0=1.0)
    mean, std = kid(f, f + 1, subsets=2, subset_size=5, seed=2**32 - 1)
    assert mean == pytest.approx(expected["kernel_inception_distance_mean"], rel=1e-9)
    assert std == pytest.approx(expected["kernel_inception_distance_std"], rel=1e-8)


_META = torch.zeros(12, 4, device="meta")
_SPARSE = torch.eye(12, 4, dtype=torch.float64).to_sparse()


@pytest.mark.parametrize("call,name", [
    (lambda f, bad: kid(f, bad, subsets=2, subset_size=5), "features2"),
    (lambda f, bad: kid(bad, f, subsets=2, subset_size=5), "features1"),
    (lambda f, bad: inception_score(bad, splits=2), "logits"),
    (lambda f, bad: precision_recall(bad, f), "fake_features"),
    (lambda f, bad: precision_recall(f, bad), "real_features"),
])
@pytest.mark.parametrize("bad,match", [
    (_META, "is a tensor on the 'meta' device, which holds no values"),
    (_SPARSE, "must be a dense tensor, got layout torch.sparse_coo"),
])
def test_meta_and_sparse_tensors_are_named(call, name, bad, match):
    # Before: torch's "Cannot copy out of meta tensor; no data!" or "Could not run 'aten::aminmax'
    # with arguments from the 'SparseCPU' backend", naming no argument.
    f = torch.randn(12, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    with pytest.raises(ValueError, match=f"^{name} {match}"):
        call(f.numpy(), bad)  # a numpy argument beside the bad tensor is moved to its device


def test_masked_numpy_arrays_with_masked_entries_are_refused():
    # torch.from_numpy read the values hidden under the mask as features.
    f = np.random.default_rng(7).standard_normal((12, 4))
    masked = np.ma.masked_array(f, mask=f > 1.0)
    assert np.ma.is_masked(masked)
    for call, name in ((lambda x: kid(x, f, subsets=2, subset_size=5), "features1"),
                       (lambda x: inception_score(x, splits=2), "logits"),
                       (lambda x: precision_recall(f, x), "real_features")):
        with pytest.raises(ValueError, match=f"^{name} is a numpy masked array with masked entries"):
            call(masked)
    # a masked array with nothing masked is its data
    assert kid(np.ma.masked_array(f), f + 1, subsets=2, subset_size=5) == kid(f, f + 1, subsets=2,
                                                                              subset_size=5)


@pytest.mark.parametrize("dtype,low,high", [(torch.int64, -7, 8), (torch.uint64, 0, 16)])
def test_precision_recall_of_large_integer_features_is_computed_in_float64(dtype, low, high):
    # Integers were computed in float32, never rescaled: features k * 2**60 (up to 1.7e19 for
    # uint64) gave squared distances past float32's range, (1.0, 1.0). In float64 (as kid and
    # frechet_distance take them) they are torch-fidelity's numbers on the same values.
    metric_prc = pytest.importorskip("torch_fidelity.metric_prc")
    g = torch.Generator().manual_seed(8)
    steps = [torch.randint(low, high, (n, 8), generator=g).tolist() for n in (40, 50)]
    fake, real = (torch.tensor([[k * 2**60 for k in row] for row in rows], dtype=dtype)
                  for rows in steps)
    expected = metric_prc.calculate_precision_recall_full(
        torch.tensor(steps[0], dtype=torch.float64) * 2.0**60,
        torch.tensor(steps[1], dtype=torch.float64) * 2.0**60, neighborhood=3)
    assert 0 < expected[0] < 1 and 0 < expected[1] < 1
    assert precision_recall(fake, real) == pytest.approx(expected, abs=1e-6)
