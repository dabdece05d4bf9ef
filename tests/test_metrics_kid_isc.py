"""kid and inception_score against torch-fidelity's functions on random features."""

import numpy as np
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
        f1, f2, kid_subsets=subsets, kid_subset_size=subset_size, verbose=False, rng_seed=7,
        kid_kernel="poly", kid_kernel_poly_degree=3, kid_kernel_poly_gamma=None, kid_kernel_poly_coef0=1.0,
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
