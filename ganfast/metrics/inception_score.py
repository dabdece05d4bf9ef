"""Inception Score: exp(E_x KL(p(y|x) || p(y))) per split, torch-fidelity's computation.

Splits are taken in the order the logits are given (torch-fidelity shuffles first by default;
shuffle the rows yourself for that, e.g. with its permutation, to get its numbers).
"""

from __future__ import annotations

import math

import torch

from ._tensors import as_float64, check_finite, check_int


def inception_score(logits, splits=10):
    """(mean, std) of the per-split scores of [N, C] classifier logits, in float64.

    The splits are taken in the given order. torch-fidelity's numbers (what `ganfast fid --isc`
    prints) need its inputs: the logits without the fc bias, `features @ net.fc.weight.T` of
    fid_inception's pool features, shuffled first with
    `numpy.random.RandomState(2020).permutation(N)`."""
    logits = as_float64(logits, "logits", 2)
    n, classes = logits.shape
    if n == 0 or classes == 0:  # no classes gave a score of exactly 1, whatever the rows
        raise ValueError(f"logits must be [N, C] with at least 1 row and 1 class, got shape {(n, classes)}")
    check_finite(logits, "logits")  # NaN spreads to every score; -inf too (0 * -inf in the KL)
    splits = check_int(splits, "splits", 1)
    if splits > n:
        raise ValueError(f"splits must be in [1, N={n}], got {splits}")
    log_p = logits.log_softmax(dim=1)
    p = log_p.exp()
    scores = []
    for i in range(splits):
        rows = slice(i * n // splits, (i + 1) * n // splits)
        # log of the split's mean p(y), from the log-probabilities: finite even for a class whose
        # probability underflows to 0 in every row (log of the mean p would be -inf, and
        # 0 * inf NaN); such a class adds 0 to the KL, its limit
        size = rows.stop - rows.start
        log_q = torch.logsumexp(log_p[rows], 0, keepdim=True) - math.log(size)
        scores.append((p[rows] * (log_p[rows] - log_q)).sum(1).mean().exp())
    scores = torch.stack(scores)
    return float(scores.mean()), float(scores.std(unbiased=False))
