"""pytest-benchmark: the gradient penalty on CPU, canonical PyTorch beside ganfast's torch
backend (the CPU fallback), one shape per mode. GPU figures come from `ganfast bench`
(benchmarks/results/). Run: make bench."""

import pytest
import torch

import ganfast
from ganfast.bench import gradient_penalty as cases
from ganfast.train.models import DCGANCritic

SHAPE = (16, 64, 32, 32)


@pytest.fixture
def grads():
    return torch.randn(SHAPE, requires_grad=True)


@pytest.mark.parametrize("impl", ["canonical", "ganfast"])
def test_penalty_fwd_bwd(benchmark, grads, impl):
    penalty = cases.canonical_penalty if impl == "canonical" else cases.ganfast_penalty("torch")
    benchmark.group = "penalty fwd+bwd"
    benchmark(lambda: torch.autograd.grad(penalty(grads), grads))


@pytest.mark.parametrize("impl", ["canonical", "ganfast"])
def test_interpolate(benchmark, impl):
    real, fake, alpha = torch.randn(SHAPE), torch.randn(SHAPE), torch.rand(SHAPE[0])
    fn = cases.canonical_interp if impl == "canonical" else ganfast.ops.interpolate
    benchmark.group = "interpolate"
    benchmark(lambda: fn(real, fake, alpha))


@pytest.mark.parametrize("impl", ["canonical", "ganfast"])
def test_wgan_gp_step_dcgan64(benchmark, impl):
    critic = DCGANCritic()
    real, fake = torch.randn(8, 3, 64, 64), torch.randn(8, 3, 64, 64)

    def step():
        critic.zero_grad(set_to_none=True)
        if impl == "canonical":
            cases.canonical_wgan_gp(critic, real, fake).backward()
        else:
            ganfast.gradient_penalty(critic, real, fake).backward()

    benchmark.group = "WGAN-GP step, DCGAN-64 critic, batch 8"
    benchmark.pedantic(step, rounds=5, warmup_rounds=1)
