"""ganfast: fused GPU kernels that make GAN training fast.

    import ganfast
    loss_d = loss_d + ganfast.gradient_penalty(critic, real, fake)   # WGAN-GP
    ganfast.info()                                                    # what runs where
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
