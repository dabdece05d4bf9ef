"""The one place the training loop picks its accelerated building blocks.

ganfast's layers and metrics (ganfast.nn.spectral_norm, ganfast.nn.UpsampleConv2d,
ganfast.metrics.frechet_distance / FeatureStats) are used when they are importable; otherwise
the stock PyTorch equivalent with the same parameter names and state_dict keys, so a checkpoint
written with one loads with the other and no model code changes when they arrive.
"""

import numpy as np
import torch
from torch import nn

try:
    from ganfast.nn import spectral_norm  # noqa: F401
except ImportError:
    from torch.nn.utils.parametrizations import spectral_norm  # noqa: F401

try:
    from ganfast.nn import UpsampleConv2d  # noqa: F401
except ImportError:

    class UpsampleConv2d(nn.Conv2d):
        """Nearest 2x upsampling then a 3x3 convolution; its weight/bias are that Conv2d's."""

        def __init__(self, in_channels, out_channels, kernel_size=3, padding=1, bias=True,
                     scale_factor=2):
            super().__init__(in_channels, out_channels, kernel_size, padding=padding, bias=bias)
            self.scale_factor = scale_factor

        def forward(self, x):
            return super().forward(nn.functional.interpolate(x, scale_factor=self.scale_factor,
                                                             mode="nearest"))

try:
    from ganfast.metrics import FeatureStats as _FeatureStats
    from ganfast.metrics import frechet_distance as _frechet_distance
except ImportError:
    _FeatureStats = _frechet_distance = None


def _value(attr):
    return attr() if callable(attr) else attr


def feature_statistics(features: torch.Tensor):
    """(mean, covariance) in float64 numpy, pytorch-fid's convention (unbiased covariance)."""
    if _FeatureStats is not None:
        stats = _FeatureStats(features.shape[1])
        stats.update(features)
        mean, cov = _value(stats.mean), _value(stats.covariance)
        return (np.asarray(torch.as_tensor(mean).double().cpu()),
                np.asarray(torch.as_tensor(cov).double().cpu()))
    x = features.detach().double().cpu().numpy()
    return x.mean(axis=0), np.cov(x, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^1/2), in float64."""
    if _frechet_distance is not None:
        return float(_frechet_distance(mu1, sigma1, mu2, sigma2))
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    # tr((S1 S2)^1/2) = sum sqrt(eig(S1^1/2 S2 S1^1/2)), a symmetric PSD matrix: eigvalsh is stable.
    w, v = np.linalg.eigh(s1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = np.linalg.eigvalsh(root1 @ s2 @ root1)
    trace_sqrt = np.sqrt(np.clip(inner, 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * trace_sqrt)
