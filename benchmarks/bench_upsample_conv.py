"""pytest-benchmark: nearest-upsample + 3x3 conv on CPU, the unfused block (nn.Upsample +
Conv2d) beside ganfast's torch backend (on CPU tap products or the folded transposed conv,
whichever cpu_route picks for the block), fwd / bwd / fwd+bwd, at
generator block shapes (CPU batches of ganfast.bench.upsample_conv.BLOCKS). GPU figures come from
`ganfast bench --op upsample_conv`. Run: make bench."""

import pytest
import torch

from ganfast.bench import upsample_conv as uc_bench
from ganfast.nn.functional import upsample_conv2d
from ganfast.ops.upsample_conv import upsample_conv2d_unfused

IMPLS = {"unfused": upsample_conv2d_unfused, "ganfast": upsample_conv2d}
BLOCKS = ["dcgan64-512-4", "dcgan64-128-16", "sngan32-256-8", "biggan128-256-64"]


def _inputs(block, channels_last):
    _, batch, cin, cout, h = uc_bench.BLOCKS[block]
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(batch, cin, h, h).to(memory_format=fmt).requires_grad_(True)
    weight = (torch.randn(cout, cin, 3, 3) / (3 * cin**0.5)).requires_grad_(True)
    bias = torch.randn(cout, requires_grad=True)
    grad_out = torch.randn(batch, cout, 2 * h, 2 * h).to(memory_format=fmt)
    return (x, weight, bias), grad_out


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("mode", ["fwd", "bwd", "fwd+bwd"])
@pytest.mark.parametrize("impl", list(IMPLS))
def test_upsample_conv(benchmark, impl, mode, block, channels_last):
    inputs, grad_out = _inputs(block, channels_last)
    fn = IMPLS[impl]
    benchmark.group = f"upsample_conv {mode} {block} {'cl' if channels_last else 'nchw'}"
    if mode == "fwd":
        run = lambda: fn(*inputs)  # noqa: E731
    elif mode == "bwd":
        out = fn(*inputs)
        run = lambda: torch.autograd.grad(out, inputs, grad_out, retain_graph=True)  # noqa: E731
    else:
        run = lambda: torch.autograd.grad(fn(*inputs), inputs, grad_out)  # noqa: E731
    benchmark.pedantic(run, rounds=7, warmup_rounds=2)
