"""Reference GAN architectures used by the trainer and the benchmarks."""

from torch import nn


class DCGANCritic(nn.Module):
    """DCGAN's 64x64 discriminator (Radford et al. 2016) as a WGAN-GP critic: no batch norm
    (it would couple the samples the per-sample penalty treats independently), one score per
    sample, shape [B]."""

    def __init__(self, channels: int = 3, width: int = 64):
        super().__init__()
        layers, c_in = [], channels
        for c_out in (width, width * 2, width * 4, width * 8):  # 64 -> 32 -> 16 -> 8 -> 4
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1), nn.LeakyReLU(0.2)]
            c_in = c_out
        layers.append(nn.Conv2d(c_in, 1, 4, 1, 0))  # 4x4 -> 1x1
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x).flatten()


class TinyCritic(nn.Module):
    """A small conv critic (one 3x3 conv, a smooth activation, pooled, one score per sample):
    cheap enough that host time per call dominates, for overhead measurements."""

    def __init__(self, channels: int = 3, width: int = 8):
        super().__init__()
        self.conv = nn.Conv2d(channels, width, 3, padding=1)
        self.head = nn.Linear(width, 1)

    def forward(self, x):
        return self.head(nn.functional.softplus(self.conv(x)).mean((2, 3))).flatten()
