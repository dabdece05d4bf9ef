"""Build ganfast: pure Python + Triton always, the CUDA extension ganfast._C when it can.

The extension builds when torch is a CUDA build and nvcc is found. Anything missing, or a
compile that fails, turns into a warning and a note in ganfast/_build_info.json (read by
`ganfast info`), never a failed install: the torch and Triton backends work without the
extension. GANFAST_REQUIRE_EXTENSION=1 (CI) makes a failed compile fail the install.

Environment:
  GANFAST_SKIP_CUDA_BUILD=1   do not build ganfast._C
  GANFAST_CUDA_ARCHS="80;90"  compute capabilities to build for (default: 80 and 90)
  MAX_JOBS                    parallel compile jobs (honoured by torch's build_ext)
  CUDA_HOME                   CUDA toolkit (default: torch's guess, then /usr/local/cuda)
"""

import glob
import json
import os
import shutil
import sys
import warnings

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))
BUILD_INFO = os.path.join(ROOT, "ganfast", "_build_info.json")
DEFAULT_ARCHS = "80;90"


def write_build_info(built: bool, reason: str, archs: str = "") -> None:
    with open(BUILD_INFO, "w") as f:
        json.dump({"extension_built": built, "reason": reason, "cuda_archs": archs}, f)


def find_nvcc():
    """Return (cuda_home, why_not): cuda_home is None when no usable nvcc exists."""
    cuda_home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if not cuda_home and os.path.exists("/usr/local/cuda/bin/nvcc"):
        cuda_home = "/usr/local/cuda"
    if not cuda_home and shutil.which("nvcc"):
        cuda_home = os.path.dirname(os.path.dirname(os.path.realpath(shutil.which("nvcc"))))
    if not cuda_home:
        return None, "nvcc not found at install (set CUDA_HOME)"
    if not os.path.exists(os.path.join(cuda_home, "bin", "nvcc")):
        return None, f"nvcc not found at install under CUDA_HOME={cuda_home}"
    return cuda_home, ""


def arch_flags(archs: str) -> list:
    """'80;90' -> -gencode flags for each SASS target plus PTX of the newest (forward compat)."""
    caps = [a.strip().replace(".", "") for a in archs.replace(",", ";").split(";") if a.strip()]
    flags = [f"-gencode=arch=compute_{c},code=sm_{c}" for c in caps]
    # PTX of the newest plain arch: an "a"/"f" arch's PTX runs on that arch (family) alone.
    plain = [c for c in caps if c.isdigit()] or caps
    newest = max(plain, key=lambda c: int("".join(filter(str.isdigit, c)) or 0))
    flags.append(f"-gencode=arch=compute_{newest},code=compute_{newest}")
    return flags


def nvidia_wheel_includes() -> list:
    """torch's CUDA headers include cusparse/cublas headers that live in the nvidia wheels."""
    found = []
    for entry in sys.path:
        for sub in ("nvidia/cu13/include", "nvidia/cu12/include"):
            path = os.path.join(entry, sub)
            if os.path.isdir(path):
                found.append(path)
    return found


def extension_modules():
    """The CUDA extension, or [] with the reason written to the build info."""
    if os.environ.get("GANFAST_SKIP_CUDA_BUILD") == "1":
        write_build_info(False, "skipped at install: GANFAST_SKIP_CUDA_BUILD=1")
        return [], {}
    try:
        import torch
    except ImportError:
        write_build_info(False, "torch was not importable at install: install torch first, then "
                                "reinstall ganfast with pip's --no-build-isolation")
        return [], {}
    if torch.version.cuda is None:
        write_build_info(False, f"torch {torch.__version__} is not a CUDA build")
        return [], {}
    cuda_home, why_not = find_nvcc()
    if cuda_home is None:
        warnings.warn(f"ganfast: building without the CUDA extension: {why_not}", stacklevel=1)
        write_build_info(False, why_not)
        return [], {}
    os.environ["CUDA_HOME"] = cuda_home

    import torch.utils.cpp_extension as cpp_ext

    cpp_ext.CUDA_HOME = cuda_home  # torch resolved CUDA_HOME at import; pin it to the one we found
    archs = os.environ.get("GANFAST_CUDA_ARCHS", DEFAULT_ARCHS)
    # torch's build_ext adds its own arch flags from TORCH_CUDA_ARCH_LIST; keep them in step.
    os.environ["TORCH_CUDA_ARCH_LIST"] = ";".join(
        f"{a[:-1]}.{a[-1]}" for a in archs.replace(".", "").split(";") if a
    )
    sources = sorted(glob.glob("csrc/*.cu") + glob.glob("csrc/*.cpp"))
    ext = cpp_ext.CUDAExtension(
        name="ganfast._C",
        sources=sources,
        include_dirs=[os.path.join(ROOT, "csrc")] + nvidia_wheel_includes(),
        extra_compile_args={
            "cxx": ["-O3"],
            "nvcc": ["-O3", "-lineinfo"] + arch_flags(archs),
        },
        py_limited_api=False,
    )
    write_build_info(True, "", archs)
    build_ext = cpp_ext.BuildExtension.with_options(use_ninja=shutil.which("ninja") is not None)
    return [ext], {"build_ext": forgiving(build_ext, archs)}


def forgiving(build_ext, archs: str):
    """build_ext whose compile failure (an arch nvcc no longer knows, a toolkit too old for
    torch) is a warning and a reason in the build info, as a missing nvcc is; with
    GANFAST_REQUIRE_EXTENSION=1 (CI) it stays an error."""

    class ForgivingBuildExt(build_ext):
        def build_extensions(self):
            try:
                super().build_extensions()
            except Exception as error:
                if os.environ.get("GANFAST_REQUIRE_EXTENSION") == "1":
                    raise
                lines = [line for line in str(error).splitlines() if line.strip()]
                reason = (f"the CUDA extension failed to compile for archs {archs}: "
                          f"{lines[-1] if lines else error!r} (the install log has nvcc's message)")
                warnings.warn(f"ganfast: building without the CUDA extension: {reason}", stacklevel=1)
                write_build_info(False, reason)
                # A wheel's copy was taken before the compile (build_py runs first).
                built_copy = os.path.join(self.build_lib, "ganfast", "_build_info.json")
                if os.path.exists(built_copy):
                    shutil.copyfile(BUILD_INFO, built_copy)
                self.extensions = []  # nothing to copy into the tree or to install

    return ForgivingBuildExt


ext_modules, cmdclass = extension_modules()

setup(
    packages=[
        "ganfast",
        "ganfast.ops",
        "ganfast.nn",
        "ganfast.bench",
        "ganfast.metrics",
        "ganfast.train",
        "ganfast.kernels",
    ],
    package_dir={"ganfast.kernels": "kernels"},
    package_data={"ganfast": ["_build_info.json", "ops/*.json"]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
