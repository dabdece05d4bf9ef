"""Modules and functions users put in their models: ganfast.nn.spectral_norm (a drop-in for
torch.nn.utils.parametrizations.spectral_norm)."""

from .spectral_norm import SpectralNorm, remove_spectral_norm, spectral_norm

__all__ = ["SpectralNorm", "remove_spectral_norm", "spectral_norm"]
