"""Which implementation runs an op: "torch" (reference), "triton", "cuda" (ganfast._C), or "auto".

Order of precedence: the call's `backend=` argument, then `set_backend()` / GANFAST_BACKEND,
then "auto". "auto" takes, for CUDA tensors, the first available backend in the op's order
from ops/auto_backends.json (written from GPU measurements, see benchmarks/results), and
"torch" for CPU tensors. Asking for a backend that cannot run raises BackendUnavailable
saying why.
"""

import contextlib
import functools
import importlib
import json
import os
from pathlib import Path

import torch

from . import _extension

BACKENDS = ("auto", "cuda", "triton", "torch")
AUTO_TABLE = Path(__file__).parent / "ops" / "auto_backends.json"

_selected = None  # set_backend()'s choice; None defers to the environment
# GANFAST_BACKEND as read at import and by each set_backend(): a lookup of os.environ on every
# call cost 9.5 us beside a 100 us gradient penalty on the 2-core machine (benchmarks/NOTES.md).
_environment = os.environ.get("GANFAST_BACKEND")


class BackendUnavailable(RuntimeError):
    """A backend was asked for by name and cannot run here."""


def _check_name(name: str, source: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"{source} must be one of {', '.join(BACKENDS)}; got {name!r}")
    return name


def set_backend(name: str | None) -> None:
    """Pick the backend for every op from now on; None defers to GANFAST_BACKEND again, read
    anew (the environment is read at import and here, not on every call)."""
    global _selected, _environment
    _selected = None if name is None else _check_name(name, "set_backend(name)")
    _environment = os.environ.get("GANFAST_BACKEND")


@contextlib.contextmanager
def backend_scope(name: str | None):
    """set_backend(name) inside a with block, the earlier choice restored after it (set or not:
    get_backend() cannot tell). GANFAST_BACKEND is not read again, so the block costs no
    environment lookups (benchmarks enter it on every timed call)."""
    global _selected
    previous = _selected
    _selected = None if name is None else _check_name(name, "backend_scope(name)")
    try:
        yield
    finally:
        _selected = previous


def get_backend() -> str:
    """The global choice: set_backend()'s, else GANFAST_BACKEND, else "auto"."""
    if _selected is not None:
        return _selected
    return _check_name(_environment or "auto", "GANFAST_BACKEND")


@functools.cache
def _triton_reason() -> str:
    try:
        importlib.import_module("triton")
    except ImportError as error:
        return f"triton is not installed ({error})"
    return ""


def unavailable_reason(name: str, device: torch.device) -> str:
    """Why backend `name` cannot run on `device`, or "" when it can."""
    return _unavailable(name, device.type == "cuda", f"got tensors on {device.type}")


def unavailable_besides_the_gpu(name: str) -> str:
    """What else keeps backend `name` from running on a GPU (triton not installed, ganfast._C not
    built or not importable), or "": for `ganfast info` on a machine without a GPU, where no
    GPU's arch can be compared with the build."""
    return _unavailable(name, True, "")


def _unavailable(name: str, on_cuda: bool, what_was_given: str) -> str:
    if name == "torch":
        return ""
    if not on_cuda:
        return f"it needs CUDA tensors; {what_was_given}"
    if name == "triton":
        return _triton_reason()
    if name == "cuda":
        loaded, why = _extension.load()
        if not loaded:
            return why
        # Every visible GPU, not the current one: the resolution is cached per op and setting,
        # not per device, and a process that mixes GPU generations must not be handed the
        # cuda backend for a GPU without code (its launch fails with "no kernel image"). Without
        # a visible GPU, on_cuda is hypothetical: nothing to compare the build with.
        if not torch.cuda.is_available():
            return ""
        count = torch.cuda.device_count()
        reasons = (_extension.arch_reason(torch.cuda.get_device_capability(index),
                                          "this GPU" if count == 1 else f"GPU {index}")
                   for index in range(count))
        return next((why for why in reasons if why), "")
    raise ValueError(f"unknown backend {name!r}")


@functools.cache
def auto_table() -> dict:
    """Per op: the backend order "auto" tries on CUDA, and whether it was measured."""
    return json.loads(AUTO_TABLE.read_text())


def auto_order(op: str) -> list[str]:
    """The backends "auto" tries for `op` on CUDA, first choice first."""
    return auto_table()[op]["order"]


def kernels(op: str) -> list[str]:
    """The backends `op` has a kernel for (every op has the torch one)."""
    return auto_table()[op].get("kernels", list(BACKENDS[1:]))


_resolved: dict = {}  # (op, backend, on CUDA, global choice, environment) -> what runs


# Under torch.compile the choice is made once, at trace time, and baked into the graph
# (availability checks read files and import modules, which dynamo cannot trace): a later
# set_backend() applies to code compiled after it.
@torch.compiler.assume_constant_result
def resolve(op: str, backend: str, on_cuda: bool, caller: str = "") -> str:
    """The concrete backend that runs `op` for tensors on a CUDA device (on_cuda) or not;
    `caller`, the public function whose argument `backend` is, names it in a refusal.

    Callers pass `x.is_cuda`: all the choice depends on, and cheaper than `x.device`, which
    builds an object (7 us per call beside a 100 us penalty on the 2-core machine). Called
    once per public call, so it is a dictionary lookup after the first call with the same
    arguments and settings; refusals are never cached (they raise every time)."""
    key = (op, backend, on_cuda, _selected, _environment)
    # (a backend that is not a string, a list say, is refused by _resolve by name, not here as
    # an unhashable key)
    name = _resolved.get(key) if isinstance(backend, str) else None
    if name is None:
        name = _resolved[key] = _resolve(op, backend, on_cuda, caller)
    return name


def _resolve(op: str, backend: str, on_cuda: bool, caller: str) -> str:
    requested = _check_name(backend, f"{caller or op + ' ops'}: backend")
    if requested not in ("auto", *kernels(op)):  # named on the call: refused with the reason
        raise BackendUnavailable(f"ganfast backend {requested!r} cannot run the {op} ops: it has no "
                                 f"{requested} kernel; use one of {', '.join(kernels(op))} or 'auto'")
    if requested == "auto":
        requested = get_backend()
        if requested not in ("auto", *kernels(op)):  # a global choice: auto for this op
            requested = "auto"
    if requested != "auto":
        why = _unavailable(requested, on_cuda, "the inputs are not on CUDA")
        if why:
            raise BackendUnavailable(f"ganfast backend {requested!r} cannot run the {op} ops: {why}")
        return requested
    if not on_cuda:
        return "torch"
    return next(name for name in auto_order(op) if not _unavailable(name, True, ""))
