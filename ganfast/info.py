"""`ganfast.info()`: versions, device, extension status and the backend each op uses."""

import importlib.metadata
import platform

import torch

from . import _extension, backends


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _unavailable(name: str, device: torch.device) -> str:
    """Why backend `name` cannot run here, or "". Without a GPU, the machine's reason (not
    "it needs CUDA tensors; got tensors on cpu": `ganfast info` was given no tensors), then
    whatever else stands in the backend's way on a GPU (triton missing, ganfast._C not built
    or not importable), so that a CPU-only machine still tells what is missing."""
    if name == "torch" or device.type == "cuda":
        return backends.unavailable_reason(name, device)
    machine = (f"torch {torch.__version__} is a CPU-only build" if torch.version.cuda is None
               and getattr(torch.version, "hip", None) is None
               else "no CUDA device (torch.cuda.is_available() is False)")
    own = backends.unavailable_besides_the_gpu(name)
    return f"{machine}; {own}" if own else machine


def _gpu_description() -> str:
    """The current GPU with its compute capability (to set beside the extension's archs), and
    how many GPUs there are when more than one."""
    major, minor = torch.cuda.get_device_capability()
    count = torch.cuda.device_count()
    return (f"{torch.cuda.get_device_name()} (compute capability {major}.{minor})"
            + (f"; {count} GPUs" if count > 1 else ""))


def info() -> dict:
    """A snapshot of what ganfast can run here, and why not where it cannot."""
    from . import __version__
    from .bench.cases import cpu_description  # the CPU as bench rows name it

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    loaded, why_not = _extension.load()
    build = _extension.build_info()
    try:
        setting = backends.get_backend()
    except ValueError as error:  # a misspelt GANFAST_BACKEND: say so, as the ops would
        setting = f"invalid ({error})"
    ops = {}
    for op, entry in backends.auto_table().items():
        try:
            # (a global choice that cannot run here is what a user asks `ganfast info` about)
            auto = backends.resolve(op, "auto", cuda)
        except backends.BackendUnavailable as error:
            # without a GPU, the machine's reason: the ops' "the inputs are not on CUDA" would
            # speak of inputs that `ganfast info` has none of
            auto = (f"refused: {error}" if cuda else f"refused: ganfast backend {setting!r} "
                    f"cannot run the {op} ops here: {_unavailable(setting, device)}")
        except ValueError as error:  # the invalid setting
            auto = f"refused: {error}"
        ops[op] = {
            "auto": auto,
            "auto_order_measured": entry.get("measured", False),
            "available": {name: (_unavailable(name, device) or "yes")
                          if name in backends.kernels(op) else f"{op} has no {name} kernel"
                          for name in backends.BACKENDS[1:]},
        }
    return {
        "ganfast": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "triton": _version("triton"),
        "device": _gpu_description() if cuda else f"cpu ({cpu_description()})",
        "cuda_available": cuda,  # auto's measured order applies on a GPU: on the CPU, torch
        "backend_setting": setting,
        "extension": {
            "built": bool(build.get("extension_built")),
            "cuda_archs": build.get("cuda_archs", ""),
            "loaded": loaded,
            "reason": why_not,
            "registered_ops": _extension.registered_ops(),
        },
        "ops": ops,
    }
