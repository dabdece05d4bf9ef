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


def arch_reason(capability: tuple[int, int], gpu: str = "this GPU") -> str:
    """Why ganfast._C has no code for a GPU of this compute capability, or "" when it has.

    setup.py compiles machine code for each arch of GANFAST_CUDA_ARCHS, which runs on that major
    version from its minor up (sm_80 on 8.0 to 8.9), and the PTX of the newest, which the
    driver compiles for any GPU from it up. A T4 (7.5) under the default "80;90" has neither:
    its first launch would fail with "no kernel image is available"."""
    archs = [a.strip() for a in build_info().get("cuda_archs", "").replace(",", ";").split(";")
             if a.strip()]
    if not archs:  # unknown (an older build record): let the launch speak
        return ""
    major, minor = capability
    here = 10 * major + minor
    codes = [a.replace(".", "") for a in archs]
    numbers = [int(c) for c in codes if c.isdigit()]  # plain archs: sm_XY and the newest's PTX
    specific = [c for c in codes if not c.isdigit()]  # sm_90a and the like: that GPU alone
    if (numbers and here >= max(numbers)) or any(n // 10 == major and n <= here for n in numbers) \
            or any(c.rstrip("af") == str(here) for c in specific):
        return ""
    return (f"ganfast._C was built for compute capabilities {';'.join(archs)} and has no code "
            f"for {gpu}'s {major}.{minor}: reinstall with GANFAST_CUDA_ARCHS={major}{minor} "
            "(see the README's install section)")


def registered_ops() -> list[str]:
    """The ops ganfast._C registered with the dispatcher, with the keys that have kernels."""
    import torch

    if not load()[0]:
        return []
    names = sorted(n for n in torch._C._dispatch_get_all_op_names() if n.startswith("ganfast_C::"))
    return [name for name in names if "CUDA: registered" in torch._C._dispatch_dump(name)]
