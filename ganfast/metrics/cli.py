"""`ganfast fid A B`: FID (and KID, IS, precision/recall) between two image folders or .npz stats.

A and B are each a folder of images (.png, .jpg, .jpeg, .bmp, .webp, searched recursively) or a
statistics file in pytorch-fid's .npz format (mu, sigma). Features come from the FID Inception
network (`--weights` or GANFAST_INCEPTION_WEIGHTS), or from `--features module:function`, any
callable taking images [N, 3, H, W] in [0, 1] and returning features [N, D].
"""

import argparse
import importlib
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .inception import PRECISION_CHOICES
from .resize import RESIZE_CHOICES

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
DESCRIPTION = __doc__


class FidError(ValueError):
    """Bad input to `ganfast fid`: printed as a message, no traceback."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("a", help="an image folder or a pytorch-fid .npz statistics file")
    parser.add_argument("b", help="an image folder or a pytorch-fid .npz statistics file")
    parser.add_argument("--kid", action="store_true", help="also the kernel inception distance")
    parser.add_argument("--isc", action="store_true", help="also the Inception Score of each folder")
    parser.add_argument("--prc", action="store_true",
                        help="also precision (A as the fakes) and recall against B")
    parser.add_argument("--features", metavar="MODULE:FUNCTION",
                        help="the feature extractor instead of the FID Inception network")
    parser.add_argument("--weights", help="the FID Inception weights file (pytorch-fid's "
                                          "pt_inception-2015-12-05-6726825d.pth or .safetensors)")
    parser.add_argument("--resize", choices=RESIZE_CHOICES,
                        help="how the Inception network resizes images to 299: pytorch "
                             "(pytorch-fid's bilinear, the default) or tf1 (TensorFlow 1's, as "
                             "the original FID code and torch-fidelity)")
    parser.add_argument("--precision", choices=PRECISION_CHOICES,
                        help="Inception inference: fp32 (the default) or bf16 (channels_last + "
                             "bf16 autocast: FID slightly off; faster on GPUs and CPUs with bf16 "
                             "arithmetic, slower on AVX2-only CPUs; see README)")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--device", help="default: cuda when available")
    parser.add_argument("--save-stats", metavar="NPZ", nargs=2,
                        help="also write A's and B's statistics to these .npz files")


def run(args) -> int:
    try:
        for line in compute(args):
            print(line)
    except (FidError, FileNotFoundError) as error:
        print(f"ganfast fid: {error}", file=sys.stderr)
        return 1
    return 0


def compute(args) -> list[str]:
    from . import FeatureStats, frechet_distance, inception_score, kid, precision_recall

    if args.batch_size < 1:
        raise FidError(f"--batch-size must be >= 1, got {args.batch_size}")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    sources = [Path(args.a), Path(args.b)]
    for source in sources:
        if not source.exists():
            raise FidError(f"{source} does not exist (expected an image folder or a .npz file)")
    wants_features = args.kid or args.prc or args.isc
    if wants_features and any(s.suffix == ".npz" for s in sources):
        raise FidError("--kid, --isc and --prc need image folders for both A and B, not .npz "
                       "statistics")
    extractor = None
    if any(s.is_dir() for s in sources):
        extractor = _extractor(args, device)
    stats, features, logits = [], [], []
    for source in sources:
        if source.is_dir():
            f, lg = _features_of_folder(source, extractor, args.batch_size, device, args.isc)
            stats.append(FeatureStats(f.shape[1]).update(f))
            features.append(f)
            logits.append(lg)
        else:
            stats.append(_load_stats(source))
    dims = [s.mean.shape[0] for s in stats]
    if dims[0] != dims[1]:
        raise FidError(f"feature sizes differ: {sources[0]} has {dims[0]}, {sources[1]} has "
                       f"{dims[1]}")
    if args.save_stats:
        for s, path in zip(stats, args.save_stats, strict=True):
            s.save(path)
    fid = frechet_distance(stats[0].mean, stats[0].covariance, stats[1].mean, stats[1].covariance)
    lines = [f"FID: {fid:.6f}"]
    if args.kid:
        mean, std = kid(features[0], features[1], subset_size=min(1000, len(features[0]),
                                                                  len(features[1])))
        lines.append(f"KID: {mean:.6f} +- {std:.6f}")
    if args.isc:
        for source, lg in zip(sources, logits, strict=True):
            mean, std = inception_score(lg, splits=min(10, len(lg)))
            lines.append(f"IS of {source}: {mean:.4f} +- {std:.4f}")
    if args.prc:
        precision, recall = precision_recall(features[0], features[1])
        lines.append(f"precision: {precision:.4f}  recall: {recall:.4f}")
    return lines


def _extractor(args, device):
    """(features_fn, logits_fn or None): callables of an image batch."""
    if args.features:
        if args.isc:
            raise FidError("--isc needs the Inception network's logits: leave out --features")
        for option in ("resize", "precision"):
            if getattr(args, option) is not None:
                raise FidError(f"--{option} sets up the Inception network: leave it out with "
                               "--features")
        module_name, _, attr = args.features.partition(":")
        try:
            fn = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError, ValueError) as error:
            raise FidError(f"--features {args.features!r}: cannot load it ({error}); expected "
                           "module:function") from None
        return fn, None
    from .inception import fid_inception

    net = fid_inception(args.weights, resize=args.resize or "pytorch",
                        precision=args.precision or "fp32").to(device)
    return net, (lambda images: net.fc(net(images)))


def _image_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FidError(f"{folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def _read(path: Path) -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (OSError, UnidentifiedImageError) as error:
        raise FidError(f"cannot read image {path}: {error}") from None
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


@torch.no_grad()
def _features_of_folder(folder, extractor, batch_size, device, with_logits):
    features_fn, logits_fn = extractor
    files = _image_files(folder)
    features, logits, size = [], [], None
    for start in tqdm(range(0, len(files), batch_size), desc=f"features of {folder}",
                      unit="batch", leave=False):
        batch = [_read(p) for p in files[start:start + batch_size]]
        for path, image in zip(files[start:], batch, strict=False):
            size = size or image.shape[1:]
            if image.shape[1:] != size:
                raise FidError(f"images of mixed sizes in {folder}: {path} is "
                               f"{tuple(image.shape[1:])}, earlier ones {tuple(size)}; resize "
                               "them to one size first")
        images = torch.stack(batch).to(device=device, dtype=torch.float32) / 255
        f = features_fn(images)
        if not isinstance(f, torch.Tensor) or f.dim() != 2 or f.shape[0] != len(batch):
            raise FidError(f"the feature extractor must return [N, D] features for N images; got "
                           f"{getattr(f, 'shape', type(f).__name__)}")
        features.append(f.double().cpu())
        if with_logits:
            logits.append(logits_fn(images).double().cpu())
    return torch.cat(features), (torch.cat(logits) if with_logits else None)


def _load_stats(path: Path):
    from .stats import FeatureStats

    if path.suffix != ".npz":
        raise FidError(f"{path} is neither a folder nor a .npz statistics file")
    try:
        return FeatureStats.load(path, count=2)  # pytorch-fid files carry no count; FID needs none
    except (KeyError, ValueError, OSError, zipfile.BadZipFile) as error:
        raise FidError(f"cannot read statistics from {path}: {error}") from None
