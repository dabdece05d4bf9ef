"""ganfast._C: when built, it imports without a GPU and registers CUDA kernels for its ops.

CI builds the extension and sets GANFAST_REQUIRE_EXTENSION=1, so there a missing or broken
build fails here instead of skipping."""

import os

import pytest
import torch

import ganfast
from ganfast import _extension

EXPECTED_OPS = [
    "ganfast_C::interpolate",
    "ganfast_C::norm_backward",
    "ganfast_C::sum_squares_per_sample",
]


@pytest.fixture
def extension():
    loaded, why = _extension.load()
    if not loaded:
        if os.environ.get("GANFAST_REQUIRE_EXTENSION") == "1":
            pytest.fail(f"GANFAST_REQUIRE_EXTENSION=1 but ganfast._C is unavailable: {why}")
        pytest.skip(f"ganfast._C unavailable: {why}")


def test_extension_imports_and_registers_cuda_kernels(extension):
    assert _extension.registered_ops() == EXPECTED_OPS
    for name in EXPECTED_OPS:
        assert hasattr(torch.ops.ganfast_C, name.split("::")[1])
    status = ganfast.info()["extension"]
    assert status["loaded"] and status["registered_ops"] == EXPECTED_OPS


def test_extension_ops_have_the_expected_schemas(extension):
    schema = torch.ops.ganfast_C.interpolate.default._schema
    assert [a.name for a in schema.arguments] == ["real", "fake", "alpha"]
    schema = torch.ops.ganfast_C.norm_backward.default._schema
    assert [a.name for a in schema.arguments] == ["grad_norm", "x", "norm"]


def test_extension_kernels_refuse_cpu_tensors(extension):
    x = torch.randn(2, 3)
    with pytest.raises(NotImplementedError):  # no CPU kernel: torch's CPU path is the reference
        torch.ops.ganfast_C.sum_squares_per_sample(x)


def test_info_reports_a_reason_whenever_the_extension_is_missing():
    status = ganfast.info()["extension"]
    assert status["loaded"] or status["reason"].startswith("extension ")
