"""Small file helpers shared by the training loop and the evaluation tool."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

import numpy as np


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomically(path: Path, write) -> None:
    """write(tmp), flushed to disk, then renamed over `path`: a crash or a failed write never
    leaves half a file, and `path` keeps its last complete version (the temp file goes).

    As writing in place would: a symlink's target is what gets replaced, an existing file
    keeps its permissions and one that may not be written is a PermissionError, and a new file
    gets 0666 less the umask whatever `write` made (safetensors writes owner-only files)."""
    target = Path(os.path.realpath(path))
    exists = target.exists()
    if target.is_dir():
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    if exists and not os.access(target, os.W_OK):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
    mode = stat.S_IMODE(target.stat().st_mode) if exists else 0o666 & ~_umask()
    # A short name of its own: the target's name plus a suffix could pass the length limit.
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def some_names(names, shown: int = 3) -> str:
    """'a, b, c and 4 more': the first few of a list of names, for messages."""
    names = [str(n) for n in names]
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def is_hidden_below(path: Path, folder: Path) -> bool:
    """Whether a file under `folder` is hidden, or inside a hidden folder below it
    (.ipynb_checkpoints/, macOS's ._name copies): not images of the set. `folder` itself may be."""
    return any(part.startswith(".") for part in path.relative_to(folder).parts)


def grey_to_eight_bit(image, float_grey: FloatGreyScale | None = None, name: str = ""):
    """An "L" copy of a 16-bit or float grey PIL image (see below; float grey through
    `float_grey`, the scale of the folder `name` belongs to, else of the image alone); any other
    image as it is."""
    if is_sixteen_bit_grey(image.mode):
        return sixteen_bit_grey_to_eight(image)
    if image.mode == "F":
        return (float_grey or FloatGreyScale()).to_eight_bit(image, name)
    return image


def is_sixteen_bit_grey(mode: str) -> bool:
    """PIL's 16-bit grey modes ("I;16", "I;16B", ...; older Pillow opens 16-bit PNGs as "I")."""
    return mode.startswith("I;16") or mode == "I"


def sixteen_bit_grey_to_eight(image):
    """An "L" copy of a 16-bit grey PIL image, scaled by 255 / 65535 and rounded: PIL's
    convert() would clip every value above 255 to white. ValueError outside 0..65535."""
    from PIL import Image

    values = np.asarray(image).astype(np.float64)
    if values.size and (values.min() < 0 or values.max() > 65535):
        raise ValueError(f"PIL mode {image.mode} with values from {values.min():g} to "
                         f"{values.max():g}; expected 16-bit grey, 0..65535 (a 32-bit integer "
                         "image: scale it to 16 or 8 bits first)")
    return Image.fromarray(np.round(values * (255 / 65535)).astype(np.uint8))


# Floats above this are pixel values 0..255 (ganfast train's .npy images and float grey TIFFs
# alike): floats up to 1 are [0, 1] (or, in .npy data, [-1, 1]), and a little above 1 (1..1.5)
# fits neither reading, so it is an error.
PIXEL_FLOAT_MIN_MAX = 1.5


class FloatGreyScale:
    """How the float grey images (PIL mode "F", as 32- and 64-bit float TIFFs open) of one
    folder become 8 bits: floats in [0, 1] times 255, or, once an image goes above
    PIXEL_FLOAT_MIN_MAX, pixel values 0..255 (as ganfast train reads .npy data), rounded. PIL's
    convert() would truncate every value of a [0, 1] image below 1 to black.

    The folder decides, not each image: in a 0..255 set a dark frame (every value at most 1)
    read as [0, 1] would be stretched to white. Images come in order, so one above 1.5 after a
    [0, 1] reading is refused, naming both; so are NaN and values that fit neither range."""

    def __init__(self):
        self.unit_from = None  # the first image read as [0, 1]
        self.pixel_values_from = None  # the first image read as 0..255

    def to_eight_bit(self, image, name: str = ""):
        from PIL import Image

        values = np.asarray(image).astype(np.float64)
        if np.isnan(values).any():
            raise ValueError(f"PIL mode {image.mode} (float grey) with NaN values; expected "
                             "floats in [0, 1] or 0..255")
        low, high = (values.min(), values.max()) if values.size else (0.0, 0.0)
        pixel_values = high > PIXEL_FLOAT_MIN_MAX or self.pixel_values_from is not None
        if low < 0 or high > (255 if pixel_values else 1):
            raise ValueError(f"PIL mode {image.mode} (float grey) with values from {low:.7g} to "
                             f"{high:.7g}; expected floats in [0, 1] or 0..255 (above "
                             f"{PIXEL_FLOAT_MIN_MAX:g}): rescale them first")
        if pixel_values and self.unit_from is not None:
            raise ValueError(f"float grey values up to {high:.7g} (0..255), but {self.unit_from} "
                             "was read as [0, 1] (its values at most 1): a folder's float grey "
                             "images are all [0, 1] or all 0..255; rescale them to one")
        if pixel_values:
            self.pixel_values_from = self.pixel_values_from or name or "an image"
            return Image.fromarray(np.round(values).astype(np.uint8))
        self.unit_from = self.unit_from or name or "an image"
        return Image.fromarray(np.round(values * 255).astype(np.uint8))
