"""pytest-benchmark: spectral normalization on CPU, PyTorch's parametrization beside
ganfast.nn.spectral_norm (torch backend). GPU figures come from `ganfast bench --op
spectral_norm`. Run: make bench."""

import pytest
import torch
from torch import nn

from ganfast.bench import spectral_norm as cases


@pytest.mark.parametrize("impl", list(cases.SPECTRAL_NORMS))
def test_sngan32_discriminator_step(benchmark, impl):
    torch.manual_seed(0)
    model = cases.SNGANDiscriminator32(cases.SPECTRAL_NORMS[impl])
    real, fake = torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32)
    benchmark.group = "SNGAN-32 D step (D(real), D(fake), one backward), batch 4"
    benchmark.pedantic(lambda: cases.discriminator_step(model, real, fake), rounds=10,
                       warmup_rounds=2)


@pytest.mark.parametrize("impl", list(cases.SPECTRAL_NORMS))
def test_normalize_conv_weight(benchmark, impl):
    layer = cases.SPECTRAL_NORMS[impl](nn.Conv2d(128, 128, 3))
    benchmark.group = "normalize fwd+bwd, 128x128x3x3"
    benchmark(lambda: layer.weight.sum().backward())
