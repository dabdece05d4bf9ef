"""ganfast: fused GPU kernels that make GAN training fast.

    import ganfast
    G, D = ganfast.accelerate(G), ganfast.accelerate(D)              # same results, faster
    loss_d = loss_d + ganfast.gradient_penalty(critic, real, fake)   # WGAN-GP (r1_penalty: R1/R2)
    ganfast.info()                                                    # what runs where

Subpackages: ganfast.nn (spectral_norm, SpectralNormGroup, UpsampleConv2d), ganfast.ops (the
fused ops and their backends), ganfast.metrics (FID statistics, Frechet distance, KID,
Inception Score, precision/recall, the FID Inception network) and ganfast.train (the
`ganfast train` loop), the last two imported on first use.
"""

__version__ = "0.1.0"

from . import (
    nn,  # noqa: E402,F401
    ops,  # noqa: E402,F401  (registers the torch.ops.ganfast custom ops)
)
from .accelerate import accelerate  # noqa: E402
from .backends import BackendUnavailable, get_backend, set_backend  # noqa: E402
from .info import info  # noqa: E402
from .losses import gradient_penalty, r1_penalty  # noqa: E402


def __getattr__(name):
    # metrics and train load scipy, PIL and the training loop: only for those who use them.
    if name in ("metrics", "train"):
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "__version__",
    "accelerate",
    "BackendUnavailable",
    "get_backend",
    "gradient_penalty",
    "info",
    "r1_penalty",
    "set_backend",
]
