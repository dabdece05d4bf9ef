"""Training data: built-in sets that need no download, an image folder, a .npy array.

Every dataset is a `Dataset`: all samples as one float tensor in [-1, 1] (images [N, C, H, W],
2-D points [N, 2]), optional integer labels, and for the 2-D mixtures the mode centres and
standard deviation their metrics need. GAN datasets that fit in memory train fastest as one
tensor indexed by a random batch of indices (no DataLoader workers to start).
"""

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch


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


def digits(size: int = DIGITS_SIZE) -> Dataset:
    """scikit-learn's bundled 8x8 digits (1797 images, 0..16), bilinearly upscaled to size."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    if size != 8:
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return Dataset("digits", x.clamp(0, 1) * 2 - 1, torch.tensor(bunch.target, dtype=torch.int64),
                   [str(i) for i in range(10)])


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
    return Dataset(name, x, which, [str(i) for i in range(len(centers))], centers, std)


def image_folder(path: Path, size: int | None = None, log=print) -> Dataset:
    """Images under path; with one subfolder per class, those are the labels.

    Mixed sizes are resized (with a message) to the most common size, or to size when given;
    grayscale stays one channel only when every image is grayscale.
    """
    from PIL import Image, UnidentifiedImageError

    subdirs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    groups = [(d.name, d) for d in subdirs] or [("all", path)]
    files, labels = [], []
    for index, (_, folder) in enumerate(groups):
        found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        files += found
        labels += [index] * len(found)
    if not files:
        raise DataError(f"--data {path}: no images found (expected files ending in "
                        f"{', '.join(sorted(IMAGE_SUFFIXES))}, directly or one subfolder per class)")
    images = []
    for file in files:
        try:
            with Image.open(file) as im:
                images.append(im.convert("RGB") if im.mode not in ("L", "RGB") else im.copy())
        except (UnidentifiedImageError, OSError) as err:
            raise DataError(f"--data {path}: cannot read image {file}: {err}") from None
    sizes = {im.size for im in images}
    target = (size, size) if size else max(sizes, key=lambda s: sum(im.size == s for im in images))
    if len(sizes) > 1 or size:
        resized = sum(im.size != target for im in images)
        if resized:
            log(f"--data {path}: images have {len(sizes)} different sizes; resizing {resized} of "
                f"{len(images)} to {target[0]}x{target[1]}")
    mode = "L" if all(im.mode == "L" for im in images) else "RGB"
    arrays = [np.asarray(im.convert(mode).resize(target, Image.BILINEAR), dtype=np.float32)
              for im in images]
    x = torch.from_numpy(np.stack(arrays))
    x = x.unsqueeze(1) if mode == "L" else x.permute(0, 3, 1, 2)
    class_names = [name for name, _ in groups] if subdirs else []
    return Dataset(path.name, (x / 127.5 - 1).contiguous(),
                   torch.tensor(labels) if subdirs else None, class_names)


def npy_array(path: Path) -> Dataset:
    """[N, 2] points (used as they are) or images [N, H, W], [N, C, H, W] or [N, H, W, C]
    (uint8 0..255, or floats taken to be in [0, 1] when their range is, else as they are)."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise DataError(f"--data {path}: cannot read the .npy array: {err}") from None
    if array.ndim < 2 or len(array) == 0 or not np.issubdtype(array.dtype, np.number):
        raise DataError(f"--data {path}: expected a non-empty numeric array [N, 2] or images "
                        f"[N, H, W(, C)], got shape {array.shape} dtype {array.dtype}")
    x = torch.from_numpy(array.astype(np.float32))
    if array.ndim == 2:
        return Dataset(path.stem, x)
    if array.ndim == 3:
        x = x.unsqueeze(1)
    elif array.shape[-1] in (1, 3, 4) and array.shape[1] not in (1, 3, 4):
        x = x.permute(0, 3, 1, 2)
    if array.dtype == np.uint8:
        x = x / 127.5 - 1
    elif x.min() >= 0 and x.max() <= 1:
        x = x * 2 - 1
    return Dataset(path.stem, x.contiguous())


BUILT_IN = {"digits": digits,
            "ring8": lambda: mixture("ring8", ring8_centers(), RING8["std"]),
            "grid25": lambda: mixture("grid25", grid25_centers(), GRID25["std"])}


def load(spec: str, image_size: int | None = None, log=print) -> Dataset:
    """--data: a built-in name, a folder of images, or a .npy file."""
    if spec in BUILT_IN:
        return BUILT_IN[spec]()
    path = Path(spec).expanduser()
    if path.is_dir():
        if not os.access(path, os.R_OK | os.X_OK):
            raise DataError(f"--data {spec}: the folder is not readable")
        return image_folder(path, image_size, log)
    if path.suffix == ".npy" and path.is_file():
        return npy_array(path)
    raise DataError(f"--data {spec!r}: not a built-in dataset ({', '.join(BUILT_IN)}), an image "
                    "folder or a .npy file")
