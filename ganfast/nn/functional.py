"""Functional forms of ganfast.nn's layers."""

from ..ops.upsample_conv import upsample_conv2d

__all__ = ["upsample_conv2d"]
