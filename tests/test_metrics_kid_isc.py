"""kid and inception_score against torch-fidelity's functions on random features."""

import pytest
import torch

from ganfast.metrics import inception_score, kid

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
