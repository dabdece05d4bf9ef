"""How an op's kernels are registered and found: the part of the op pattern (docs/ops.md) that
every op shares.

Each kernel has one schema in two namespaces:
  ganfast::<name>    defined here: CPU = the PyTorch reference, CUDA = the Triton launcher,
                     plus a fake impl for torch.compile;
  ganfast_C::<name>  defined in C++ (csrc/registration.cpp) with its CUDA kernel; the same
                     reference and fake impl are attached here when the extension loads, so
                     opcheck and torch.compile run on it without a GPU.
Autograd is not in the ops: each op module wraps them in a torch.autograd.Function, which
torch.func transforms and forward-mode AD cannot run (no vmap rule, no jvp): under those,
`transformed(...)` sends the op to its reference, plain differentiable ATen ops.

`kernel(backend, name)` gives the callable for a resolved GPU backend. For "triton" in eager
mode that is the launcher itself: the dispatcher hop into a Python impl costs more host time
than a small kernel runs, and an op boundary has to earn its cost. Under torch.compile the
registered op is used, so the graph holds an opaque node with a fake impl.
"""

import functools
import importlib

import torch
import torch.autograd.forward_ad as fwAD
from torch.compiler import is_compiling

from .. import _extension
from ..backends import BackendUnavailable

_TRITON_MODULES = {}  # kernel name -> module path of its Triton launcher


def define(name: str, schema: str, *, reference, fake, triton_module: str,
           cuda_kernel: bool = True) -> None:
    """Define ganfast::<name> and, when ganfast._C is loaded, complete ganfast_C::<name>
    (cuda_kernel=False: an op with a Triton kernel only, no ganfast_C schema)."""
    qualname = f"ganfast::{name}"
    torch.library.define(qualname, schema)
    torch.library.impl(qualname, "CPU")(reference)
    torch.library.impl(qualname, "CUDA")(
        lambda *args: getattr(_import(triton_module), name)(*args))
    torch.library.register_fake(qualname)(fake)
    _TRITON_MODULES[name] = triton_module
    if cuda_kernel and _extension.load()[0]:
        torch.library.impl(f"ganfast_C::{name}", "CPU")(reference)
        torch.library.register_fake(f"ganfast_C::{name}")(fake)


@functools.cache
def _import(module: str):
    return importlib.import_module(module)


def kernel(backend: str, name: str):
    """The callable that runs kernel `name` on CUDA tensors for backend "cuda" or "triton"."""
    if backend == "cuda":
        return getattr(torch.ops.ganfast_C, name).default
    if backend == "triton":
        if is_compiling():
            return getattr(torch.ops.ganfast, name).default
        return getattr(_import(_TRITON_MODULES[name]), name)
    raise BackendUnavailable(f"backend {backend!r} has no GPU kernels")


def transformed(*tensors) -> bool:
    """True under torch.func transforms (grad, vmap, jacrev, ...) or when one of `tensors` (None
    allowed) carries a forward-mode AD tangent: the op's autograd.Function cannot run there, so
    the caller runs its reference. False under torch.compile, which traces the Function.

    On every GPU-backend call: the common answer (no transform, no forward AD) comes from two
    flag reads, 0.2 us, before is_compiling() (0.26 us by itself) is asked."""
    if torch._C._are_functorch_transforms_active():
        return not is_compiling()
    if fwAD._current_level < 0:
        return False
    return not is_compiling() and any(
        t is not None and fwAD.unpack_dual(t).tangent is not None for t in tensors)
