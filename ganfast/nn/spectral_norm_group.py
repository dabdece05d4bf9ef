"""All spectral-normalized layers of a model normalized together, once per block of code.

PyTorch's spectral norm (and ganfast.nn.spectral_norm by default) normalizes a weight on every
access: a discriminator called on reals and on fakes in one step runs the power iteration and
W / sigma twice per layer, each a handful of small kernels and Python calls. Inside
`group.once()` every layer is normalized once, on entry, in one host call (with backend
"triton" or "cuda", one launch of that backend's kernel for all layers of a dtype, device and
eps; 1-d and complex weights, and layers ganfast.accelerate converted from the legacy hook-based
API, take their own torch route), and each access returns that tensor:

    sn = ganfast.nn.SpectralNormGroup(D)
    with sn.once():
        loss_d = d_loss(D(real), D(fake))     # both calls see the same W / sigma
    loss_d.backward()

What changes: in training, u and v take n_power_iterations steps per block instead of per
access, so D(real) and D(fake) inside one block are normalized by the same sigma (as if D had
been called once on the concatenated batch). Weights are read on entry: an optimizer step
inside the block is not seen until the next block. The calls share the normalization's graph:
one backward per block (sum the losses, or retain_graph=True on the first of two). A copy of
the model made inside a block (an EMA copy) is not part of it, nor is a call that puts other
tensors in the layers' place (torch.func.functional_call with other parameters, torch.func
transforms): those normalize the tensors they are given, on access. Removing a layer's spectral
norm (or removing and applying it again) leaves the group stale: once() then says so, and a new
group is made for the model as it is; so is a layer replaced by another (model[1] = ...), which
the group cannot see: it keeps the old layer. Under nn.DataParallel the replicas' weights are
copies, normalized on access as above: a block gives them nothing. Outside a block nothing
changes.
"""

import contextlib

from torch import nn
from torch.nn.utils import parametrize

from ..backends import _check_name, resolve
from ..ops import spectral_norm as ops
from ..ops._library import transformed
from .spectral_norm import SpectralNorm, _is_spectral_norm

REPR_NAMES = 8  # the layers a group's repr names (a large model has hundreds)


class SpectralNormGroup:
    """The ganfast spectral-norm layers of `model` (ganfast.nn.spectral_norm, or what
    ganfast.accelerate converted), normalized together inside `once()`.

    backend: "auto" (torch until GPU measurements say otherwise), "torch" (each layer's own
    parametrization), "triton" or "cuda" (one launch for all layers of a dtype).
    """

    def __init__(self, model: nn.Module, backend: str = "auto") -> None:
        if not isinstance(model, nn.Module):
            raise TypeError("SpectralNormGroup: model must be a torch.nn.Module (the model whose "
                            f"spectral-norm layers are grouped), got {type(model).__name__}")
        _check_name(backend, "SpectralNormGroup: backend")  # now, not at the first once()
        self.backend = backend
        self.layers = []  # (module, tensor name, parametrization)
        # Each layer's ParametrizationList and its name in the model: remove_spectral_norm (or
        # removing and applying it again) replaces the list, which normalize() then names.
        self._lists, self._names = [], []
        torch_sn, seen = [], set()
        for path, module in model.named_modules():
            if not parametrize.is_parametrized(module):
                continue
            # The model itself may be the layer: name it by its class (as the user wrote it, not
            # parametrize's ParametrizedLinear) rather than by an empty path.
            where = path or parametrize.type_before_parametrizations(module).__name__
            for name, parametrizations in module.parametrizations.items():
                for parametrization in parametrizations:
                    if isinstance(parametrization, SpectralNorm):
                        if id(parametrization) in seen:
                            # One layer at two places (accelerate fuses a conv used twice into
                            # two modules that share its parametrization): normalized once.
                            continue
                        seen.add(id(parametrization))
                        if len(parametrizations) != 1:
                            raise ValueError(
                                f"SpectralNormGroup: {where}.{name} has "
                                f"{len(parametrizations)} parametrizations; a grouped layer must "
                                "have spectral norm as its only one")
                        self.layers.append((module, name, parametrization))
                        self._lists.append(parametrizations)
                        self._names.append(f"{where}.{name}")
                    elif _is_spectral_norm(parametrization):  # PyTorch's (ganfast's is above)
                        torch_sn.append(f"{where}.{name}")
        if torch_sn:
            raise ValueError(
                "SpectralNormGroup: these layers use PyTorch's spectral norm, not ganfast's: "
                f"{', '.join(torch_sn)}; convert them first with ganfast.accelerate(model)")
        if not self.layers:
            raise ValueError("SpectralNormGroup: the model has no ganfast spectral-norm layer "
                             "(apply ganfast.nn.spectral_norm or ganfast.accelerate first)")
        self._plans = {}

    def __len__(self) -> int:
        return len(self.layers)

    @contextlib.contextmanager
    def once(self):
        """Normalize every layer now; inside the block each weight access returns that. A block
        inside another is part of it: the layers the outer block holds keep its weights, during
        and after this one (another group's block may hold some layers and not others: this one
        normalizes, and afterwards releases, only the layers no block held)."""
        free = [i for i, (_, _, p) in enumerate(self.layers) if p._group_weight is None]
        if not free:  # nested in a block that holds every layer (a helper's own block)
            yield self
            return
        weights, originals = self._normalize(free)
        # Into the layers' __dict__: Module.__setattr__ would register a Parameter original as
        # a parameter of the SpectralNorm (and costs more). The original is the tensor the
        # weight was normalized from: an access with another one in its place (functional_call
        # with other parameters, torch.func transforms) normalizes that one (SpectralNorm.forward).
        for i, weight, original in zip(free, weights, originals, strict=True):
            vars(self.layers[i][2]).update(_group_weight=weight, _group_original=original)
        try:
            yield self
        finally:
            for i in free:
                vars(self.layers[i][2]).update(_group_weight=None, _group_original=None)

    def __repr__(self) -> str:
        shown = self._names[:REPR_NAMES] + (["..."] if len(self._names) > REPR_NAMES else [])
        count = f"{len(self.layers)} layer{'s' if len(self.layers) != 1 else ''}"
        return f"SpectralNormGroup({count}: {', '.join(shown)}; backend={self.backend!r})"

    def normalize(self, indices=None) -> list:
        """W / sigma of every layer (or of the layers at `indices`), after its power-iteration
        steps in training mode."""
        return self._normalize(indices)[0]

    def _normalize(self, indices=None):
        """normalize() and the layers' originals, the tensors it normalized."""
        indices = range(len(self.layers)) if indices is None else indices
        layers = [self.layers[i] for i in indices]
        try:
            lists = [module.parametrizations[name] for module, name, _ in layers]
        except (AttributeError, KeyError):  # the layer's parametrizations are gone
            lists = None
        if lists is None or lists != [self._lists[i] for i in indices]:
            self._raise_stale(indices)
        originals = [plist.original for plist in lists]
        backend = resolve(ops.OP, self.backend, originals[0].is_cuda)
        if backend == "torch" or transformed(*originals):  # (as SpectralNorm.forward)
            return [parametrization(original) for (_, _, parametrization), original
                    in zip(layers, originals, strict=True)], originals
        weights = [None] * len(layers)
        batches = {}  # one launch per (dtype, device, eps)
        for j, ((_, _, p), original) in enumerate(zip(layers, originals, strict=True)):
            if original.ndim == 1 or p.legacy_update_order or original.is_complex():
                # exact 1-d normalization, legacy order, complex weights (the kernels' are
                # real): the layer's own torch route
                weights[j] = p(original)
            else:
                batches.setdefault((original.dtype, original.device, p.eps), []).append(j)
        for (_, _, eps), members in batches.items():
            normalized = self._normalize_batch([indices[j] for j in members],
                                               [originals[j] for j in members], eps, backend)
            for j, weight in zip(members, normalized, strict=True):
                weights[j] = weight
        return weights, originals

    def _raise_stale(self, indices) -> None:
        """Name the first layer whose spectral norm is no longer the one this group holds."""
        for i in indices:
            module, name, _ = self.layers[i]
            lists = getattr(module, "parametrizations", {})
            if name not in lists or lists[name] is not self._lists[i]:
                raise ValueError(
                    f"SpectralNormGroup: the spectral norm of {self._names[i]} was removed (or "
                    "removed and applied again) after the group was made; make a new "
                    "SpectralNormGroup(model) for the model as it is now")
        raise ValueError("SpectralNormGroup: a layer's spectral norm is no longer the one the "
                         "group was made with; make a new SpectralNormGroup(model)")

    def _normalize_batch(self, indices, originals, eps, backend):
        """One launch for the layers at `indices` (their weights `originals`)."""
        params = [self.layers[i][2] for i in indices]
        n_iters = tuple(p.n_power_iterations if p.training else 0 for p in params)
        key = (tuple(indices), n_iters)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = ops.GroupPlan(originals, [p.dim for p in params], n_iters)
        return ops.normalize_group(plan, originals, [p._u for p in params],
                                   [p._v for p in params], eps, backend)
