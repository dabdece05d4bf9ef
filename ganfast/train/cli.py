"""`ganfast train`: the command line of the training loop."""

import argparse
import sys

from ..backends import BACKENDS
from .config import AMP_MODES, PRESETS, TrainConfig
from .models import MODELS
from .objectives import LOSSES, PENALTIES

DESCRIPTION = """Train a GAN. With no arguments: a DCGAN on scikit-learn's bundled digits (no
download), a few minutes on a laptop CPU, writing sample grids, metrics.jsonl, a plot and a
checkpoint under --out. Built-in data: digits, ring8, grid25; or a folder of images (one
subfolder per class for --conditional) or a .npy array."""


def _per_dataset(key: str) -> str:
    """The PRESETS defaults of a setting, as the help shows them."""
    values = ", ".join(f"{'other ' if name in ('images', 'points') else ''}{name} {preset[key]:g}"
                       for name, preset in PRESETS.items())
    return f"default per dataset: {values}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # Every default is None (TrainConfig's apply), so run() knows which flags were typed: a
    # resumed run refuses those that contradict its saved settings.
    d = TrainConfig()
    parser.set_defaults(**{name: None for name in TrainConfig.__dataclass_fields__})
    parser.add_argument("--data", help=f"digits | ring8 | grid25 | FOLDER | FILE.npy (default: {d.data})")
    parser.add_argument("--model", choices=MODELS,
                        help=f"default: {d.model} (mlp for 2-D points, dcgan for images)")
    parser.add_argument("--loss", choices=LOSSES, help=f"default: {d.loss}")
    parser.add_argument("--penalty", choices=PENALTIES, help=f"default: {d.penalty}")
    parser.add_argument("--penalty-weight", type=float,
                        help="default: 10 for wgan-gp, 1 for r1/r2 (0.1 on 2-D points)")
    parser.add_argument("--penalty-every", type=int,
                        help="lazy regularization: apply the penalty every k-th D step, times k "
                             "(default: 1 for wgan-gp, 4 for r1/r2)")
    parser.add_argument("--steps", type=int, help=f"generator steps ({_per_dataset('steps')})")
    parser.add_argument("--batch-size", type=int, help=f"per process ({_per_dataset('batch_size')})")
    parser.add_argument("--lr-g", type=float, help=f"generator Adam lr ({_per_dataset('lr_g')})")
    parser.add_argument("--lr-d", type=float, help=f"discriminator Adam lr ({_per_dataset('lr_d')})")
    parser.add_argument("--n-critic", type=int, help=f"D steps per G step (default: {d.n_critic})")
    parser.add_argument("--ema", type=float, help=f"generator EMA decay (default: {d.ema})")
    parser.add_argument("--conditional", action="store_true", default=None,
                        help="AC-GAN: class-conditional G, D with an auxiliary classifier")
    parser.add_argument("--ac-weight", type=float,
                        help=f"AC-GAN: weight of the class loss in D and G (default: {d.ac_weight})")
    parser.add_argument("--width", type=int,
                        help="model width (channels / hidden units; default: mlp 256, dcgan 32, "
                             "sngan 64)")
    parser.add_argument("--image-size", type=int,
                        help="resize images to this side (default: digits 16, an image folder its "
                             "most common size, a .npy file its own)")
    parser.add_argument("--amp", choices=AMP_MODES, help=f"mixed precision (default: {d.amp})")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction,
                        help="torch.compile the models (default: no)")
    parser.add_argument("--backend", choices=BACKENDS,
                        help=f"ganfast backend of the penalty, spectral norm and up-convs (default: "
                             f"$GANFAST_BACKEND when set, else {d.backend})")
    parser.add_argument("--device", help=f"auto | cpu | cuda | cuda:N (default: {d.device})")
    parser.add_argument("--seed", type=int, help=f"default: {d.seed}")
    parser.add_argument("--out", help="run folder (default: runs/<name of --data>-<time>)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument("--log-every", type=int,
                        help="steps between rows of metrics.jsonl (default: a hundredth of --steps)")
    parser.add_argument("--sample-every", type=int, help="steps between sample grids and "
                        "checkpoints (default: a fifth of --steps)")
    parser.add_argument("--eval-every", type=int,
                        help="steps between quality measurements (default: a fifth of --steps)")
    parser.add_argument("--tensorboard", action=argparse.BooleanOptionalAction,
                        help="TensorBoard events in the run folder (default: yes)")
    parser.add_argument("--inception-weights",
                        help="FID Inception weights (pytorch-fid's .pth): also log the true FID "
                             "of image data (default: $GANFAST_INCEPTION_WEIGHTS when set)")


def run(args) -> int:
    settings = {k: v for k, v in vars(args).items()
                if k in TrainConfig.__dataclass_fields__ and v is not None}  # the flags typed
    if args.resume and not args.out:
        print("ganfast train: --resume needs --out, the run folder to continue", file=sys.stderr)
        return 2
    try:
        return _train(args, settings)
    except KeyboardInterrupt:
        # Ctrl-C once the run had ended (an impatient second one during the shutdown): what
        # the run did is said already, a traceback would only bury it
        return 130


def _train(args, settings: dict) -> int:
    from .data import DataError
    from .trainer import Trainer, TrainingError

    trainer = None
    try:
        trainer = Trainer(TrainConfig(**settings), out=args.out, resume=args.resume,
                          given=set(settings))
        row = trainer.run()
    except (TrainingError, DataError) as err:
        print(f"ganfast train: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as stop:  # 128 + the signal's number, as a shell reports it
        return getattr(stop, "exit_code", 130)
    finally:
        if trainer is not None:
            trainer.close()
        _leave_process_group()
    if trainer.writer:
        shown = ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k != "steps_per_s")
        print(f"done: {shown}\noutputs in {trainer.out}: {_contents(trainer.out)}")
    return 0


def _contents(folder) -> str:
    """What the run wrote into its folder (not the user's files beside it), the step-numbered
    sample grids counted rather than listed."""
    from .checkpoint import is_run_output

    names = sorted(p.name + "/" * p.is_dir() for p in folder.iterdir() if is_run_output(p.name))
    grids = [n for n in names if n.startswith("samples_") and n != "samples_final.png"]
    shown = [n for n in names if n not in grids]
    if grids:
        shown.append(f"{len(grids)} sample grids samples_<step>.png" if len(grids) > 1 else grids[0])
    return ", ".join(shown)


def _leave_process_group() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
