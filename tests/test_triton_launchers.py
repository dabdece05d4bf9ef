"""The Triton launchers' shared part: the device guard every launcher wears."""

import contextlib

import pytest
import torch
from ganfast.kernels import gradient_penalty as gp_kernels
from ganfast.kernels import launch_on_input_device
from ganfast.kernels import spectral_norm as sn_kernels
from ganfast.kernels import upsample_conv as upsample_kernels

pytestmark = pytest.mark.interpreter


def test_every_launcher_makes_its_inputs_device_current(monkeypatch):
    """Triton launches on the current device: each launcher switches to its inputs' GPU when
    another is current (a multi-GPU case this machine cannot run: the device calls are stood in
    for, and the launcher records what was current when it ran)."""
    launchers = [gp_kernels.interpolate, gp_kernels.norm_penalty, gp_kernels.norm_backward,
                 sn_kernels.normalize_group, sn_kernels.normalize_group_backward,
                 upsample_kernels.upsample_conv_forward]
    unguarded = [f.__name__ for f in launchers
                 if getattr(f, "__wrapped__", None) is None or f.__code__ is not
                 launch_on_input_device(f.__wrapped__).__code__]
    assert not unguarded, f"launchers without the device guard: {unguarded}"

    current = [0]

    @contextlib.contextmanager
    def device(index):
        before, current[0] = current[0], index
        yield
        current[0] = before

    monkeypatch.setattr(torch.cuda, "current_device", lambda: current[0])
    monkeypatch.setattr(torch.cuda, "device", device)

    class OnGpu:  # what the guard reads of a tensor
        def __init__(self, index):
            self.index = index

        def get_device(self):
            return self.index

    ran_on = launch_on_input_device(lambda first, *args: (current[0], args))
    assert ran_on(OnGpu(1), "a") == (1, ("a",)) and current[0] == 0  # switched, then restored
    assert ran_on(OnGpu(0)) == (0, ())
    assert ran_on(torch.zeros(1)) == (0, ())  # CPU tensors (the interpreter): left as they are
