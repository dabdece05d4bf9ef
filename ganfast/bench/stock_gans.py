"""GANs as users write them, from stock PyTorch layers only: the baselines of
`ganfast bench --op train_step` and the models `ganfast.accelerate` is tested on.

- DCGAN-64 (Radford et al. 2016) with the generator's up-blocks written as
  nn.Upsample(2, nearest) + 3x3 conv (the resize-conv form that avoids checkerboard artifacts),
  and the critic without batch norm, as WGAN-GP needs.
- SNGAN ResNet-32 (Miyato et al. 2018, the CIFAR-10 ResNet): residual up-blocks in the
  generator, spectral norm on every layer of the discriminator.

`spectral_norm` picks PyTorch's API: "parametrizations" (torch.nn.utils.parametrizations) or
"legacy" (the hook-based torch.nn.utils.spectral_norm), so both conversions are exercised; or
is any function module -> module (ganfast.nn.spectral_norm, say).
"""

import torch
from torch import nn

from ..train.models import DCGANCritic


def _sn(kind):
    if callable(kind):
        return kind
    if kind == "parametrizations":
        return nn.utils.parametrizations.spectral_norm
    if kind == "legacy":
        return nn.utils.spectral_norm
    raise ValueError("spectral_norm must be 'parametrizations', 'legacy' or a function "
                     f"module -> module, got {kind!r}")


def up_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                         nn.Conv2d(c_in, c_out, 3, 1, 1), nn.BatchNorm2d(c_out), nn.ReLU())


class DCGANGenerator(nn.Module):
    """z [B, z_dim] -> images [B, 3, 64, 64] in [-1, 1]."""

    def __init__(self, z_dim: int = 128, width: int = 64, channels: int = 3):
        super().__init__()
        self.z_dim = z_dim
        self.project = nn.Sequential(nn.Linear(z_dim, 4 * 4 * width * 8), nn.ReLU())
        self.width = width
        self.blocks = nn.Sequential(  # 4 -> 8 -> 16 -> 32 -> 64
            up_block(width * 8, width * 4), up_block(width * 4, width * 2),
            up_block(width * 2, width), up_block(width, width))
        self.to_rgb = nn.Sequential(nn.Conv2d(width, channels, 3, 1, 1), nn.Tanh())

    def forward(self, z):
        x = self.project(z).view(z.shape[0], self.width * 8, 4, 4)
        return self.to_rgb(self.blocks(x))


class GeneratorResBlock(nn.Module):
    """BN-ReLU-Upsample-Conv3x3-BN-ReLU-Conv3x3, plus an upsampled 1x1 shortcut."""

    def __init__(self, channels: int):
        super().__init__()
        self.residual = nn.Sequential(
            nn.BatchNorm2d(channels), nn.ReLU(), nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(channels, channels, 3, 1, 1), nn.BatchNorm2d(channels), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, 1, 1))
        self.shortcut = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                      nn.Conv2d(channels, channels, 1))

    def forward(self, x):
        return self.residual(x) + self.shortcut(x)


class SNGANGenerator(nn.Module):
    """z [B, z_dim] -> images [B, 3, 32, 32]: 4x4 -> three residual up-blocks -> 32x32."""

    def __init__(self, z_dim: int = 128, width: int = 256, channels: int = 3):
        super().__init__()
        self.z_dim, self.width = z_dim, width
        self.project = nn.Linear(z_dim, 4 * 4 * width)
        self.blocks = nn.Sequential(*(GeneratorResBlock(width) for _ in range(3)))
        self.to_rgb = nn.Sequential(nn.BatchNorm2d(width), nn.ReLU(),
                                    nn.Conv2d(width, channels, 3, 1, 1), nn.Tanh())

    def forward(self, z):
        return self.to_rgb(self.blocks(self.project(z).view(z.shape[0], self.width, 4, 4)))


class DiscriminatorResBlock(nn.Module):
    """ReLU-Conv3x3-ReLU-Conv3x3(-AvgPool), shortcut Conv1x1(-AvgPool); `first` drops the leading
    ReLU and pools before the shortcut conv (the optimized first block)."""

    def __init__(self, c_in: int, c_out: int, sn, downsample: bool, first: bool = False):
        super().__init__()
        pool = [nn.AvgPool2d(2)] if downsample else []
        self.residual = nn.Sequential(*([] if first else [nn.ReLU()]),
                                      sn(nn.Conv2d(c_in, c_out, 3, 1, 1)), nn.ReLU(),
                                      sn(nn.Conv2d(c_out, c_out, 3, 1, 1)), *pool)
        learnable = downsample or c_in != c_out
        shortcut_conv = [sn(nn.Conv2d(c_in, c_out, 1))] if learnable else []
        self.shortcut = nn.Sequential(*(pool + shortcut_conv if first else shortcut_conv + pool))

    def forward(self, x):
        return self.residual(x) + self.shortcut(x)


class SNGANDiscriminator(nn.Module):
    """images [B, 3, 32, 32] -> scores [B]: four residual blocks (two downsampling), ReLU, global
    sum pooling, a spectrally normalized linear head."""

    def __init__(self, width: int = 128, channels: int = 3, spectral_norm: str = "parametrizations"):
        super().__init__()
        sn = _sn(spectral_norm)
        self.blocks = nn.Sequential(
            DiscriminatorResBlock(channels, width, sn, downsample=True, first=True),
            DiscriminatorResBlock(width, width, sn, downsample=True),
            DiscriminatorResBlock(width, width, sn, downsample=False),
            DiscriminatorResBlock(width, width, sn, downsample=False))
        self.head = sn(nn.Linear(width, 1))

    def forward(self, x):
        return self.head(torch.relu(self.blocks(x)).sum((2, 3))).flatten()


def dcgan64(width: int = 64):
    """(generator, critic) of DCGAN-64 for WGAN-GP."""
    return DCGANGenerator(width=width), DCGANCritic(width=width)


def sngan32(g_width: int = 256, d_width: int = 128, spectral_norm: str = "parametrizations"):
    """(generator, discriminator) of SNGAN ResNet-32 for the hinge loss."""
    return SNGANGenerator(width=g_width), SNGANDiscriminator(width=d_width,
                                                             spectral_norm=spectral_norm)
