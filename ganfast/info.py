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


def info() -> dict:
    """A snapshot of what ganfast can run here, and why not where it cannot."""
    from . import __version__

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
        except (backends.BackendUnavailable, ValueError) as error:
            auto = f"refused: {error}"
        ops[op] = {
            "auto": auto,
            "auto_order_measured": entry.get("measured", False),
            "available": {name: (backends.unavailable_reason(name, device) or "yes")
                          if name in backends.kernels(op) else f"{op} has no {name} kernel"
                          for name in backends.BACKENDS[1:]},
        }
    return {
        "ganfast": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "triton": _version("triton"),
        "device": (torch.cuda.get_device_name() if cuda
                   else f"cpu ({platform.processor() or platform.machine()})"),
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
