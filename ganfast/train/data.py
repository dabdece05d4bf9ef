"""Training data: built-in sets that need no download, an image folder, a .npy array.

Every dataset is a `Dataset`: all samples as one float tensor in [-1, 1] (images [N, C, H, W],
2-D points [N, 2]), optional integer labels, and for the 2-D mixtures the mode centres and
standard deviation their metrics need. GAN datasets that fit in memory train fastest as one
tensor indexed by a random batch of indices (no DataLoader workers to start).
"""

import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from .._files import (
    PIXEL_FLOAT_MIN_MAX,
    FloatGreyScale,
    grey_to_eight_bit,
    is_hidden_below,
    is_sixteen_bit_grey,
    some_names,
)
from .checkpoint import CHECKPOINT, is_run_folder, is_run_output


class DataError(ValueError):
    """Bad --data: the message says what was expected."""


@dataclass
class Dataset:
    name: str
    x: torch.Tensor                      # [N, C, H, W] or [N, 2], in [-1, 1] for images
    labels: torch.Tensor | None = None   # [N] int64 class indices
    class_names: list = field(default_factory=list)
    centers: torch.Tensor | None = None  # 2-D mixtures: [modes, 2]
    std: float = 0.0                     # 2-D mixtures: each mode's standard deviation
    # one of BUILT_IN, not a folder or .npy (whose name is its path's: --data photos/digits)
    builtin: bool = False

    @property
    def is_image(self) -> bool:
        return self.x.dim() == 4

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


# Image side the digits are upscaled to: 16x16 keeps the default run within minutes on 2 cores.
DIGITS_SIZE = 16
# The standard mixtures of the mode-collapse literature (VEEGAN, Srivastava et al. 2017;
# PacGAN, Lin et al. 2018): 8 modes on a circle of radius 2 with std 0.02, and a 5x5 grid with
# spacing 2 (-4..4) and std 0.05.
RING8 = {"modes": 8, "radius": 2.0, "std": 0.02}
GRID25 = {"side": 5, "spacing": 2.0, "std": 0.05}
MIXTURE_SAMPLES = 100_000
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def _bilinear(x: torch.Tensor, size: int) -> torch.Tensor:
    """[N, C, H, W] images bilinearly resized to size x size, antialiased where they shrink
    (as PIL's resize is; upscaling is the plain bilinear, which the digits have always used)."""
    return torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear",
                                           align_corners=False, antialias=size < max(x.shape[-2:]))


def digits(size: int = DIGITS_SIZE) -> Dataset:
    """scikit-learn's bundled 8x8 digits (1797 images, 0..16), bilinearly upscaled to size."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    if size != 8:
        x = _bilinear(x, size)
    return Dataset("digits", x.clamp(0, 1) * 2 - 1, torch.tensor(bunch.target, dtype=torch.int64),
                   [str(i) for i in range(10)], builtin=True)


def ring8_centers() -> torch.Tensor:
    angles = torch.arange(RING8["modes"], dtype=torch.float64) * (2 * math.pi / RING8["modes"])
    return (RING8["radius"] * torch.stack([angles.cos(), angles.sin()], 1)).float()


def grid25_centers() -> torch.Tensor:
    ticks = (torch.arange(GRID25["side"]) - GRID25["side"] // 2) * GRID25["spacing"]
    return torch.cartesian_prod(ticks, ticks).float()


def mixture(name: str, centers: torch.Tensor, std: float, seed: int = 0) -> Dataset:
    gen = torch.Generator().manual_seed(seed)
    which = torch.randint(len(centers), (MIXTURE_SAMPLES,), generator=gen)
    x = centers[which] + std * torch.randn(MIXTURE_SAMPLES, 2, generator=gen)
    return Dataset(name, x, which, [str(i) for i in range(len(centers))], centers, std,
                   builtin=True)


# PIL modes with one channel of colour: with "LA" the alpha is dropped; "I;16*" (16-bit, and "I",
# how older Pillow opens 16-bit PNGs) is scaled to 8 bits, "F" (float TIFFs) from [0, 1]; "1"
# converts as PIL does.
GREY_MODES = {"1", "L", "LA", "La", "I", "F"}


def _is_grey(mode: str) -> bool:
    return mode in GREY_MODES or is_sixteen_bit_grey(mode)


def _eight_bit(im, float_grey: FloatGreyScale, name: str):
    """An "L" or "RGB" copy of im (16-bit grey scaled to 8 bits, float grey by `float_grey`, the
    data's scale)."""
    if is_sixteen_bit_grey(im.mode) or im.mode == "F":
        return grey_to_eight_bit(im, float_grey, name)
    if im.mode in ("L", "RGB"):
        return im.copy()
    return im.convert("L" if _is_grey(im.mode) else "RGB")


def image_folder(path: Path, size: int | None = None, log=print) -> Dataset:
    """Images under path; with one subfolder per class, those are the labels.

    Subfolders without images are skipped (with a message); images beside class subfolders are an
    error, not silently left out. Mixed sizes are resized (with a message) to the most common
    size, or to size when given; without size that must be square, as the models need. Grayscale
    (L, LA, 1-bit, 16-bit, float) stays one channel only when every image is grayscale; 16-bit
    grey is scaled to 8 bits, float grey from [0, 1] or 0..255 (FloatGreyScale: one scale for
    the folder). Files and folders whose names start with "." (.ipynb_checkpoints/) are not read.
    """
    from PIL import Image, UnidentifiedImageError

    # The pictures of ganfast runs written under the data (the runs/ of `ganfast train --data
    # .`, or an --out inside the data folder or equal to it) are not training images: read as
    # such they became more images, or a class of their own, in the next run (resumed runs
    # included). Only the files a run writes are left out, so a user's folder that happens to
    # hold a checkpoint.pt and a metrics.jsonl keeps its images.
    run_folders = {marker.parent for marker in path.rglob(CHECKPOINT)
                   if not is_hidden_below(marker, path) and is_run_folder(marker.parent)}
    if run_folders:
        log(f"--data {path}: leaving out the sample grids and plots of "
            f"{len(run_folders)} ganfast run folder(s) "
            f"({some_names(str(p.relative_to(path)) for p in sorted(run_folders))})")

    def is_image(p: Path) -> bool:
        return p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() \
            and not (p.parent in run_folders and is_run_output(p.name))

    def images_under(folder: Path) -> list:
        return sorted(p for p in folder.rglob("*")
                      if is_image(p) and not is_hidden_below(p, folder))

    subdirs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    classes = []
    for folder in subdirs:
        found = images_under(folder)
        if found:
            classes.append((folder.name, found))
        else:
            log(f"--data {path}: skipping subfolder {folder.name}/: it holds no images")
    if classes:
        top_level = sorted(p.name for p in path.iterdir()
                           if is_image(p) and not p.name.startswith("."))
        if top_level:
            raise DataError(f"--data {path} holds both images ({some_names(top_level)}) and class "
                            f"subfolders ({some_names([name for name, _ in classes])}); put every image "
                            "in a class subfolder, or none")
    groups = classes or [("all", images_under(path))]
    files, labels = [], []
    for index, (_, found) in enumerate(groups):
        files += found
        labels += [index] * len(found)
    if not files:
        raise DataError(f"--data {path}: no images found (expected files ending in "
                        f"{', '.join(sorted(IMAGE_SUFFIXES))}, directly or one subfolder per "
                        "class; names starting with '.' are skipped)")
    images, float_grey = [], FloatGreyScale()
    for file in files:
        try:
            with Image.open(file) as im:
                images.append(_eight_bit(im, float_grey, str(file)))
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError,
                Image.DecompressionBombError) as err:
            if isinstance(err, DataError):
                raise
            raise DataError(f"--data {path}: cannot read image {file}: {err}") from None
    sizes = {im.size for im in images}
    target = (size, size) if size else max(sizes, key=lambda s: sum(im.size == s for im in images))
    if target[0] != target[1]:
        which = "the images are" if len(sizes) == 1 else "the most common image size is"
        raise DataError(f"--data {path}: {which} {target[0]}x{target[1]}, not square, and the models "
                        f"need square images: pass --image-size N to resize them to NxN (e.g. "
                        f"--image-size {min(target)})")
    resized = sum(im.size != target for im in images)
    if resized:
        to = f"to {target[0]}x{target[1]}"
        if len(sizes) == 1:
            (w, h), = sizes
            what = "the image" if len(images) == 1 else f"all {len(images)} images"
            log(f"--data {path}: resizing {what} from {w}x{h} {to} (--image-size {size})")
        else:
            log(f"--data {path}: images have {len(sizes)} different sizes; resizing {resized} of "
                f"{len(images)} {to}")
    mode = "L" if all(im.mode == "L" for im in images) else "RGB"
    arrays = [np.asarray(im.convert(mode).resize(target, Image.BILINEAR), dtype=np.float32)
              for im in images]
    x = torch.from_numpy(np.stack(arrays))
    x = x.unsqueeze(1) if mode == "L" else x.permute(0, 3, 1, 2)
    class_names = [name for name, _ in classes]
    return Dataset(path.name, (x / 127.5 - 1).contiguous(),
                   torch.tensor(labels) if classes else None, class_names)


IMAGE_SHAPES = "images [N, H, W], [N, C, H, W] or [N, H, W, C]"


def _read_npy(path: Path) -> np.ndarray:
    """np.load with errors that say what is wrong, not numpy's advice to unpickle."""
    fmt = np.lib.format
    try:
        with open(path, "rb") as fp:
            version = fmt.read_magic(fp)
            header = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}.get(version)
            dtype = header(fp)[2] if header else None
    except OSError as err:
        raise DataError(f"--data {path}: cannot read the file: {err.strerror or err}") from None
    except (ValueError, EOFError, SyntaxError):
        raise DataError(f"--data {path}: not a numpy array file (no valid .npy header; expected an "
                        "array written by numpy.save)") from None
    if dtype is not None and dtype.hasobject:
        raise DataError(f"--data {path}: not a numpy array file of numbers: it holds Python objects "
                        f"(dtype {dtype}); save a numeric array with numpy.save")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise DataError(f"--data {path}: not a numpy array file that can be read (truncated or "
                        f"damaged?): {err}") from None


IMAGE_CHANNELS = (1, 3, 4)


def _channels_last(shape: tuple, where: str) -> bool:
    """Whether 4-D images are [N, H, W, C] rather than [N, C, H, W]. When both axes could hold
    the channels (a side of 1, 3 or 4: (10, 4, 4, 3)), the reading whose images are square
    wins, as the models need square images; when neither is, channels first, as before such
    shapes were looked at (--image-size makes them square); when both are, (N, c, c, c), that
    is an error, not a guess (a wrong one trains on scrambled pixels)."""
    first, last = shape[1] in IMAGE_CHANNELS, shape[3] in IMAGE_CHANNELS
    if not first and not last:
        raise DataError(f"{where}: {IMAGE_SHAPES} need C = 1 (grey), 3 (RGB) or 4 (RGBA) channels; "
                        f"got shape {shape}")
    if not (first and last):
        return last
    square_first, square_last = shape[2] == shape[3], shape[1] == shape[2]
    if square_first != square_last:
        return square_last
    if not square_first:
        return False
    raise DataError(f"{where}: shape {shape} is ambiguous: [N, C, H, W] holds {shape[1]}-channel "
                    f"{shape[2]}x{shape[3]} images and [N, H, W, C] {shape[3]}-channel "
                    f"{shape[1]}x{shape[2]} ones, both square; save the images at a larger size "
                    "(more than 4 pixels a side), or as an image folder")


def npy_array(path: Path) -> Dataset:
    """[N, 2] points (used as they are) or images [N, H, W], [N, C, H, W] or [N, H, W, C] with
    C = 1, 3 or 4 (where both could be, the layout with square images: _channels_last), scaled
    to [-1, 1] by this rule:

    - integers (any integer dtype) and floats whose maximum is above 1.5 are pixel values 0..255
      (x / 127.5 - 1); values below 0 or above 255 are an error, and so are integers no larger
      than 1 (0/1 masks: which reading was meant is not clear; save them as floats);
    - other floats in [0, 1] are mapped to [-1, 1] (x * 2 - 1); floats in [-1, 1] reaching
      below -0.5 are kept as they are; any other range (e.g. 0..1.2, -0.01..0.97, -3..1) is an
      error rather than a guess.

    NaN or infinite values, complex or boolean arrays are errors too.
    """
    array = _read_npy(path)
    where = f"--data {path}"
    if array.dtype.kind not in "iuf":
        raise DataError(f"{where}: expected an array of real numbers (integers or floats), got "
                        f"dtype {array.dtype}")
    if array.ndim < 2 or array.ndim > 4:
        dims = f"{array.ndim} dimension{'s' if array.ndim != 1 else ''}"
        raise DataError(f"{where}: expected points [N, 2] or {IMAGE_SHAPES}; got {dims}, shape "
                        f"{array.shape}")
    if array.size == 0:
        raise DataError(f"{where}: the array is empty (shape {array.shape})")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise DataError(f"{where}: the array holds values that are not finite (NaN or infinity)")
    if array.ndim == 2:
        if array.shape[1] != 2:
            raise DataError(f"{where}: points must be [N, 2] (the plots and metrics are 2-D), or "
                            f"{IMAGE_SHAPES}; got shape {array.shape}")
        return Dataset(path.stem, torch.from_numpy(array.astype(np.float32)))
    channels_last = array.ndim == 4 and _channels_last(array.shape, where)
    lo, hi = float(array.min()), float(array.max())
    x = torch.from_numpy(array.astype(np.float32))
    if array.ndim == 3:
        x = x.unsqueeze(1)
    elif channels_last:
        x = x.permute(0, 3, 1, 2)
    if array.dtype.kind in "iu" and hi <= 1:
        raise DataError(f"{where}: integer images with values from {lo:g} to {hi:g} are not "
                        "clearly 0..255 pixels; save 0/1 images as floats (taken as [0, 1])")
    if array.dtype.kind in "iu" or hi > PIXEL_FLOAT_MIN_MAX:
        if lo < 0 or hi > 255:
            kind = "integers" if array.dtype.kind in "iu" else f"floats above {PIXEL_FLOAT_MIN_MAX:g}"
            raise DataError(f"{where}: images as {kind} are taken as pixel values 0..255, but the "
                            f"values range from {lo:g} to {hi:g}")
        x = x / 127.5 - 1
    elif lo >= 0 and hi <= 1:
        x = x * 2 - 1
    elif not (-1 <= lo < -0.5 and hi <= 1):
        raise DataError(f"{where}: float images must be in [0, 1], [-1, 1] (reaching below -0.5) "
                        f"or 0..255, but the values range from {lo:g} to {hi:g}; clip or rescale "
                        "them to one of those")
    return Dataset(path.stem, x.contiguous())


def _resized(dataset: Dataset, size: int, where: str, log) -> Dataset:
    """The dataset with its images resized to size x size (_bilinear)."""
    if dataset.x.dim() != 4:
        raise DataError(f"--image-size {size}: {where} holds 2-D points, not images")
    h, w = dataset.x.shape[-2:]
    if (h, w) == (size, size):
        return dataset
    log(f"{where}: resizing the {len(dataset.x)} images from {w}x{h} to {size}x{size} "
        f"(--image-size {size})")
    return replace(dataset, x=_bilinear(dataset.x, size).clamp(-1, 1).contiguous())


BUILT_IN = {"digits": digits,
            "ring8": lambda: mixture("ring8", ring8_centers(), RING8["std"]),
            "grid25": lambda: mixture("grid25", grid25_centers(), GRID25["std"])}


def load(spec: str, image_size: int | None = None, log=print) -> Dataset:
    """--data: a built-in name, a folder of images, or a .npy file; images resized to
    image_size x image_size when it is given (2-D points refuse it)."""
    if image_size is not None and image_size < 1:
        raise DataError(f"--image-size must be a positive number of pixels, got {image_size}")
    if not spec:
        # Path("") is ".": an empty --data (a script's unset variable, `--data "$DATA"`) would
        # train on every image below the working folder, run folders' sample grids included.
        raise DataError(f"--data {spec!r} is empty: expected {', '.join(BUILT_IN)}, an image "
                        "folder or a .npy file (--data . for the images of this folder)")
    if spec == "digits":
        return digits(image_size or DIGITS_SIZE)
    if spec in BUILT_IN:
        if image_size is not None:
            raise DataError(f"--image-size {image_size}: --data {spec} is 2-D points, not images")
        return BUILT_IN[spec]()
    path = Path(spec).expanduser()
    if path.is_dir():
        if not os.access(path, os.R_OK | os.X_OK):
            raise DataError(f"--data {spec}: the folder is not readable")
        return image_folder(path, image_size, log)
    if path.suffix.lower() == ".npy" and path.is_file():
        dataset = npy_array(path)
        return dataset if image_size is None else _resized(dataset, image_size, f"--data {spec}", log)
    if not path.exists():
        raise DataError(f"--data {spec!r}: no such file or folder, and not a built-in dataset "
                        f"({', '.join(BUILT_IN)})")
    raise DataError(f"--data {spec!r}: not a built-in dataset ({', '.join(BUILT_IN)}), an image "
                    "folder or a .npy file")
