"""Loading ganfast._C, the CUDA extension, and saying why it is missing when it is."""

import functools
import importlib
import json
from pathlib import Path

BUILD_INFO = Path(__file__).with_name("_build_info.json")


def build_info() -> dict:
    """What setup.py recorded at install: whether it built the extension, and if not, why."""
    try:
        return json.loads(BUILD_INFO.read_text())
    except (OSError, ValueError):
        return {"extension_built": False, "reason": "no build record (ganfast was not installed "
                                                    "with setup.py: pip install -e .)"}


@functools.cache
def load() -> tuple[bool, str]:
    """Import ganfast._C once. Returns (loaded, reason it is not)."""
    info = build_info()
    try:
        importlib.import_module("ganfast._C")
    except ImportError as error:
        if not info.get("extension_built"):
            return False, f"extension not built: {info.get('reason', 'unknown reason')}"
        return False, f"extension built but failed to import: {error}"
    return True, ""


def registered_ops() -> list[str]:
    """The ops ganfast._C registered with the dispatcher, with the keys that have kernels."""
    import torch

    if not load()[0]:
        return []
    names = sorted(n for n in torch._C._dispatch_get_all_op_names() if n.startswith("ganfast_C::"))
    return [name for name in names if "CUDA: registered" in torch._C._dispatch_dump(name)]
