"""`ganfast fid A B`: FID (and KID, IS, precision/recall) between two image folders or .npz stats.

A and B are each a folder of images (.png, .jpg, .jpeg, .bmp, .webp, .tif, .tiff, .ppm, .pgm:
pytorch-fid's set; searched recursively, skipping files and folders whose names start with ".";
16-bit grey scaled to 8 bits, float grey from [0, 1] or 0..255) or a statistics file in
pytorch-fid's .npz format (mu, sigma). Features come from the FID Inception network (`--weights`
or GANFAST_INCEPTION_WEIGHTS), or from `--features module:function` (a module importable from
the current folder, or path/to/file.py:function), any callable taking images [N, 3, H, W] in
[0, 1] and returning features [N, D]. The Inception Score is torch-fidelity's: logits without
the fc bias, rows shuffled with numpy's RandomState(2020), 10 splits.
"""

import argparse
import contextlib
import functools
import importlib
import importlib.util
import os
import shutil
import sys
import traceback
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .._errors import error_line
from .._files import FloatGreyScale, grey_to_eight_bit, is_hidden_below, write_atomically
from .inception import PRECISION_CHOICES
from .resize import RESIZE_CHOICES

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
IS_SPLITS, IS_SHUFFLE_SEED, KID_SEED = 10, 2020, 2020  # torch-fidelity's defaults
KID_SUBSETS, KID_SUBSET_SIZE = 100, 1000  # torch-fidelity's too
PRC_K = 3
DESCRIPTION = __doc__


class FidError(ValueError):
    """Bad input to `ganfast fid`: printed as a message, no traceback."""


class UserCodeError(FidError):
    """The --features module or function raised `error`: printed as a message after the
    traceback of the user's own frames (the line to fix), none of ganfast's."""

    def __init__(self, message: str, error: BaseException):
        super().__init__(message)
        self.error = error


# The Inception network's feature size: .npz statistics of another size are refused before any
# extraction (pytorch-fid's --dims 64, say)
INCEPTION_FEATURES = 2048


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("a", help="an image folder or a pytorch-fid .npz statistics file")
    parser.add_argument("b", help="an image folder or a pytorch-fid .npz statistics file")
    parser.add_argument("--kid", action="store_true",
                        help="also the kernel inception distance (torch-fidelity's: 100 subsets "
                             "of 1000, of all images when a folder holds fewer, seed 2020; the "
                             "line printed says the subset size)")
    parser.add_argument("--isc", action="store_true",
                        help="also the Inception Score of each folder (torch-fidelity's: unbiased "
                             "logits, shuffled with seed 2020, 10 splits; 20 images or more)")
    parser.add_argument("--prc", action="store_true",
                        help="also precision (A as the fakes) and recall against B")
    parser.add_argument("--features", metavar="MODULE:FUNCTION",
                        help="the feature extractor instead of the FID Inception network: a "
                             "module importable from the current folder, or file.py:function")
    parser.add_argument("--weights", help="the FID Inception weights file (pytorch-fid's "
                                          "pt_inception-2015-12-05-6726825d.pth or .safetensors)")
    parser.add_argument("--resize", choices=RESIZE_CHOICES,
                        help="how the Inception network resizes images to 299 and scales them: "
                             "pytorch (pytorch-fid's bilinear and 2x-1, the default) or tf1 "
                             "(TensorFlow 1's, as the original FID code and torch-fidelity)")
    parser.add_argument("--precision", choices=PRECISION_CHOICES,
                        help="Inception inference: fp32 (the default) or bf16 (channels_last + "
                             "bf16 autocast: FID slightly off; faster on GPUs and CPUs with bf16 "
                             "arithmetic, slower on AVX2-only CPUs; see README)")
    parser.add_argument("--batch-size", type=int, default=50,
                        help="images per forward pass of the extractor (default: 50, as pytorch-fid)")
    parser.add_argument("--device", help="default: cuda when available")
    parser.add_argument("--workers", type=int, default=None,
                        help="threads decoding the next batch of images while the network runs "
                             "(default: up to 8 on a GPU, 0 on the CPU: read in the main "
                             "thread)")
    parser.add_argument("--save-stats", metavar="NPZ", nargs=2,
                        help="also write A's and B's statistics to these .npz files (a statistics "
                             "input is copied as it is); written once every metric asked for is "
                             "computed, so nothing is written when anything fails; neither may "
                             "be the other input's file")


def run(args) -> int:
    try:
        for line in compute(args):
            print(line)
    except UserCodeError as error:
        _print_user_traceback(error.error)
        print(f"ganfast fid: {error}", file=sys.stderr)
        return 1
    except (FidError, FileNotFoundError, NotADirectoryError) as error:
        print(f"ganfast fid: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # as ganfast train: 128 + SIGINT, as a shell reports it
        print("ganfast fid: interrupted", file=sys.stderr)
        return 130
    return 0


def _print_user_traceback(error: BaseException) -> None:
    """`error`'s traceback to stderr from the first frame that is neither this module's nor
    importlib's: the user's extractor or module, where the fix is."""
    tb = error.__traceback__
    while tb is not None and (tb.tb_frame.f_code.co_filename == __file__
                              or "importlib" in tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    traceback.print_exception(type(error), error, tb, file=sys.stderr)


def compute(args) -> list[str]:
    from . import frechet_distance, inception_score, kid, precision_recall

    # Everything that can be checked before the features are: extraction can take hours.
    if args.batch_size < 1:
        raise FidError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.workers is not None and args.workers < 0:
        raise FidError(f"--workers must be >= 0, got {args.workers}")
    device = _device(args.device)
    workers = args.workers if args.workers is not None else default_workers(device)
    sources = [Path(args.a), Path(args.b)]
    for source in sources:
        if not source.exists():
            raise FidError(f"{source} does not exist (expected an image folder or a .npz file)")
    wants_features = args.kid or args.prc or args.isc
    if wants_features and not all(s.is_dir() for s in sources):
        raise FidError("--kid, --isc and --prc need image folders for both A and B, not .npz "
                       "statistics")
    if args.save_stats:
        _check_save_paths(args.save_stats, sources)
    # A and B one folder or file under two names (a/ and a, a link, ./a and /abs/a): read once,
    # B's results being A's
    same = _same_file(*sources)
    distinct = sources[:1] if same else sources
    files = {source: _image_files(source) for source in distinct if source.is_dir()}
    extractor = _extractor(args, device) if files else None
    for source, names in files.items():
        _check_count(source, len(names), args)
        # stderr, before the extraction: the count to check against what was meant (stdout
        # holds the results alone)
        print(f"{source}: {len(names)} image{'s' if len(names) != 1 else ''}", file=sys.stderr)
    if same:
        kind, done = (("folder", "its features are extracted") if sources[0].is_dir()
                      else ("statistics file", "it is read"))
        print(f"A and B are one {kind}, {sources[0].resolve()}: {done} once (FID 0 up to "
              "rounding)", file=sys.stderr)
    loaded = {source: _load_stats(source, args) for source in distinct if not source.is_dir()}
    # A statistics file's feature size against the extractor's: the Inception network's is
    # known now, another extractor's once its first batch is computed (not after the folder)
    expected = next(((source, s.num_features) for source, s in loaded.items()), None)
    if files and expected and not args.features and expected[1] != INCEPTION_FEATURES:
        raise FidError(f"{expected[0]} holds statistics of {expected[1]} features; the FID "
                       f"Inception network gives {INCEPTION_FEATURES} (statistics of another "
                       "extractor, or pytorch-fid's --dims, compare only with their own kind)")
    extracted = []  # (statistics, features, logits) of each distinct input
    for source in distinct:
        if source in files:
            extracted.append(_features_of_folder(
                source, files[source], extractor, args.batch_size, device, args.isc,
                keep=args.kid or args.prc, workers=workers, expected=expected, sources=sources))
        else:
            extracted.append((loaded[source], None, None))
    stats, features, logits = (list(column) for column in zip(*extracted, strict=True))
    if same:
        stats, features, logits = stats * 2, features * 2, logits * 2
    (mu1, sigma1), (mu2, sigma2) = (_mean_and_covariance(s, source)
                                    for s, source in zip(stats, sources, strict=True))
    if len(mu1) != len(mu2):
        raise FidError(_sizes_differ(sources, [len(mu1), len(mu2)]))
    fid = frechet_distance(mu1, sigma1, mu2, sigma2)
    lines = [f"FID: {_fixed(fid, 6)}"]
    if args.kid:
        subset_size = min(KID_SUBSET_SIZE, len(features[0]), len(features[1]))
        mean, std = kid(features[0], features[1], subsets=KID_SUBSETS, subset_size=subset_size,
                        seed=KID_SEED)
        lines.append(f"KID: {_fixed(mean, 6)} +- {_fixed(std, 6)} ({KID_SUBSETS} subsets of "
                     f"{subset_size})")
    if args.isc:
        for source, lg in zip(sources, logits, strict=True):
            order = np.random.RandomState(IS_SHUFFLE_SEED).permutation(len(lg))
            mean, std = inception_score(lg[torch.from_numpy(order)], splits=IS_SPLITS)
            lines.append(f"IS of {source}: {mean:.4f} +- {std:.4f}")
    if args.prc:
        precision, recall = precision_recall(features[0], features[1], k=PRC_K)
        lines.append(f"precision: {precision:.4f}  recall: {recall:.4f}")
    if args.save_stats:  # last: nothing is written unless everything else succeeded
        _save_stats([Path(p) for p in args.save_stats], sources, stats)
    return lines


def _sizes_differ(sources: list[Path], sizes: list[int]) -> str:
    return (f"feature sizes differ: {sources[0]} has {sizes[0]}, {sources[1]} has {sizes[1]} "
            "(features of different extractors)")


def _same_file(path: Path, other: Path) -> bool:
    """Whether two paths name one file: the same after symbolic links, or hard links of one."""
    if path.resolve() == other.resolve():
        return True
    return path.exists() and other.exists() and os.path.samefile(path, other)


def _check_save_paths(given: list[str], sources: list[Path]) -> None:
    """Refuse, before any extraction, --save-stats paths that could not be written, would not
    be read back as statistics (no .npz suffix), or whose writing would destroy an input (the
    other input's statistics file). A statistics input's own path is allowed: the file is
    already what would be written."""
    for text in given:
        if not text:
            raise FidError("--save-stats '': expected the path of a .npz file to write (an "
                           "unset variable?)")
    targets = [Path(text) for text in given]
    for target in targets:
        if target.suffix.lower() != ".npz" and not target.is_dir():
            raise FidError(f"--save-stats {target}: expected a name ending in .npz, the files "
                           "ganfast fid reads statistics from "
                           f"({target.stem or target.name}.npz, say)")
        if not target.absolute().parent.is_dir():
            raise FidError(f"--save-stats {target}: its folder {target.absolute().parent} does "
                           "not exist")
        if target.is_dir():
            raise FidError(f"--save-stats {target} is a folder; expected the path of a .npz file "
                           "to write")
    if _same_file(*targets):
        raise FidError(f"--save-stats {targets[0]} {targets[1]}: one file twice; A's and B's "
                       "statistics need a file each")
    for i, target in enumerate(targets):
        own, other = sources[i], sources[1 - i]
        if _same_file(target, other) and not _same_file(target, own):
            raise FidError(f"--save-stats {target} is input {'AB'[1 - i]} ({other}): writing "
                           f"{'AB'[i]}'s statistics there would replace it")


def _save_stats(targets: list[Path], sources: list[Path], stats: list) -> None:
    """Each source's statistics to its --save-stats file; _check_save_paths let no file be
    written that the other source reads, so the order of the writes cannot lose one."""
    for source, s, target in zip(sources, stats, targets, strict=True):
        try:
            if source.is_dir():
                s.save(target)
            elif not _same_file(target, source):  # statistics already: the file as it is
                write_atomically(target, functools.partial(shutil.copyfile, source))
        except OSError as error:
            raise FidError(f"--save-stats {target}: cannot write it: {error}") from None


def _mean_and_covariance(stats, source: Path):
    """The statistics' mean and covariance; their own check (finite) named after `source`:
    features found finite can still square past float64's range."""
    try:
        return stats.mean, stats.covariance
    except ValueError as error:
        raise FidError(f"the statistics of {source}: {error}") from None


def _fixed(value: float, digits: int) -> str:
    """`value` to `digits` decimals, without the "-0.000000" of a rounding-sized negative."""
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def _device(name: str | None) -> torch.device:
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise FidError(f"--device {name!r}: {error}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise FidError(f"--device {name!r}: CUDA is not available here (use --device cpu)")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise FidError(f"--device {name!r}: torch sees {count} CUDA device(s), cuda:0 to "
                       f"cuda:{count - 1}")
    if device.type == "meta":
        raise FidError(f"--device {name!r}: meta tensors hold shapes, no values; features need "
                       "a device that computes (cpu or cuda)")
    try:  # a backend this PyTorch lacks (mps on Linux, xpu, ...)
        torch.empty(0, device=device)
    except Exception as error:  # NotImplementedError, AssertionError, RuntimeError, ...
        raise FidError(f"--device {name!r}: this PyTorch cannot place tensors there "
                       f"({error_line(error)}); use cpu or cuda") from None
    return device


def _check_count(folder: Path, n: int, args) -> None:
    """The fewest images each asked-for metric can be computed from."""
    needs = [(2, "FID (a covariance)")]
    if args.prc:
        needs.append((PRC_K + 1, f"--prc (k={PRC_K} neighbours besides each image)"))
    if args.isc:
        needs.append((2 * IS_SPLITS, f"--isc ({IS_SPLITS} splits of at least 2 images)"))
    for least, what in needs:
        if n < least:
            raise FidError(f"{folder} holds {n} image(s); {what} needs at least {least}")


def _extractor(args, device):
    """(features_fn, logits_fn or None): callables of an image batch."""
    if args.features:
        if args.isc:
            raise FidError("--isc needs the Inception network's logits: leave out --features")
        for option in ("weights", "resize", "precision"):  # --weights "": unset, as without
            if getattr(args, option):
                raise FidError(f"--{option} sets up the Inception network: leave it out with "
                               "--features")
        return _load_callable(args.features), None
    if args.features is not None:  # "" (--features "$F" with F unset): not the Inception network
        raise FidError("--features '': expected module:function or path/to/file.py:function "
                       "(an unset variable?); leave the option out for the FID Inception network")
    from .inception import fid_inception

    try:
        net = fid_inception(args.weights, resize=args.resize or "pytorch",
                            precision=args.precision or "fp32", flag_name="--weights").to(device)
    except ValueError as error:  # a file that is not the weights
        raise FidError(str(error)) from None
    # torch-fidelity's "logits_unbiased" (the original Inception Score code's too): the pool
    # features times the fc weight, no bias; from the same forward as the features.
    fc_weight = net.fc.weight.double().cpu()
    return net, (lambda features: features @ fc_weight.T)


def _load_callable(spec: str):
    """module:function (importable from the current folder too, as with `python -m`) or
    path/to/file.py:function. An error raised by the module's own code is a UserCodeError (its
    traceback shown); a name that finds no module, file or function, a FidError."""
    where, colon, attr = spec.rpartition(":")
    expected = ("expected module:function with the module importable from the current folder "
                "(or on PYTHONPATH), or path/to/file.py:function")
    if not colon or not attr:  # "feats", "feats.py", "feats:"
        raise FidError(f"--features {spec!r}: no function named; {expected}")
    if not where:
        raise FidError(f"--features {spec!r}: no module named; {expected}")
    if where.endswith(".py"):
        if not Path(where).is_file():
            raise FidError(f"--features {spec!r}: cannot load it (no file {where}); {expected}")
        module_spec = importlib.util.spec_from_file_location(Path(where).stem, where)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_spec.name] = module  # as an import would (dataclasses need it)
        try:
            module_spec.loader.exec_module(module)
        except Exception as error:
            del sys.modules[module_spec.name]
            raise UserCodeError(f"--features {spec!r}: running {where} failed: "
                                f"{error_line(error)}", error) from error
    else:
        # import_module finds any file name ("my-feats", "2024_feats"), but takes a leading "."
        # as a relative import (a TypeError without a package) and a path as nothing
        if "" in where.split(".") or "/" in where or os.sep in where:
            raise FidError(f"--features {spec!r}: {where!r} is not a module name; {expected}")
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(where)
        except ModuleNotFoundError as error:
            if error.name is not None and (where + ".").startswith(error.name + "."):
                raise FidError(f"--features {spec!r}: cannot load it ({error}); "
                               f"{expected}") from None
            raise UserCodeError(f"--features {spec!r}: importing {where} failed: "
                                f"{error_line(error)}", error) from error
        except Exception as error:  # the module's own code raised
            raise UserCodeError(f"--features {spec!r}: importing {where} failed: "
                                f"{error_line(error)}", error) from error
    if not hasattr(module, attr):
        raise FidError(f"--features {spec!r}: cannot load it (module {module.__name__!r} has no "
                       f"attribute {attr!r}); {expected}")
    fn = getattr(module, attr)
    if not callable(fn):
        kind = type(fn).__name__
        raise FidError(f"--features {spec!r}: {attr} is {'an' if kind[0] in 'aeiou' else 'a'} "
                       f"{kind}, not a function")
    return fn


def _image_files(folder: Path) -> list[Path]:
    # A folder named like an image (rglob walks into it) and a pipe or socket are no image
    # files; a broken link is kept, to be named
    files = sorted(p for p in folder.rglob("*")
                   if p.suffix.lower() in IMAGE_SUFFIXES and not is_hidden_below(p, folder)
                   and (p.is_file() or not p.exists()))
    if not files:
        raise FidError(f"{folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}; names "
                       "starting with '.' are skipped)")
    if importlib.util.find_spec("PIL") is None:  # checked here, before any extraction
        raise FidError(f"reading the images of {folder} needs Pillow: pip install Pillow")
    return files


def _decode(path: Path):
    """A file's image as [3, H, W] uint8, or, float grey (mode F), as the decoded PIL image:
    its scale is its folder's, decided in order (_finish). Safe in a worker thread."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if image.mode == "F":
                image.load()  # decoded here, usable once the file is closed
                return image
            return _rgb_tensor(grey_to_eight_bit(image))
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError,
            Image.DecompressionBombError) as error:  # SyntaxError: a broken PNG chunk
        raise FidError(f"cannot read image {path}: {error}") from None


def _rgb_tensor(image) -> torch.Tensor:
    """An 8-bit PIL image as [3, H, W] uint8 (a writable copy)."""
    array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def _finish(decoded, path: Path, float_grey: FloatGreyScale | None) -> torch.Tensor:
    """_decode's result as [3, H, W] uint8, float grey through `float_grey`."""
    if isinstance(decoded, torch.Tensor):
        return decoded
    try:
        return _rgb_tensor(grey_to_eight_bit(decoded, float_grey, str(path)))
    except ValueError as error:
        raise FidError(f"cannot read image {path}: {error}") from None


def _read(path: Path, float_grey: FloatGreyScale | None = None) -> torch.Tensor:
    """[3, H, W] uint8; float grey images through `float_grey`, their folder's scale."""
    return _finish(_decode(path), path, float_grey)


def _image_batches(files: list[Path], batch_size: int, workers: int):
    """(paths, their [3, H, W] uint8 images) batch by batch, in order. With `workers` threads
    the next batch decodes while the caller computes on this one (Pillow's decoders release the
    GIL: 930 against 524 images/s for 256x256 PNGs on 2 cores, and a GPU's Inception would wait
    on one thread); float grey scales are still decided in order, here."""
    batches = [files[start:start + batch_size] for start in range(0, len(files), batch_size)]
    float_grey = FloatGreyScale()
    if workers == 0:
        for paths in batches:
            yield paths, [_read(path, float_grey) for path in paths]
        return
    pool = ThreadPoolExecutor(workers)
    try:
        ahead = None  # (paths, futures) of the batch decoding while the caller has the last
        for paths in [*batches, None]:
            submitted = (paths, [pool.submit(_decode, path) for path in paths]) if paths else None
            if ahead is not None:
                yield ahead[0], [_finish(future.result(), path, float_grey)
                                 for path, future in zip(*ahead, strict=True)]
            ahead = submitted
    finally:  # an error, Ctrl-C or a caller that stopped: decodes no one will use are dropped
        pool.shutdown(wait=False, cancel_futures=True)


def default_workers(device: torch.device) -> int:
    """--workers when not given: on a GPU the network outruns one decoding thread, up to 8 of
    the cores this process may use; elsewhere 0, the network being the slow part and decoding
    threads taking its cores."""
    if device.type != "cuda":
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return min(8, cores or 1)


@torch.no_grad()
def _features_of_folder(folder, files, extractor, batch_size, device, with_logits, keep,
                        workers=0, expected=None, sources=None):
    """(FeatureStats, the features [N, D] float64 if `keep` else None, the logits if
    `with_logits` else None) of a folder's images, decoded in `workers` threads. The statistics
    take each batch as it comes: FID alone holds O(D^2), not the N x D features (KID and
    precision/recall need them). `expected`: (the other input, a .npz, its feature size),
    checked on the first batch; `sources`: A and B, in the order a message names them."""
    from .inception import FIDInceptionV3
    from .stats import FeatureStats

    features_fn, logits_of_features = extractor
    stats, features, logits, size = None, [], [], None
    # closed when this function ends, by an error too: the decoding threads stop then, not
    # when the traceback that holds the generator is let go
    with contextlib.closing(_image_batches(files, batch_size, workers)) as decoded:
        batches = tqdm(decoded, desc=f"features of {folder}", total=-(-len(files) // batch_size),
                       unit="batch", leave=False)
        for batch_number, (paths, batch) in enumerate(batches, start=1):
            for path, image in zip(paths, batch, strict=True):
                size = size or image.shape[1:]
                if image.shape[1:] != size:
                    raise FidError(f"images of mixed sizes in {folder}: {path} is "
                                   f"{tuple(image.shape[1:])}, earlier ones {tuple(size)}; "
                                   "resize them to one size first")
            images = torch.stack(batch).to(device=device, dtype=torch.float32) / 255
            which = (f"batch {batch_number} of {folder}, images {paths[0].name} to "
                     f"{paths[-1].name}")
            try:
                f = features_fn(images)
            except torch.cuda.OutOfMemoryError as error:
                raise FidError(f"out of memory on {device} computing the features of {which} "
                               f"({len(paths)} images of {images.shape[2]}x{images.shape[3]}): "
                               f"use a smaller --batch-size ({error_line(error)})") from None
            except Exception as error:
                if isinstance(features_fn, FIDInceptionV3):  # ganfast's own: a bug to report
                    raise
                raise UserCodeError(f"the feature extractor failed on {which}: "
                                    f"{error_line(error)}", error) from error
            f = _checked_features(f, paths, folder, batch_number)
            if stats is None and expected is not None and f.shape[1] != expected[1]:
                names, sizes = [folder, expected[0]], [f.shape[1], expected[1]]
                in_order = sources is None or sources[0] == folder
                raise FidError(_sizes_differ(names if in_order else names[::-1],
                                             sizes if in_order else sizes[::-1]))
            stats = stats or FeatureStats(f.shape[1])
            if f.shape[1] != stats.num_features:
                raise FidError(f"the feature extractor returned {stats.num_features} features "
                               f"per image for earlier images of {folder} and {f.shape[1]} now")
            stats.update(f)
            if keep:
                features.append(f)
            if with_logits:
                logits.append(logits_of_features(f))
    return (stats, torch.cat(features) if keep else None,
            torch.cat(logits) if with_logits else None)


def _checked_features(f, paths: list[Path], folder: Path, batch_number: int) -> torch.Tensor:
    """The extractor's output for the images `paths` as float64 on the CPU, or a FidError that
    says what is wrong with it, before it reaches any statistics (NaN would spoil them all)."""
    if isinstance(f, np.ndarray) and f.dtype.kind in "fiub":  # torch takes no object arrays
        f = torch.from_numpy(f)
    if (not isinstance(f, torch.Tensor) or f.dim() != 2 or f.shape[0] != len(paths)
            or f.shape[1] == 0 or not f.is_floating_point()):
        raise FidError(f"the feature extractor must return a tensor (or numpy array) of [N, D] "
                       f"real floating-point features, D >= 1, for N images; got "
                       f"{type(f).__name__} {getattr(f, 'dtype', '')} "
                       f"{tuple(getattr(f, 'shape', ()))}")
    f = f.double().cpu()
    finite_rows = f.isfinite().all(1)
    if not finite_rows.all():
        first = paths[int(finite_rows.logical_not().nonzero()[0, 0])]
        raise FidError(f"the feature extractor returned NaN or infinite features for {first} "
                       f"(batch {batch_number} of {folder}, images {paths[0].name} to "
                       f"{paths[-1].name})")
    return f


def _load_stats(path: Path, args):
    from .stats import FeatureStats, open_npz

    if path.suffix.lower() != ".npz":
        raise FidError(f"{path} is neither a folder nor a .npz statistics file")
    try:
        with open_npz(path) as data:
            has_count = "count" in data.files
        # pytorch-fid files carry no count, which FID does not need
        stats = FeatureStats.load(path, count=None if has_count else 2)
    except (KeyError, ValueError, OSError, zipfile.BadZipFile) as error:
        said = str(error)  # most name the file already
        raise FidError(said if said.startswith(str(path)) else
                       f"cannot read statistics from {path}: {said}") from None
    return stats  # a covariance: FeatureStats.load checked
