"""The thin GAN training loop: data, models, losses, Trainer, quality metrics.

    from ganfast.train import Trainer, TrainConfig
    Trainer(TrainConfig(data="ring8", steps=500), out="runs/ring8").run()
"""

from .config import TrainConfig
from .trainer import NonFiniteLoss, Stopped, Trainer, TrainingError, train

__all__ = ["NonFiniteLoss", "Stopped", "TrainConfig", "Trainer", "TrainingError", "train"]
