"""`ganfast.accelerate(model)`: swap stock layers for ganfast's in place, results unchanged.

What it converts (everything else is left alone):
- nn.Upsample(scale_factor=2, mode="nearest" or "nearest-exact", the same function at scale 2)
  or nn.UpsamplingNearest2d(scale_factor=2), followed, in an nn.Sequential (nested ones too),
  by a 3x3, stride-1, padding-1, dilation-1, ungrouped, zero-padded nn.Conv2d becomes one
  ganfast.nn.UpsampleConv2d. It takes the conv's place (the Upsample's becomes nn.Identity), so
  the state_dict keys do not move, and it holds the conv's own Parameter objects, so an optimizer
  created before the call keeps training them. A spectral-normalized conv (a generator's, as in
  BigGAN) brings its spectral norm along: the parametrization moves to the fused layer, u and v
  included, under the same keys. A pair is left alone (and the report says why) when either
  module has hooks, which would no longer run, when the conv has another parametrization or a
  weight or bias that is not a Parameter, when the Sequential is a subclass with its own
  forward, which may use the modules otherwise, or when any of the three has a forward set on
  the instance. An Upsample followed by a 3x3 Conv2d that the fused layer does not compute
  (another mode, scale or size; a stride, padding, dilation, groups or padding_mode of its
  own) is reported too, with the setting that keeps them apart.
- Spectral norm of either PyTorch API (torch.nn.utils.parametrizations.spectral_norm or the
  legacy hook torch.nn.utils.spectral_norm) becomes ganfast.nn.spectral_norm with the same
  weight Parameter, u, v, n_power_iterations, eps and dim. A legacy layer keeps the legacy update
  order (v from u, then u from v) so its outputs stay the same; its state_dict then uses the
  parametrization keys, and ganfast's spectral norm still loads the legacy keys. The legacy hook
  updates u and v once per call of the layer, a parametrization on each read of the weight in
  training mode: the same where the forward reads it once, as PyTorch's Linear, Bilinear,
  Embedding(Bag), Conv, ConvTranspose layers and RNN cells do. PyTorch's other layers (an RNN
  reads each weight twice per call), and layers held by PyTorch's modules other than containers
  (MultiheadAttention reads its out_proj's weight without calling it, so the legacy hook never
  normalized it), keep the legacy hook and are reported; a user's own layer is converted, as
  what its forward reads cannot be seen. Code that reads a converted layer's .weight outside
  its forward in training mode (to log its norm) now advances u and v, which the legacy
  attribute did not: read it in eval() mode, or parametrizations.weight.original.

The converted model computes the same function (to float rounding) in eval and training mode,
with the same gradients: tests/test_accelerate.py checks this in float64. Convert before wrapping
the model in DistributedDataParallel, which records the parameters and hooks it saw.
"""

import dataclasses
import functools

import torch
from torch import nn
from torch.nn.utils import parametrize


@dataclasses.dataclass(frozen=True)
class Change:
    path: str
    before: str
    after: str


@dataclasses.dataclass(frozen=True)
class LeftAlone:
    """A conversion that looks possible but would change results or drop something: what (an
    Upsample + Conv2d pair, or a weight with the legacy spectral norm) and why."""
    path: str
    reason: str


def accelerate(model: nn.Module, *, spectral_norm: bool = True, upsample_conv: bool = True,
               verbose: bool = True) -> nn.Module:
    """Convert `model` in place (see the module docstring) and return it. With verbose, print a
    table of what changed (module path, before, after), or a line saying nothing did, and what
    it left alone (LeftAlone: Upsample + Conv2d pairs, legacy spectral norms) with the reason.
    `model.ganfast_changes` lists the changes of every call so far, `model.ganfast_left_alone`
    what this call left alone."""
    if isinstance(model, type) and issubclass(model, nn.Module):  # "got type" would not say it
        raise TypeError(f"accelerate: model must be a torch.nn.Module instance, got the class "
                        f"{model.__name__} itself; pass the model built from it")
    if not isinstance(model, nn.Module):
        raise TypeError(f"accelerate: model must be a torch.nn.Module, got {type(model).__name__}")
    wrapped = [path or type(model).__name__ for path, m in model.named_modules()
               if isinstance(m, nn.parallel.DistributedDataParallel)]
    if wrapped:
        raise ValueError(
            f"accelerate: {', '.join(wrapped)} is a DistributedDataParallel wrapper, which keeps "
            "the parameters and hooks it saw when it was made; call ganfast.accelerate on the "
            "model before wrapping it")
    changes, left_alone = [], []
    if spectral_norm:  # first: a legacy spectral norm's hook would keep its conv from fusing
        changes += _convert_spectral_norm(model, left_alone)
    if upsample_conv:
        changes += _fuse_upsample_conv(model, left_alone)
    model.ganfast_changes = getattr(model, "ganfast_changes", []) + changes
    model.ganfast_left_alone = left_alone
    if verbose:
        print(report(changes, _layer_class(model).__name__, left_alone))
    return model


def report(changes: list[Change], model_name: str = "model",
           left_alone: list[LeftAlone] = ()) -> str:
    if not changes:
        lines = [f"ganfast.accelerate: nothing to convert in {model_name}; it is unchanged."]
    else:
        rows = [("module", "before", "after")] + [(c.path, c.before, c.after) for c in changes]
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        lines = [f"ganfast.accelerate: {len(changes)} change(s) in {model_name}"]
        for i, row in enumerate(rows):
            lines.append("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
                         .rstrip())
            if i == 0:
                lines.append("  " + "  ".join("-" * w for w in widths))
    lines += [f"  left alone: {skip.path} ({skip.reason})" for skip in left_alone]
    return "\n".join(lines)


# --- Upsample + Conv2d -> UpsampleConv2d ---------------------------------------------------------

# At scale 2 "nearest-exact" reads source pixel floor((i + 0.5) / 2) = floor(i / 2), as
# "nearest" does: the same function. nn.UpsamplingNearest2d is Upsample(mode="nearest").
_NEAREST_UPSAMPLES = (nn.Upsample, nn.UpsamplingNearest2d)
_NEAREST_MODES = ("nearest", "nearest-exact")
# The modules of a pair close enough to the fused layer's that the report says what keeps them
# apart (an Upsample of another mode, a 3x3 conv of another stride...).
_UPSAMPLES = (*_NEAREST_UPSAMPLES, nn.UpsamplingBilinear2d)


def _upsample_setting_not_fused(module: nn.Module) -> str | None:
    """For an nn.Upsample (of a stock class), the setting the fused layer does not compute, or
    None when it upsamples by nearest 2x."""
    name = type(module).__name__
    if module.mode not in _NEAREST_MODES:
        return f"the {name} has mode={module.mode!r}, the fused layer mode='nearest'"
    if module.size is not None:
        return f"the {name} has size={module.size!r}, the fused layer scale_factor=2"
    scale = module.scale_factor
    scales = scale if isinstance(scale, tuple) else (scale, scale)
    if not (len(scales) == 2 and all(float(s) == 2.0 for s in scales)):
        return f"the {name} has scale_factor={scale!r}, the fused layer scale_factor=2"
    if module.align_corners is not None:  # (the stock pair raises: F.interpolate refuses it)
        return (f"the {name} sets align_corners={module.align_corners!r}, which nearest "
                "upsampling refuses")
    return None


def _conv_setting_not_fused(module: nn.Conv2d) -> str | None:
    """For a 3x3 nn.Conv2d, the setting the fused op does not compute (stride 1, padding 1,
    ungrouped, undilated, zero padding), or None."""
    for setting, fused in (("stride", (1, 1)), ("dilation", (1, 1)), ("groups", 1),
                           ("padding_mode", "zeros")):
        if getattr(module, setting) != fused:
            return (f"the Conv2d has {setting}={getattr(module, setting)!r}, the fused layer "
                    f"{setting}={fused!r}")
    if module.padding not in ((1, 1), "same"):
        return f"the Conv2d has padding={module.padding!r}, the fused layer padding=1"
    return None


def _looks_fusable(upsample: nn.Module, conv: nn.Module) -> bool:
    """A stock Upsample followed by a 3x3 Conv2d: fused, or reported with what keeps them apart."""
    return (type(upsample) in _UPSAMPLES and isinstance(conv, nn.Conv2d)
            and conv.kernel_size == (3, 3))


def _why_not_fusable(container: nn.Sequential, upsample: nn.Module, conv: nn.Module) -> str | None:
    """Why a nearest-2x Upsample + 3x3 Conv2d pair must keep its modules (None: it need not)."""
    if type(container).forward is not nn.Sequential.forward:
        return f"{type(container).__name__} has its own forward"
    # A forward set on the instance (a wrapper, a patch) runs instead of its class's, which is
    # all the checks on types below can see.
    for name, module in (("Sequential", container), ("Upsample", upsample), ("Conv2d", conv)):
        if "forward" in vars(module):
            return f"the {name}'s forward is replaced on the instance"
    for name, module in (("Upsample", upsample), ("Conv2d", conv)):
        if (module._forward_hooks or module._forward_pre_hooks or module._backward_hooks
                or module._backward_pre_hooks):
            return _hooks_reason(name, module)
    if _layer_class(conv) is not nn.Conv2d:
        return f"{_layer_class(conv).__name__} is a subclass of Conv2d"
    from .nn.spectral_norm import _is_spectral_norm, _load_legacy_keys

    # Parametrizations first: another one (weight_norm's) registers a state_dict hook of its
    # own, and the parametrization is the reason worth naming.
    parametrized = dict(conv.parametrizations) if parametrize.is_parametrized(conv) else {}
    for name, chain in parametrized.items():
        if not (chain.is_tensor and all(_is_spectral_norm(p) for p in chain)):
            return f"the Conv2d's {name} has a parametrization other than spectral norm"
    # The fused layer holds the conv's own weight and bias Parameters (with their spectral
    # norms): one replaced by a plain tensor or a buffer leaves it nothing to hold, and anything
    # else registered on the conv would drop out of parameters(), buffers() and its checkpoints.
    for name in ("weight", "bias"):
        own = parametrized[name].original if name in parametrized else conv._parameters.get(name)
        no_bias = name == "bias" and own is None and "bias" in conv._parameters  # bias=False
        if not (isinstance(own, nn.Parameter) or no_bias):
            return f"the Conv2d's {name} is not a Parameter of its own"
    extra = ((set(conv._parameters) | set(parametrized)) - {"weight", "bias"}
             | set(conv._buffers) | (set(conv._modules) - {"parametrizations"}))
    if extra:
        return (f"the Conv2d holds {', '.join(sorted(extra))} beyond its weight and bias, which "
                "the fused layer would drop")
    for hooks in (conv._state_dict_hooks, conv._state_dict_pre_hooks,
                  conv._load_state_dict_pre_hooks, conv._load_state_dict_post_hooks):
        for hook in hooks.values():
            inner = getattr(hook, "hook", hook)
            if not (isinstance(inner, functools.partial) and inner.func is _load_legacy_keys):
                return "the Conv2d has state_dict hooks, which would no longer run"
    return None


def _hooks_reason(name: str, module: nn.Module) -> str:
    """Why a module's hooks keep a pair apart, naming the legacy spectral and weight norms, which
    a user applied rather than registered as hooks (spectral_norm=False keeps the former)."""
    from torch.nn.utils.spectral_norm import SpectralNorm as LegacySpectralNorm
    from torch.nn.utils.weight_norm import WeightNorm

    for hook in module._forward_pre_hooks.values():
        if isinstance(hook, LegacySpectralNorm):
            return (f"the {name} has the legacy torch.nn.utils.spectral_norm, a hook, which would "
                    "no longer run; accelerate converts it unless spectral_norm=False")
        if isinstance(hook, WeightNorm):
            return (f"the {name} has the legacy torch.nn.utils.weight_norm, a hook, which would "
                    "no longer run")
    return f"the {name} has hooks, which would no longer run"


def _move_tensors(conv: nn.Conv2d, fused: nn.Module) -> None:
    """The conv's weight and bias Parameters onto `fused`, with their spectral norms (the same
    modules: u, v and the state_dict keys move along)."""
    from .nn.spectral_norm import _load_legacy_keys

    for name in ("weight", "bias"):
        if not parametrize.is_parametrized(conv, name):
            setattr(fused, name, conv._parameters[name])
            continue
        chain = conv.parametrizations[name]
        setattr(fused, name, chain.original)
        for parametrization in chain:
            # unsafe: no forward check run (it would advance u); right_inverse still runs, the
            # identity for both spectral norms, so the original stays the same Parameter as is
            parametrize.register_parametrization(fused, name, parametrization, unsafe=True)
        fused._register_load_state_dict_pre_hook(functools.partial(_load_legacy_keys, name))


def _fuse_upsample_conv(model: nn.Module, left_alone: list[LeftAlone]) -> list[Change]:
    from .nn import UpsampleConv2d

    changes = []
    for path, container in list(model.named_modules()):
        if not isinstance(container, nn.Sequential):
            continue
        names = list(container._modules)
        prefix = f"{path}." if path else ""
        for up_name, conv_name in zip(names, names[1:], strict=False):
            upsample, conv = container._modules[up_name], container._modules[conv_name]
            if not _looks_fusable(upsample, conv):
                continue
            reason = (_upsample_setting_not_fused(upsample) or _conv_setting_not_fused(conv)
                      or _why_not_fusable(container, upsample, conv))
            if reason is not None:
                left_alone.append(LeftAlone(f"{prefix}{up_name}+{conv_name}", reason))
                continue
            fused = UpsampleConv2d(conv.in_channels, conv.out_channels, 3, padding=1,
                                   bias=conv.bias is not None, device="meta")
            _move_tensors(conv, fused)  # the same Parameters: optimizers keep training them
            fused.train(conv.training)
            container._modules[up_name] = nn.Identity().train(upsample.training)
            container._modules[conv_name] = fused
            padding = "'same'" if conv.padding == "same" else "1"
            changes.append(Change(f"{prefix}{up_name}+{conv_name}",
                                  f"{type(upsample).__name__}(2, {upsample.mode}) + "
                                  f"Conv2d({conv.in_channels}, "
                                  f"{conv.out_channels}, 3, padding={padding})",
                                  f"UpsampleConv2d({conv.in_channels}, {conv.out_channels})"))
    return changes


# --- spectral norm: PyTorch's (either API) -> ganfast's -------------------------------------------

# PyTorch's layers whose forward reads the weight once per call, where the legacy hook's one
# update of u and v per call is the parametrization's one per read of the weight. Its other
# layers may read a weight more often: an RNN reads each twice, nn.MultiheadAttention its
# in_proj_weight three times. RNN cells read weight_ih and weight_hh once each.
_READS_WEIGHT_ONCE = (nn.Linear, nn.Bilinear, nn.Embedding, nn.EmbeddingBag, nn.Conv1d, nn.Conv2d,
                      nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_CELL_WEIGHTS = ("weight_ih", "weight_hh")
# PyTorch's modules that run their children by calling them. Its other modules with children
# may read a child's weight without calling the child (nn.MultiheadAttention reads
# out_proj.weight itself; a Transformer layer's inference fast path, its linear layers'), where
# the legacy hook, which runs on the child's call, never normalized it.
_CALLS_ITS_CHILDREN = (nn.Sequential, nn.ModuleList, nn.ModuleDict, nn.DataParallel)


def _stock_class(layer: type) -> type | None:
    """The first of PyTorch's own classes that `layer` is (itself or a base), or None for a
    user's module."""
    return next((c for c in layer.__mro__ if c is not nn.Module
                 and c.__module__.startswith("torch.nn.")), None)


def _why_legacy_stays(layer: type, name: str, parents: list[type]) -> str | None:
    """Why a legacy spectral norm on `layer`.`name`, a child of `parents`, must stay (None: it
    need not). A user's own layer or parent is converted: what its forward reads cannot be seen
    (the module docstring says so)."""
    for parent in parents:
        stock = _stock_class(parent)
        if stock is not None and not issubclass(stock, _CALLS_ITS_CHILDREN):
            return (f"inside {parent.__name__}, which may read the {layer.__name__}'s {name} "
                    "without calling it (as MultiheadAttention reads out_proj.weight), and "
                    "the legacy spectral norm normalizes it only on a call")
    stock = _stock_class(layer)
    if (stock is None or (issubclass(stock, _READS_WEIGHT_ONCE) and name == "weight")
            or (issubclass(stock, nn.RNNCellBase) and name in _CELL_WEIGHTS)):
        return None
    return (f"{layer.__name__} is not known to read {name} once per call: the legacy spectral "
            "norm updates u and v once per call, ganfast's on each read")


def _parent_classes(model: nn.Module) -> dict[int, list[type]]:
    """id(module) -> the classes of the modules holding it as a child (several if shared)."""
    parents: dict[int, list[type]] = {}
    for module in model.modules():
        for child in module.children():
            parents.setdefault(id(child), []).append(_layer_class(module))
    return parents


def _convert_spectral_norm(model: nn.Module, left_alone: list[LeftAlone]) -> list[Change]:
    from torch.nn.utils.parametrizations import _SpectralNorm
    from torch.nn.utils.spectral_norm import SpectralNorm as LegacySpectralNorm

    # (a 1-d weight has no u, v to carry over and nothing to fuse: rare, and left as it is)
    changes = []
    parents = _parent_classes(model)
    for path, module in list(model.named_modules()):
        layer = _layer_class(module).__name__  # before legacy layers become Parametrized...
        if parametrize.is_parametrized(module):
            for name in list(module.parametrizations):
                chain = module.parametrizations[name]
                if len(chain) == 1 and type(chain[0]) is _SpectralNorm and chain.original.ndim > 1:
                    _replace_parametrized(module, name, chain[0])
                    changes.append(_sn_change(path, layer, name, "parametrizations.spectral_norm"))
        for key, hook in list(module._forward_pre_hooks.items()):
            if isinstance(hook, LegacySpectralNorm) and getattr(module, f"{hook.name}_orig").ndim > 1:
                reason = _why_legacy_stays(_layer_class(module), hook.name,
                                           parents.get(id(module), []))
                if reason is not None:
                    left_alone.append(LeftAlone(f"{path}.{hook.name}" if path else hook.name, reason))
                    continue
                _replace_legacy(module, key, hook)
                changes.append(_sn_change(path, layer, hook.name, "utils.spectral_norm (legacy)"))
    return changes


def _layer_class(module: nn.Module) -> type:
    """The layer's own class: a parametrized module's class is a generated subclass of it."""
    return type(module).__bases__[0] if parametrize.is_parametrized(module) else type(module)


def _sn_change(path: str, layer: str, name: str, before: str) -> Change:
    return Change(f"{path}.{name}" if path else name, f"{layer} + torch {before}",
                  "ganfast.nn.spectral_norm")


def _replace_parametrized(module: nn.Module, name: str, torch_sn) -> None:
    from .nn.spectral_norm import SpectralNorm, _load_legacy_keys

    # Swap the parametrization in its list rather than remove and re-register: removal edits
    # the module's class, which a deepcopy of the module (an EMA copy, say) shares.
    chain = module.parametrizations[name]
    with _rng_untouched(chain.original.device):  # the constructor's random u, v are replaced
        ours = SpectralNorm(chain.original.detach(), torch_sn.n_power_iterations, torch_sn.dim,
                            torch_sn.eps)
    _copy_uv(ours, torch_sn._u, torch_sn._v)
    ours.train(torch_sn.training)
    chain[0] = ours
    module._register_load_state_dict_pre_hook(functools.partial(_load_legacy_keys, name))


def _replace_legacy(module: nn.Module, hook_key: int, hook) -> None:
    from .nn.spectral_norm import SpectralNorm, _load_legacy_keys

    name = hook.name
    weight = module._parameters[f"{name}_orig"]
    # Made before the module is touched, so that an error leaves it as it was, and directly
    # rather than through ganfast.nn.spectral_norm, whose argument checks are stricter than the
    # legacy API's (eps=0): what that API accepted, the layer computes on.
    with _rng_untouched(weight.device):  # the constructor's random u, v are replaced
        ours = SpectralNorm(weight.detach(), hook.n_power_iterations, hook.dim, hook.eps)
    ours.legacy_update_order = True
    _copy_uv(ours, module._buffers[f"{name}_u"], module._buffers[f"{name}_v"])
    del module._parameters[f"{name}_orig"], module._buffers[f"{name}_u"], module._buffers[f"{name}_v"]
    del module._forward_pre_hooks[hook_key]
    # The legacy API also registered a state_dict hook and a load pre-hook bound to it.
    for hooks in (module._state_dict_hooks, module._load_state_dict_pre_hooks):
        for key in [k for k, h in hooks.items() if _belongs_to(h, hook)]:
            del hooks[key]
    if name in module.__dict__:  # the last normalized weight, set as a plain attribute
        delattr(module, name)
    module.register_parameter(name, weight)
    # unsafe: no forward check run (it would advance u); right_inverse, the identity, keeps the
    # weight the same Parameter, as in _move_tensors
    parametrize.register_parametrization(module, name, ours, unsafe=True)
    module._register_load_state_dict_pre_hook(functools.partial(_load_legacy_keys, name))


def _belongs_to(state_hook, legacy_hook) -> bool:
    fn = getattr(state_hook, "hook", state_hook)  # load pre-hooks are wrapped
    return getattr(fn, "fn", None) is legacy_hook


def _copy_uv(sn: nn.Module, u: torch.Tensor, v: torch.Tensor) -> None:
    with torch.no_grad():
        sn._u.copy_(u)
        sn._v.copy_(v)


def _rng_untouched(device: torch.device):
    """Converting must not move the random streams the user's code goes on to draw from."""
    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])
