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
    "ganfast_C::norm_penalty",
    "ganfast_C::spectral_norm_group",
    "ganfast_C::spectral_norm_group_backward",
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
    assert [a.name for a in schema.arguments] == ["grad", "x", "norm", "slope", "offset"]


def test_extension_schemas_match_the_python_ops(extension):
    # The two namespaces are one op each: the Functions call either with the same arguments.
    for name in ("interpolate", "norm_penalty", "norm_backward"):
        ours = getattr(torch.ops.ganfast, name).default._schema
        theirs = getattr(torch.ops.ganfast_C, name).default._schema
        assert str(ours).replace("ganfast::", "") == str(theirs).replace("ganfast_C::", "")


def test_extension_ops_run_the_reference_on_cpu(extension):
    # ganfast/ops attaches the PyTorch reference as their CPU kernel (opcheck and compile on CPU).
    x = torch.randn(2, 3)
    norms, penalty = torch.ops.ganfast_C.norm_penalty(x, 2.0, 1.0)
    torch.testing.assert_close(norms, x.norm(dim=1))
    torch.testing.assert_close(penalty, 2.0 * ((x.norm(dim=1) - 1) ** 2).mean())


def test_info_reports_a_reason_whenever_the_extension_is_missing():
    status = ganfast.info()["extension"]
    assert status["loaded"] or status["reason"].startswith("extension ")


@pytest.mark.parametrize("archs,capability,runs", [
    ("80;90", (8, 0), True), ("80;90", (8, 6), True), ("80;90", (8, 9), True),
    ("80;90", (9, 0), True), ("80;90", (10, 0), True), ("80;90", (12, 0), True),  # PTX of 9.0
    ("80;90", (7, 5), False), ("86;90", (8, 0), False), ("90;80", (8, 9), True),
    ("8.0", (9, 0), True), ("90", (8, 6), False), ("", (7, 5), True),  # no record: not refused
    ("80;90a", (9, 0), True), ("80;90a", (10, 0), True),  # PTX of 8.0 (90a's runs on 9.0 alone)
    ("90a", (9, 0), True), ("90a", (10, 0), False),
])
def test_cuda_backend_refuses_a_gpu_the_build_has_no_code_for(monkeypatch, archs, capability, runs):
    # Machine code of sm_XY runs on X.Y..X.9, the PTX of the newest arch on anything from it
    # up. A GPU with neither must not be given the cuda backend ("auto" then tries the next).
    from ganfast import backends

    monkeypatch.setattr(_extension, "build_info",
                        lambda: {"extension_built": True, "reason": "", "cuda_archs": archs})
    monkeypatch.setattr(_extension, "load", lambda: (True, ""))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    reason = backends.unavailable_reason("cuda", torch.device("cuda"))
    if runs:
        assert reason == ""
    else:
        assert f"has no code for this GPU's {capability[0]}.{capability[1]}" in reason
        assert f"GANFAST_CUDA_ARCHS={capability[0]}{capability[1]}" in reason


@pytest.mark.parametrize("current", [0, 1])
def test_cuda_backend_needs_code_for_every_visible_gpu(monkeypatch, current):
    # "auto" is resolved once per op and setting, not per device: with an H100 and a T4 in one
    # process under the default "80;90", neither GPU is given the cuda backend, whichever is
    # the current device, and the reason names the T4.
    from ganfast import backends

    capabilities = {0: (9, 0), 1: (7, 5)}
    monkeypatch.setattr(_extension, "build_info",
                        lambda: {"extension_built": True, "reason": "", "cuda_archs": "80;90"})
    monkeypatch.setattr(_extension, "load", lambda: (True, ""))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_capability",
                        lambda device=None: capabilities[current if device is None else device])
    reason = backends.unavailable_reason("cuda", torch.device("cuda"))
    assert "has no code for GPU 1's 7.5" in reason and "GANFAST_CUDA_ARCHS=75" in reason
    capabilities[1] = (8, 6)  # an A6000 instead: code for both
    assert backends.unavailable_reason("cuda", torch.device("cuda")) == ""
