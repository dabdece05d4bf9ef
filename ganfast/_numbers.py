"""Arguments that must be one real number or one integer, given as Python, numpy or torch values."""

from __future__ import annotations

import numbers

import numpy as np
import torch


def real_number(value) -> float | None:
    """`value` as a float when it is one real number: an int or float (numpy's included), or a
    0-dim tensor or array holding one, as float() takes them; None otherwise (a bool, which
    would pass for 1, a complex, a string, a tensor of several values)."""
    if type(value) is float:  # what a valid call passes nearly always, per call (penalties)
        return value
    if isinstance(value, (torch.Tensor, np.ndarray)) and value.ndim == 0:
        value = value.item()  # a bool or complex one is then refused below
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:  # an int beyond float's range (10**400): no real number here
            return None
    return None


def integer(value) -> int | None:
    """`value` as an int when it is one integer: an int (numpy's included), or a 0-dim integer
    tensor or array, as nn.Conv2d and PyTorch's spectral norm take them; None otherwise (a bool,
    which would pass for 1, a float even when whole, a tensor of several values)."""
    if type(value) is int:
        return value
    if isinstance(value, (torch.Tensor, np.ndarray)) and value.ndim == 0:
        value = value.item()  # a bool or float one is then refused below
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    return None
