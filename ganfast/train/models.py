"""Reference GAN architectures used by the trainer and the benchmarks.

Generators take (z, labels) (labels None unless class-conditional). Discriminators return one
score per sample, shape [B], so ganfast's penalties take them as they are;`forward(x, with_classes=True)`
also returns the auxiliary classifier's logits (AC-GAN, Odena et al. 2017) when built with
num_classes > 0.
"""

import torch
from torch import nn

from .layers import UpsampleConv2d, spectral_norm

MODELS = ("auto", "mlp", "dcgan", "sngan")
# --width when it is not given, per model.
DEFAULT_WIDTHS = {"mlp": 256, "dcgan": 32, "sngan": 64}
# The smallest image side the trainer accepts: upsampling_plan's base is >= 4 from there on, and
# below it the generator's batch norm can see one value per channel (a batch of one at 1x1
# fails in training; at 4x4 it sees 16).
MIN_IMAGE_SIZE = 4


def upsampling_plan(size: int) -> tuple:
    """(base, n_up): size = base * 2**n_up with the base as small as possible but >= 4, so any
    image size works (16 -> 4 and 2 steps, 28 -> 7 and 2, 30 -> 15 and 1)."""
    base, n_up = size, 0
    while base % 2 == 0 and base >= 8:
        base, n_up = base // 2, n_up + 1
    return base, n_up


class Conditioning(nn.Module):
    """Appends a learned class embedding to the latent (nothing when unconditional)."""

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.embed = nn.Embedding(num_classes, dim) if num_classes else None
        self.out_dim = dim if num_classes else 0

    def forward(self, z, labels):
        return z if self.embed is None else torch.cat([z, self.embed(labels)], 1)


class Discriminator(nn.Module):
    """A feature trunk, a score head and an optional class head on the same features."""

    def __init__(self, trunk: nn.Module, features: int, num_classes: int, wrap=lambda m: m):
        super().__init__()
        self.trunk = trunk
        self.score = wrap(nn.Linear(features, 1))
        self.classes = wrap(nn.Linear(features, num_classes)) if num_classes else None

    def forward(self, x, with_classes: bool = False):
        """Scores [B]; with_classes: (scores, class logits [B, classes] or None)."""
        h = self.trunk(x)
        if not with_classes:
            return self.score(h).flatten()
        return self.score(h).flatten(), (self.classes(h) if self.classes is not None else None)


class MLPGenerator(nn.Module):
    def __init__(self, z_dim: int = 8, out_dim: int = 2, width: int = 256, depth: int = 3,
                 num_classes: int = 0):
        super().__init__()
        self.z_dim = z_dim
        self.cond = Conditioning(num_classes, 8)
        layers, d = [], z_dim + self.cond.out_dim
        for _ in range(depth):
            layers += [nn.Linear(d, width), nn.ReLU()]
            d = width
        self.net = nn.Sequential(*layers, nn.Linear(d, out_dim))

    def forward(self, z, labels=None):
        return self.net(self.cond(z, labels))


def mlp_discriminator(in_dim: int = 2, width: int = 256, depth: int = 3, num_classes: int = 0):
    layers, d = [], in_dim
    for _ in range(depth):
        layers += [nn.Linear(d, width), nn.LeakyReLU(0.2)]
        d = width
    return Discriminator(nn.Sequential(*layers), d, num_classes)


class DCGANGenerator(nn.Module):
    """DCGAN (Radford et al. 2016) with each transposed conv replaced by nearest 2x upsampling
    and a 3x3 conv (UpsampleConv2d: no checkerboard artefacts, and ganfast fuses it)."""

    def __init__(self, image_size: int, channels: int, z_dim: int = 64, width: int = 32,
                 num_classes: int = 0):
        super().__init__()
        self.z_dim = z_dim
        base, n_up = upsampling_plan(image_size)
        widths = [min(width * 2 ** (n_up - i), width * 8) for i in range(n_up + 1)]
        self.cond = Conditioning(num_classes, 16)
        self.project = nn.Linear(z_dim + self.cond.out_dim, widths[0] * base * base)
        self.start = (widths[0], base, base)
        blocks = [nn.BatchNorm2d(widths[0]), nn.ReLU()]
        for c_in, c_out in zip(widths, widths[1:], strict=False):
            blocks += [UpsampleConv2d(c_in, c_out), nn.BatchNorm2d(c_out), nn.ReLU()]
        self.blocks = nn.Sequential(*blocks, nn.Conv2d(widths[-1], channels, 3, padding=1), nn.Tanh())

    def forward(self, z, labels=None):
        return self.blocks(self.project(self.cond(z, labels)).view(-1, *self.start))


def dcgan_discriminator(image_size: int, channels: int, width: int = 32, num_classes: int = 0):
    """Strided 4x4 convs down to the generator's base size; no batch norm (it would couple the
    samples that the per-sample penalties treat independently)."""
    base, n_down = upsampling_plan(image_size)
    layers, c_in = [nn.Conv2d(channels, width, 3, padding=1), nn.LeakyReLU(0.2)], width
    for i in range(n_down):
        c_out = min(width * 2 ** (i + 1), width * 8)
        layers += [nn.Conv2d(c_in, c_out, 4, 2, 1), nn.LeakyReLU(0.2)]
        c_in = c_out
    return Discriminator(nn.Sequential(*layers, nn.Flatten()), c_in * base * base, num_classes)


class ResBlockUp(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.main = nn.Sequential(nn.BatchNorm2d(c_in), nn.ReLU(), UpsampleConv2d(c_in, c_out),
                                  nn.BatchNorm2d(c_out), nn.ReLU(), nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x):
        # A 1x1 conv commutes with nearest upsampling: convolve first, at a quarter of the cost.
        return self.main(x) + nn.functional.interpolate(self.skip(x), scale_factor=2)


class ResBlockDown(nn.Module):
    """SNGAN's discriminator block; `first` is its "optimized" block (no leading ReLU)."""

    def __init__(self, c_in: int, c_out: int, down: bool, first: bool = False):
        super().__init__()
        conv1, conv2 = (spectral_norm(nn.Conv2d(c, c_out, 3, padding=1)) for c in (c_in, c_out))
        pool = [nn.AvgPool2d(2)] if down else []
        self.main = nn.Sequential(*([] if first else [nn.ReLU()]), conv1, nn.ReLU(), conv2, *pool)
        learn_skip = down or c_in != c_out
        skip = [spectral_norm(nn.Conv2d(c_in, c_out, 1))] if learn_skip else []
        self.skip = nn.Sequential(*(pool + skip if first else skip + pool))

    def forward(self, x):
        return self.main(x) + self.skip(x)


class SNGANGenerator(nn.Module):
    """SNGAN's CIFAR ResNet generator (Miyato et al. 2018), its upsampling in UpsampleConv2d."""

    def __init__(self, image_size: int, channels: int, z_dim: int = 64, width: int = 64,
                 num_classes: int = 0):
        super().__init__()
        self.z_dim = z_dim
        base, n_up = upsampling_plan(image_size)
        self.cond = Conditioning(num_classes, 16)
        self.project = nn.Linear(z_dim + self.cond.out_dim, width * base * base)
        self.start = (width, base, base)
        self.blocks = nn.Sequential(*(ResBlockUp(width, width) for _ in range(n_up)),
                                    nn.BatchNorm2d(width), nn.ReLU(),
                                    nn.Conv2d(width, channels, 3, padding=1), nn.Tanh())

    def forward(self, z, labels=None):
        return self.blocks(self.project(self.cond(z, labels)).view(-1, *self.start))


def sngan_discriminator(image_size: int, channels: int, width: int = 64, num_classes: int = 0):
    """Spectral norm on every layer; downsampling blocks to the base size, then two more."""
    _, n_down = upsampling_plan(image_size)
    blocks = [ResBlockDown(channels, width, down=n_down > 0, first=True)]
    blocks += [ResBlockDown(width, width, down=i + 1 < n_down) for i in range(max(n_down - 1, 0) + 2)]
    trunk = nn.Sequential(*blocks, nn.ReLU(), SumPool())
    return Discriminator(trunk, width, num_classes, wrap=spectral_norm)


class SumPool(nn.Module):
    def forward(self, x):
        return x.sum((2, 3))


def resolve(name: str, sample_shape) -> str:
    """The model --model name builds for samples of sample_shape: auto is mlp for points (a
    shape of one dimension), dcgan for images."""
    if name == "auto":
        return "mlp" if len(sample_shape) == 1 else "dcgan"
    return name


def build(name: str, sample_shape: tuple, num_classes: int = 0, width: int | None = None):
    """(generator, discriminator) for data whose samples have sample_shape ((2,) or (C, H, W))."""
    name = resolve(name, sample_shape)
    if name not in MODELS:
        raise ValueError(f"--model {name!r}: expected one of {', '.join(MODELS)}")
    if name == "mlp":
        if len(sample_shape) != 1:
            raise ValueError(f"--model mlp is for 2-D points; the data are images {list(sample_shape)}"
                             " (use dcgan or sngan)")
        w = width or DEFAULT_WIDTHS["mlp"]
        return (MLPGenerator(out_dim=sample_shape[0], width=w, num_classes=num_classes),
                mlp_discriminator(sample_shape[0], w, num_classes=num_classes))
    if len(sample_shape) != 3:
        raise ValueError(f"--model {name} is for images; the data are points {list(sample_shape)} (use mlp)")
    channels, size = sample_shape[0], sample_shape[1]
    if sample_shape[1] != sample_shape[2]:
        raise ValueError(f"--model {name} needs square images, got {sample_shape[1]}x{sample_shape[2]}: "
                         f"pass --image-size N to resize them to NxN")
    if name == "dcgan":
        w = width or DEFAULT_WIDTHS["dcgan"]
        return (DCGANGenerator(size, channels, width=w, num_classes=num_classes),
                dcgan_discriminator(size, channels, w, num_classes))
    w = width or DEFAULT_WIDTHS["sngan"]
    return (SNGANGenerator(size, channels, width=w, num_classes=num_classes),
            sngan_discriminator(size, channels, w, num_classes))


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
