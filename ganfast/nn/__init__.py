"""Layers users put in their models: drop-in replacements of the stock ones."""

from . import functional
from .upsample_conv import UpsampleConv2d

__all__ = ["UpsampleConv2d", "functional"]
