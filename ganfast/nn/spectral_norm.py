"""Spectral normalization as a drop-in for torch.nn.utils.parametrizations.spectral_norm.

Built on torch.nn.utils.parametrize with the same buffers (`_u`, `_v`), the same
initialisation (normal u, v, normalized, then 15 power iterations: with the same RNG state, the
same u and v), the same update order (in training, n_power_iterations steps in place on every
access to the weight, then W / sigma) and the same eval behaviour (no update). State dicts
therefore use PyTorch's keys and load both ways; checkpoints of the legacy
torch.nn.utils.spectral_norm (weight_orig, weight_u, weight_v) load through a pre-hook.
"""

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.compiler import is_compiling
from torch.nn.utils import parametrize

from .._numbers import integer, real_number
from ..backends import resolve
from ..ops import spectral_norm as ops

_TRANSPOSED_CONVS = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


class SpectralNorm(nn.Module):
    """The parametrization: weight -> weight / sigma(weight).

    legacy_update_order: update v from u, then u from v, as the hook-based
    torch.nn.utils.spectral_norm does (the parametrization updates u first). ganfast.accelerate
    sets it on the layers it converts from that API, so their outputs do not change.
    """

    legacy_update_order = False
    # Set by SpectralNormGroup.once(): the weight it normalized on entry, and the tensor it
    # normalized (the layer's original), so that an access with another tensor in its place
    # (torch.func.functional_call with other parameters, torch.func transforms, a
    # DataParallel replica's copy) normalizes that tensor instead of getting the block's.
    _group_weight = None
    _group_original = None

    def __init__(self, weight: torch.Tensor, n_power_iterations: int = 1, dim: int = 0,
                 eps: float = 1e-12) -> None:
        super().__init__()
        ndim = weight.ndim
        if not -ndim <= dim < ndim:
            raise IndexError(f"spectral_norm: dim must be in [-{ndim}, {ndim - 1}] for a "
                             f"{ndim}-d weight, got dim={dim}")
        self.dim = dim if dim >= 0 else dim + ndim
        self.eps = eps
        self.n_power_iterations = n_power_iterations
        # The fused route's plans, (n_iter, device index) -> GroupPlan. Made here, not on first
        # use: DataParallel's replicas are shallow copies of this module's __dict__, so they
        # share this dict (each its device's plan) only if the module had it before replicating.
        self._fused_plans = {}
        if ndim > 1:  # a 1-d weight is normalized exactly, with no u, v (as PyTorch)
            weight_mat = ops.weight_to_matrix(weight, self.dim)
            h, w = weight_mat.size()
            u = weight_mat.new_empty(h).normal_(0, 1)
            v = weight_mat.new_empty(w).normal_(0, 1)
            self.register_buffer("_u", F.normalize(u, dim=0, eps=eps))
            self.register_buffer("_v", F.normalize(v, dim=0, eps=eps))
            ops.power_iteration_(weight_mat, self._u, self._v, 15, eps)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        group_weight = self._group_weight
        if group_weight is not None and weight is self._group_original:
            return group_weight
        if weight.ndim == 1:
            return F.normalize(weight, dim=0, eps=self.eps)
        if not (self.legacy_update_order or is_compiling()):
            # Resolved on CPU too: a global set_backend("cuda") then raises BackendUnavailable
            # here as it does in the penalties, rather than running torch unasked.
            backend = resolve(ops.OP, "auto", weight.is_cuda)
            # torch.func transforms and forward-mode AD cannot run the kernels' Function, and
            # the kernels take real weights: the torch route below takes those (its
            # normalize_by_sigma runs the reference for them)
            if backend != "torch" and not ops.takes_reference(weight):
                return self._normalize_fused(weight, backend)
        u, v = self._u, self._v  # each buffer read through Module.__getattr__ once (3 us)
        if self.training:
            weight_mat = ops.weight_to_matrix(weight.detach(), self.dim)
            if self.legacy_update_order:  # v from u, then u from v: the same steps on W^T
                ops.power_iteration_(weight_mat.t(), v, u, self.n_power_iterations, self.eps)
            else:
                ops.power_iteration_(weight_mat, u, v, self.n_power_iterations, self.eps)
        return ops.normalize_by_sigma(weight, u, v, self.dim)

    def _normalize_fused(self, weight: torch.Tensor, backend: str) -> torch.Tensor:
        # The grouped kernel (Triton or CUDA) with a group of one: power iteration, sigma and
        # W / sigma in one launch, the backward in one more. Under torch.compile the torch route
        # is traced.
        # A plan per device as well: DataParallel's replicas share the dict and run at once,
        # each on its own GPU (setdefault: a module pickled before __init__ made it).
        key = (self.n_power_iterations if self.training else 0, weight.get_device())
        plans = self.__dict__.setdefault("_fused_plans", {})
        plan = plans.get(key)
        if plan is None:
            plan = plans[key] = ops.GroupPlan([weight], [self.dim], [key[0]])
        return ops.normalize_group(plan, [weight], [self._u], [self._v], self.eps, backend)[0]

    def _apply(self, fn, *args, **kwargs):
        # .to(), .cuda(), .half() and the like: the plans describe the tensors before the move
        # and keep what they made for them (a channels_last weight's contiguous copy on the old
        # device); cleared in place, so DataParallel replicas still share the dict.
        self.__dict__.setdefault("_fused_plans", {}).clear()
        return super()._apply(fn, *args, **kwargs)

    def __getstate__(self):
        # A copy made inside a SpectralNormGroup block (deepcopy for an EMA model) is not part
        # of that block: it normalizes on access, and the block's weight (a non-leaf
        # tensor, which deepcopy refuses) stays behind.
        state = dict(super().__getstate__())
        state.pop("_group_weight", None)
        state.pop("_group_original", None)
        return state

    def right_inverse(self, value: torch.Tensor) -> torch.Tensor:
        return value

    def extra_repr(self) -> str:
        return f"dim={self.dim}, n_power_iterations={self.n_power_iterations}, eps={self.eps}"


def _is_spectral_norm(parametrization) -> bool:
    """PyTorch's or ganfast's spectral norm, by type, not by name: a user's parametrization that
    shares the name is neither (accelerate would move it, running its right_inverse again)."""
    from torch.nn.utils.parametrizations import _SpectralNorm

    return type(parametrization) in (_SpectralNorm, SpectralNorm)


def spectral_norm(module: nn.Module, name: str = "weight", n_power_iterations: int = 1,
                  eps: float = 1e-12, dim: int = None) -> nn.Module:
    """Apply spectral normalization to `module.<name>`; returns the module (as PyTorch's)."""
    _check_module(module, "spectral_norm")
    if not isinstance(name, str):  # (getattr's own error names neither function nor argument)
        raise TypeError(f"spectral_norm: name must be a str (the parameter's name, such as "
                        f"'weight'), got {type(name).__name__}")
    if _has_legacy_spectral_norm(module, name):
        raise ValueError(f"spectral_norm: {type(module).__name__}.{name} already has the legacy "
                         "torch.nn.utils.spectral_norm; ganfast.accelerate(module) converts it")
    weight = getattr(module, name, None)
    # A plain tensor attribute is neither: register_parametrization would refuse it later.
    if not isinstance(weight, torch.Tensor) or not (
            name in module._parameters or name in module._buffers
            or parametrize.is_parametrized(module, name)):
        raise ValueError(f"spectral_norm: module {type(module).__name__} has no parameter or "
                         f"buffer named name={name!r}")
    if weight.ndim < 1:
        raise ValueError(f"spectral_norm: the weight {name!r} must have at least 1 dimension, "
                         f"got a {weight.ndim}-d tensor")
    if not (weight.is_floating_point() or weight.is_complex()):
        # (u and v are drawn from a normal distribution in the weight's dtype: the error would
        # otherwise be normal_'s "not implemented for 'Long'")
        raise TypeError(f"spectral_norm: the weight {name!r} must have a floating-point or "
                        f"complex dtype, got {weight.dtype}")
    n_power_iterations = _integer(n_power_iterations, "n_power_iterations")
    if n_power_iterations < 1:
        raise ValueError("spectral_norm: n_power_iterations must be an int >= 1, got "
                         f"{n_power_iterations!r}")
    # A Python float from here on (numpy's, or a 0-dim tensor as PyTorch's spectral norm takes
    # it): the layer's repr, its group's batching by eps and the kernels' float argument. bool
    # is refused by real_number: eps=True would be taken as eps=1 (n_power_iterations and dim
    # refuse bools too).
    number = real_number(eps)
    if number is None or not 0 < number < math.inf:
        raise ValueError(f"spectral_norm: eps must be a finite number > 0, got eps={eps!r}")
    eps = number
    if dim is not None:
        dim = _integer(dim, "dim")
    if parametrize.is_parametrized(module, name) and any(
            _is_spectral_norm(p) for p in module.parametrizations[name]):
        raise ValueError(f"spectral_norm: {type(module).__name__}.{name} is already "
                         "spectral-normalized (applied twice)")
    if dim is None:
        dim = 1 if isinstance(module, _TRANSPOSED_CONVS) else 0
    parametrize.register_parametrization(
        module, name, SpectralNorm(weight, n_power_iterations, dim, eps))
    module._register_load_state_dict_pre_hook(functools.partial(_load_legacy_keys, name))
    return module


def _check_module(module, caller: str) -> None:
    if not isinstance(module, nn.Module):
        raise TypeError(f"{caller}: module must be a torch.nn.Module (the layer whose weight is "
                        f"normalized), got {type(module).__name__}")


def _integer(value, argument: str) -> int:
    """An int, or anything that is one (numpy's integers, a 0-dim integer tensor or array, as
    PyTorch's spectral norm takes them); bools and floats are refused (with ValueError, as
    before these checks named the type)."""
    number = integer(value)
    if number is None:
        raise ValueError(f"spectral_norm: {argument} must be an int, got {value!r}")
    return number


def _has_legacy_spectral_norm(module: nn.Module, name: str) -> bool:
    from torch.nn.utils.spectral_norm import SpectralNorm as LegacySpectralNorm

    return any(isinstance(hook, LegacySpectralNorm) and hook.name == name
               for hook in module._forward_pre_hooks.values())


def remove_spectral_norm(module: nn.Module, name: str = "weight") -> nn.Module:
    """Leave a plain layer whose `name` is the normalized weight (as remove_parametrizations)."""
    _check_module(module, "remove_spectral_norm")
    if not isinstance(name, str):
        raise TypeError(f"remove_spectral_norm: name must be a str (the parameter's name, such "
                        f"as 'weight'), got {type(name).__name__}")
    if _has_legacy_spectral_norm(module, name):
        raise ValueError(f"remove_spectral_norm: {type(module).__name__}.{name} has the legacy "
                         "torch.nn.utils.spectral_norm; remove it with "
                         "torch.nn.utils.remove_spectral_norm")
    if not (parametrize.is_parametrized(module, name) and any(
            _is_spectral_norm(p) for p in module.parametrizations[name])):
        raise ValueError(f"remove_spectral_norm: {type(module).__name__}.{name} is not "
                         "spectral-normalized")
    parametrize.remove_parametrizations(module, name, leave_parametrized=True)
    hooks = module._load_state_dict_pre_hooks
    for key, hook in list(hooks.items()):
        inner = getattr(hook, "hook", hook)
        if isinstance(inner, functools.partial) and inner.func is _load_legacy_keys \
                and inner.args == (name,):
            del hooks[key]
    return module


def _load_legacy_keys(name, state_dict, prefix, local_metadata, strict, missing_keys,
                      unexpected_keys, error_msgs) -> None:
    """Rename torch.nn.utils.spectral_norm's keys to the parametrization's, in place."""
    renames = {
        f"{prefix}{name}_orig": f"{prefix}parametrizations.{name}.original",
        f"{prefix}{name}_u": f"{prefix}parametrizations.{name}.0._u",
        f"{prefix}{name}_v": f"{prefix}parametrizations.{name}.0._v",
    }
    if renames.keys().isdisjoint(state_dict.keys()):
        return
    for old, new in renames.items():
        if old in state_dict:
            state_dict[new] = state_dict.pop(old)
