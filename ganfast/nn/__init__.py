"""Layers users put in their models: drop-in replacements of the stock ones, same parameters,
same state_dict, same results."""

from . import functional
from .spectral_norm import SpectralNorm, remove_spectral_norm, spectral_norm
from .spectral_norm_group import SpectralNormGroup
from .upsample_conv import UpsampleConv2d

__all__ = ["SpectralNorm", "SpectralNormGroup", "UpsampleConv2d", "functional", "remove_spectral_norm",
           "spectral_norm"]
