"""The thin GAN training loop: `ganfast.train.Trainer(TrainConfig(...)).run()`.

One iteration: n_critic discriminator steps (the loss, the AC-GAN class term, every k-th step
the lazy penalty times k), then one generator step and the EMA update. Losses stay on the device
between logged steps (one synchronization per log interval, where NaN/Inf is also caught).
Randomness comes from torch's global RNG (penalty interpolation) and a sampler generator (data
indices, latents, fake labels), both checkpointed, so a resumed run repeats an uninterrupted one.
Ctrl-C (SIGINT) and SIGTERM stop the run at the end of the iteration under way, where the
checkpoint is consistent (after the last step: once the final checkpoint is written); a second
Ctrl-C stops at once and keeps the last checkpoint.
"""

import contextlib
import copy
import itertools
import math
import os
import signal
import threading
import time
from pathlib import Path

import torch
import torch.distributed as dist

import ganfast

from .._files import some_names
from . import checkpoint, objectives, quality
from . import data as datasets
from . import models as model_zoo
from .config import AMP_MODES, PRESETS, TrainConfig
from .monitor import (
    GRID_MAX_CLASSES,
    METRICS_FILE,
    Monitor,
    border_level,
    class_grid,
    save_image_grid,
    save_points,
)


class TrainingError(RuntimeError):
    """A run that cannot start or continue; the message says why and what to do."""


class NonFiniteLoss(TrainingError):
    """A loss became NaN or infinite: the run stops there, its last checkpoint kept."""


GRID_BATCH = 500  # samples of a grid drawn at once (as generate()'s batch)

# Settings a resumed run may change: how it runs and reports, not what it trains. The others are
# the saved run's; a flag that contradicts them is refused rather than ignored.
RESUMABLE_CHANGES = ("steps", "device", "backend", "compile", "tensorboard", "log_every",
                     "sample_every", "eval_every", "inception_weights")


def _flag(name: str) -> str:
    """The command-line spelling of a setting."""
    return {"tensorboard": "--tensorboard/--no-tensorboard",
            "compile": "--compile/--no-compile"}.get(name, f"--{name.replace('_', '-')}")


class Stopped(KeyboardInterrupt):
    """Raised by Trainer.run() after SIGINT or SIGTERM stopped it, its checkpoint saved.
    exit_code is the shell's for the signal (128 + its number: 130 for SIGINT, 143 for SIGTERM;
    130 for a process stopped because another one was)."""

    def __init__(self, signum: int | None):
        super().__init__(signal.Signals(signum).name if signum else "stopped by another process")
        self.exit_code = 128 + (signum or signal.SIGINT)


class _StopAtBoundary:
    """SIGINT and SIGTERM ask the loop to stop at the next iteration boundary (`requested`);
    a second SIGINT raises KeyboardInterrupt at once. Only the main thread can take signals:
    elsewhere the handlers stay as they were."""

    def __enter__(self):
        self.requested = None  # the signal's name once one arrives
        self.signum = None  # its number (None when another process asked to stop)
        self.previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C: now, mid-iteration
        self.requested = signal.Signals(signum).name
        self.signum = signum

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            if handler is not None:  # None: installed outside Python, cannot be put back
                signal.signal(sig, handler)
        return False


class _Interrupted(Exception):
    """Raised by the loop at an iteration boundary after SIGINT or SIGTERM."""


def _cuda_index(device_name: str, world: int) -> int | None:
    """The N of --device cuda:N (None for cuda alone), checked against the devices torch sees.
    Under torchrun each process takes the GPU of its LOCAL_RANK, so cuda:N is refused there."""
    index = device_name.removeprefix("cuda:")
    if index == device_name:
        return None
    if not index.isdigit():
        raise TrainingError(f"--device {device_name!r}: expected auto, cpu, cuda or cuda:N (N a "
                            "GPU's number)")
    if world > 1:
        raise TrainingError(f"--device {device_name}: with several processes each takes the GPU "
                            "of its LOCAL_RANK; use --device cuda")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count and int(index) >= count:
        raise TrainingError(f"--device {device_name}: torch sees {count} CUDA device(s), "
                            f"cuda:0 to cuda:{count - 1}")
    return int(index)


def _distributed_setup(device_name: str):
    """(rank, world, device): torchrun's environment starts a process group (gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if device_name not in ("auto", "cpu", "cuda") and not device_name.startswith("cuda:"):
        raise TrainingError(f"--device {device_name!r}: expected auto, cpu, cuda or cuda:N")
    index = _cuda_index(device_name, world)
    use_cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise TrainingError(f"--device {device_name}: torch sees no CUDA device")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    if use_cuda:
        local = index if index is not None else int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local)
    return rank, world, torch.device("cpu")


def _preset(dataset: datasets.Dataset) -> dict:
    # a built-in's own (an image folder or .npy is named after its path: --data imgs/ring8)
    if dataset.builtin and dataset.name in PRESETS:
        return PRESETS[dataset.name]
    return PRESETS["images" if dataset.is_image else "points"]


# What a run writes with (sample grids, plots, the generator's weights) and reads the digits from:
# the [train] extra. Checked before the run folder is made, so nothing is left half done.
TRAIN_PACKAGES = {"matplotlib": "matplotlib", "PIL": "Pillow", "safetensors": "safetensors"}


def _check_dependencies(config: TrainConfig, given: set, log) -> None:
    import importlib.util

    needed = dict(TRAIN_PACKAGES, **({"sklearn": "scikit-learn"} if config.data == "digits" else {}))
    missing = [name for module, name in needed.items() if importlib.util.find_spec(module) is None]
    if missing:
        raise TrainingError(f"ganfast train needs {', '.join(missing)}: pip install 'ganfast[train]'")
    if config.tensorboard is not False and importlib.util.find_spec("tensorboard") is None:
        if "tensorboard" in given:
            raise TrainingError("--tensorboard needs the tensorboard package: pip install tensorboard "
                                "(or 'ganfast[train]')")
        log("TensorBoard events not written: the tensorboard package is not installed "
            "(pip install tensorboard)")


def _fid_inception(weights: str | None):
    """ganfast.metrics' FID Inception network from --inception-weights, else the
    GANFAST_INCEPTION_WEIGHTS variable, its errors naming the one the path came from."""
    from ..metrics import fid_inception

    try:
        return fid_inception(weights, flag_name="--inception-weights")
    except (OSError, ValueError, ImportError) as err:  # missing, unreadable, not the weights
        raise TrainingError(str(err)) from None


def _saved_config(saved: dict) -> TrainConfig:
    """The settings of a checkpoint. One written before checkpoints recorded the data's shape
    came from a ganfast that ignored --image-size for digits and .npy data while storing it:
    that run trained at the data's own size, and resumes so."""
    config = TrainConfig.from_dict(saved["config"])
    if "data_shape" not in saved and (config.data == "digits" or config.data.endswith(".npy")):
        config.image_size = None
    return config


def _effective(config: TrainConfig, name: str, data_shape: list | None):
    """The value a setting takes in a run on samples of data_shape: --model auto, and --width
    and --image-size left out, stand for what the data chooses. Without the shape (a checkpoint
    written before they recorded it) the value as stored."""
    value = getattr(config, name)
    if name == "data" and value not in datasets.BUILT_IN:
        # the same files: `--data photos/` typed in the folder the run started in is the
        # absolute path the checkpoint holds, also through a symlink
        return str(Path(value).expanduser().resolve())
    if data_shape is None:
        return value
    if name == "model":
        return model_zoo.resolve(value, data_shape)
    if name == "width" and value is None:
        return model_zoo.DEFAULT_WIDTHS.get(model_zoo.resolve(config.model, data_shape))
    if name == "image_size" and value is None and len(data_shape) == 3:
        return data_shape[-1]  # trained at the data's own (square) size
    return value


def _absolute_data_path(data: str) -> str:
    """--data as stored in the checkpoint: a built-in name as it is, a file or folder as an
    absolute path (not resolving symlinks: a link the user re-points is followed on resume)."""
    return data if data in datasets.BUILT_IN else os.path.abspath(Path(data).expanduser())


def default_run_folder(data: str) -> Path:
    """runs/<data>-<time>, <data> the dataset's name or the folder's or file's name alone:
    `--data photos/` and `--data /data/faces.npy` run in runs/photos-... and runs/faces-...,
    not beside the data."""
    return Path("runs") / f"{Path(data).stem or 'data'}-{time.strftime('%Y%m%d-%H%M%S')}"


def make_new_folder(wanted: Path) -> Path:
    """Make `wanted`, or when it exists wanted-2, wanted-3, ...: the first that did not, made
    here. mkdir without exist_ok is atomic, so of two runs racing for one name only one gets it."""
    wanted.parent.mkdir(parents=True, exist_ok=True)
    for number in itertools.count(1):
        folder = wanted if number == 1 else wanted.with_name(f"{wanted.name}-{number}")
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue


class Trainer:
    """One GAN training run: data, models, optimizers and outputs in a run folder (sample
    grids, metrics.jsonl and its plot, TensorBoard, checkpoint.pt, generator_ema.safetensors).

        Trainer(TrainConfig(data="ring8", steps=500), out="runs/ring8").run()

    What `ganfast train` runs; settings as in TrainConfig, `overrides` replacing its fields."""

    def __init__(self, config: TrainConfig | None = None, out: str | Path | None = None,
                 resume: bool = False, log=print, given: set | None = None, **overrides):
        """given: the names of the settings the caller chose (the command line passes the flags
        typed); by default those of `config` that differ from TrainConfig()'s, and `overrides`.
        Resuming, they are checked against the saved run's settings."""
        config = config or TrainConfig()
        typed = given is not None  # (inferred, `given` holds the values a saved run filled in)
        if given is None:
            defaults = TrainConfig()
            given = {name for name in TrainConfig.__dataclass_fields__
                     if getattr(config, name) != getattr(defaults, name)}
        for key, value in overrides.items():
            setattr(config, key, value)
        given = set(given) | set(overrides)
        self.out = Path(out) if out else default_run_folder(config.data)
        # A default folder is claimed when it is made (run()): another run may take its name
        # until then, and this one then takes the next (make_new_folder).
        self.out_is_default = not out and not resume
        self.log = log
        self.files_beside = []  # the user's files in a new run's --out (_claim_run_folder)
        self.data_moved_from = None  # the saved --data a resumed run found gone (_resumed_config)
        saved = None if self.out_is_default else self._claim_run_folder(resume)
        # The step of a finished run taken further (--resume with a larger --steps): its last
        # grid, samples_final.png, is written anew by this run (run() draws that step's again)
        self.extends_finished_at = None
        if saved is not None:  # the stored settings win; how the run runs may change
            saved_config = _saved_config(saved)
            if saved_config.steps == int(saved["step"]):
                self.extends_finished_at = int(saved["step"])
            config = self._resumed_config(config, given, saved_config, int(saved["step"]),
                                          saved.get("data_shape"))
        self.rank, self.world, self.device = _distributed_setup(config.device)
        self.writer = self.rank == 0
        if self.data_moved_from:
            self._say(f"--data {config.data}: the data of {self.out}, moved from "
                      f"{self.data_moved_from}")
        if self.files_beside:
            self._say(f"note: --out {self.out} also holds {some_names(self.files_beside)}: the "
                      "run writes beside them")
        _check_dependencies(config, given, self._say)
        self.config = config
        self._check_names()
        self._check_numbers()
        if typed:
            self._check_flags_take_effect(given)
        self.dataset = datasets.load(config.data, config.image_size, self._say)
        # The checkpoint keeps the data's absolute path: one relative to the folder the run was
        # started in would not be found by `--resume` from another folder (_effective compares
        # the paths themselves; data moved since are named anew: _resumed_config).
        config.data = _absolute_data_path(config.data)
        self._check_image_size()
        trained_on = saved and saved.get("data_shape")
        if trained_on and list(self.dataset.x.shape[1:]) != trained_on:
            raise TrainingError(f"--resume: {config.data} now gives samples of shape "
                                f"{list(self.dataset.x.shape[1:])}, but {self.out} was trained on "
                                f"{trained_on}; resume with the data it was trained on")
        if config.conditional and self.dataset.labels is None:
            raise TrainingError(f"--conditional needs labelled data: {config.data} has no classes "
                                "(use digits, or a folder with one subfolder per class)")
        if config.conditional and self.dataset.num_classes == 1 and saved is None:
            # (an image folder holding a single subfolder, `photos/train/`): AC-GAN with one
            # class has nothing to condition on, a run without --conditional in disguise
            raise TrainingError(f"--conditional needs at least 2 classes: {config.data} has one, its "
                                f"subfolder {self.dataset.class_names[0]}/; put each class's images "
                                "in a subfolder of its own, or leave out --conditional")
        for key, value in _preset(self.dataset).items():
            if key == "penalty_weight" and config.penalty not in ("r1", "r2"):
                continue
            if getattr(config, key) is None:
                setattr(config, key, value)
        samples = len(self.dataset.x)
        if config.batch_size > samples:
            # Batches are drawn with replacement (_batch), so one larger than the data works;
            # said, not capped: the batch size is the run's setting (its learning rates and
            # penalty weights are tuned to it), and a smaller one is the user's to choose.
            self._say(f"note: the batch size {config.batch_size} (--batch-size) is more than the "
                      f"{samples} samples of {config.data}: batches are drawn at random with "
                      f"replacement, so each holds every sample {config.batch_size / samples:.1f} "
                      "times on average")
        if self.device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
            # These models' ops are small: splitting each across threads saves little on an idle
            # machine and costs up to 10x on a busy one (measured on 2 shared cores). Set
            # OMP_NUM_THREADS to choose otherwise.
            torch.set_num_threads(1)
        if config.penalty_weight is None:
            config.penalty_weight = objectives.default_penalty_weight(config.penalty)
        if config.penalty_every is None:
            config.penalty_every = objectives.default_penalty_every(config.penalty)
        # Derived from the length unless set, and not stored: a resumed run that grows derives
        # them from its new length.
        self.log_every = config.log_every or max(1, config.steps // 100)
        self.sample_every = config.sample_every or max(1, config.steps // 5)
        self.eval_every = config.eval_every or max(1, config.steps // 5)
        self.backend = self._choose_backend(config.backend, "backend" in given)
        self._build(saved)

    # -- setup -----------------------------------------------------------------------------
    def _choose_backend(self, backend: str, typed: bool) -> str:
        """The backend of ganfast's ops in this run (spectral norm and the up-convs read the
        global choice, which run() and generate() set to it for their duration; the penalty
        gets it too), refusing one that cannot run on the run's device. --backend auto left out
        (a run saved with it too) takes the global choice, as backend="auto" does in every
        ganfast call: GANFAST_BACKEND, or a Python caller's ganfast.set_backend() (setting
        "auto" hid GANFAST_BACKEND=torch on a GPU). The global choice is left as it was: one
        run's backend is not the next one's default."""
        if backend != "auto" or typed:
            source, hint = f"--backend {backend}", "use auto or torch"
        else:
            try:
                backend = ganfast.backends.get_backend()
            except ValueError as err:  # a misspelt GANFAST_BACKEND
                raise TrainingError(f"{err} (or pass --backend)") from None
            source = f"the global backend {backend!r} (GANFAST_BACKEND or ganfast.set_backend)"
            hint = "unset GANFAST_BACKEND, or pass --backend auto or torch"
        if backend not in ("auto", "torch"):
            why_not = ganfast.backends.unavailable_reason(backend, self.device)
            if why_not:
                raise TrainingError(f"{source}: {why_not} ({hint})")
        return backend

    def _say(self, text: str) -> None:
        if self.writer:
            self.log(text)

    def _check_names(self) -> None:
        c = self.config
        try:
            objectives.check_choice("loss", c.loss, objectives.LOSSES)
            objectives.check_choice("penalty", c.penalty, objectives.PENALTIES)
            objectives.check_choice("model", c.model, model_zoo.MODELS)
            objectives.check_choice("amp", c.amp, AMP_MODES)
            objectives.check_choice("backend", c.backend, ("auto", "torch", "triton", "cuda"))
        except ValueError as err:
            raise TrainingError(str(err)) from None
        for name in ("n_critic", "penalty_every"):
            value = getattr(c, name)
            if value is not None and value < 1:
                raise TrainingError(f"--{name.replace('_', '-')} must be >= 1, got {value}")

    def _check_numbers(self) -> None:
        c = self.config
        at_least_one = ("steps", "batch_size", "width", "image_size", "log_every", "sample_every",
                        "eval_every")
        for name in at_least_one:
            value = getattr(c, name)
            if value is not None and value < 1:
                raise TrainingError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
        if c.image_size is not None and c.image_size < model_zoo.MIN_IMAGE_SIZE:
            raise TrainingError(f"--image-size must be >= {model_zoo.MIN_IMAGE_SIZE} (the "
                                f"smallest side the models build), got {c.image_size}")
        # (inf passes `> 0`, and NaN fails it only by accident: both are refused by name)
        for name in ("lr_g", "lr_d"):
            value = getattr(c, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise TrainingError(f"--{name.replace('_', '-')} must be > 0 and finite, got {value}")
        for name in ("penalty_weight", "ac_weight"):
            value = getattr(c, name)
            if value is not None and not (value >= 0 and math.isfinite(value)):
                raise TrainingError(f"--{name.replace('_', '-')} must be >= 0 and finite, got {value}")
        if not 0 <= c.seed < 2**32:  # the sampler's seed (seed * 1000 + rank) must fit 64 bits
            raise TrainingError(f"--seed must be in [0, 2**32), got {c.seed}")
        if not 0 <= c.ema < 1:
            raise TrainingError(f"--ema must be in [0, 1) (a decay; 0: no averaging), got {c.ema}")

    def _check_flags_take_effect(self, given: set) -> None:
        """Refuse a flag typed that the other settings make do nothing (a weight of no penalty,
        of no class loss): silently ignored, it would look as if it had been used. Only for
        settings named by the caller (`given` passed, as the command line does): a config
        rebuilt from a saved run holds the values it filled in for them."""
        c = self.config
        if c.penalty == "none":
            for name in ("penalty_weight", "penalty_every"):
                if name in given:
                    raise TrainingError(f"{_flag(name)} has no effect with --penalty none: leave "
                                        "it out, or choose a --penalty (wgan-gp, r1, r2)")
        if "ac_weight" in given and not c.conditional:
            raise TrainingError("--ac-weight weighs the class loss of --conditional (AC-GAN), and "
                                "this run is not conditional: leave it out, or add --conditional")

    def _check_image_size(self) -> None:
        """Images smaller than the models take (data of its own size below it: --image-size
        was checked before the data were read)."""
        if not self.dataset.is_image:
            return
        h, w = self.dataset.x.shape[-2:]
        if min(h, w) < model_zoo.MIN_IMAGE_SIZE:
            raise TrainingError(f"--data {self.config.data}: the images are {w}x{h}, and the models "
                                f"need at least {model_zoo.MIN_IMAGE_SIZE}x{model_zoo.MIN_IMAGE_SIZE}: "
                                f"pass --image-size {model_zoo.MIN_IMAGE_SIZE} (or more) to resize them")

    def _claim_run_folder(self, resume: bool):
        """The saved state when resuming; refuses a folder that holds another run, or files
        named like a run's outputs; the user's other files stay (files_beside). The folder is
        made when the run starts (run()), so a run refused here leaves nothing behind."""
        if self.out.exists() and not self.out.is_dir():
            raise TrainingError(f"--out {self.out} is a file, not a run folder")
        has_checkpoint = (self.out / checkpoint.CHECKPOINT).exists()
        if resume:
            if not has_checkpoint:
                raise TrainingError(f"--resume: {self.out} holds no {checkpoint.CHECKPOINT} to resume from")
            try:
                return checkpoint.load(self.out)
            except Exception as err:  # torch.load raises many kinds for a damaged file
                raise TrainingError(f"--resume: {self.out / checkpoint.CHECKPOINT} is not a "
                                    f"readable checkpoint ({type(err).__name__}: {err})") from None
        if has_checkpoint:
            raise TrainingError(f"{self.out} already holds a run: continue it with --resume, or "
                                "choose another --out (nothing was overwritten)")
        if (self.out / METRICS_FILE).exists():
            raise TrainingError(f"{self.out} holds the {METRICS_FILE} of a run that left no "
                                f"{checkpoint.CHECKPOINT} to resume from: delete the folder or "
                                "choose another --out (nothing was overwritten)")
        # Any other file is the user's. One named like an output (metrics.png, samples_*.png)
        # would be overwritten: refused. Others stay, the run beside them (said, in __init__):
        # `ganfast train --out runs/x > runs/x/train.log` makes its log before the run starts.
        # Hidden files (.gitkeep) are left out: the run writes none but its own temp files.
        try:
            self.files_beside = sorted(p.name for p in self.out.iterdir()
                                       if not p.name.startswith(".")) if self.out.is_dir() else []
        except OSError as err:
            raise TrainingError(f"--out {self.out}: cannot read the folder ({err})") from None
        clashing = [name for name in self.files_beside if checkpoint.is_run_output(name)]
        if clashing:
            raise TrainingError(f"--out {self.out} holds files named like a run's outputs "
                                f"({some_names(clashing)}) and no ganfast run: choose a new or "
                                "empty folder (nothing was written)")
        return None

    def _resumed_config(self, config: TrainConfig, given: set, saved: TrainConfig,
                        step: int, data_shape: list | None) -> TrainConfig:
        """The saved settings with the changes a resumed run may make (RESUMABLE_CHANGES, from
        the settings `given`); any other given setting whose effective value differs from the
        saved run's is an error, not silently dropped (--width 32 matches a dcgan saved with the
        default width: the same run)."""
        given = set(given)
        if self._data_moved(saved.data):
            # The files are gone from where the run read them (a project folder moved or
            # copied to another machine): --data says where they are now, the samples' shape
            # checked against the run's once they are read.
            if "data" not in given:
                raise TrainingError(
                    f"--resume: the data {self.out} was trained on, {saved.data!r}, is no longer "
                    "there; pass --data with where they are now")
            if config.data not in datasets.BUILT_IN:
                self.data_moved_from = saved.data  # said once the process knows its rank
                saved.data = config.data
                given.discard("data")
        asked = copy.copy(saved)  # the saved run with the flags typed: resolved as the saved one
        for name in given:
            setattr(asked, name, getattr(config, name))
        conflicts = [f"{_flag(name)} {getattr(config, name)!r} (saved: "
                     f"{saved.data if name == 'data' else _effective(saved, name, data_shape)!r})"
                     for name in sorted(given, key=list(TrainConfig.__dataclass_fields__).index)
                     if name not in RESUMABLE_CHANGES
                     and _effective(asked, name, data_shape) != _effective(saved, name, data_shape)]
        if conflicts:
            raise TrainingError(f"--resume continues {self.out} with its saved settings, but "
                                f"these differ: {', '.join(conflicts)}; leave them out (a resumed "
                                f"run may change only {', '.join(map(_flag, RESUMABLE_CHANGES))})")
        for name in given & set(RESUMABLE_CHANGES):
            setattr(saved, name, getattr(config, name))
        if saved.steps < step:
            raise TrainingError(f"--steps {saved.steps} is below the step {step} that {self.out} "
                                "already reached")
        return saved

    @staticmethod
    def _data_moved(data: str) -> bool:
        """A saved --data path that no longer names a file or folder (a checkpoint of before
        they were stored absolute holds one relative to where that run started)."""
        return data not in datasets.BUILT_IN and not Path(data).expanduser().exists()

    def _make_run_folder(self) -> None:
        """A default folder is made new (runs/<data>-<time>-2 when two runs start in the same
        second: a shared folder would interleave their metrics.jsonl); an --out folder may
        exist, empty or holding the run to resume (_claim_run_folder checked which)."""
        try:
            if self.out_is_default:
                self.out = make_new_folder(self.out)
            else:
                self.out.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            if self.out_is_default:
                raise TrainingError(f"cannot create the run folder {self.out} ({err}); choose "
                                    "another with --out") from None
            raise TrainingError(f"--out {self.out}: cannot create the run folder ({err})") from None

    def _build(self, saved) -> None:
        c, ds = self.config, self.dataset
        torch.manual_seed(c.seed)  # the same initial weights in every process
        self.sampler = torch.Generator().manual_seed(c.seed * 1000 + self.rank)
        self.num_classes = ds.num_classes if c.conditional else 0
        try:
            self.G, self.D = model_zoo.build(c.model, tuple(ds.x.shape[1:]), self.num_classes, c.width)
        except ValueError as err:
            raise TrainingError(str(err)) from None
        self.G, self.D = self.G.to(self.device), self.D.to(self.device)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        betas = (0.0, 0.9) if c.loss == "wasserstein" else (0.5, 0.999)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=c.lr_g, betas=betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=c.lr_d, betas=betas)
        fp16 = c.amp == "fp16"
        if c.amp != "none" and self.device.type == "cpu":
            self._say(f"note: --amp {c.amp} on CPU is usually slower than fp32 (6 to 14x in a "
                      "digits run on a 2-core AVX2 machine): CPUs without bf16/fp16 arithmetic "
                      "emulate it")
        self.scaler_d = torch.amp.GradScaler(self.device.type, enabled=fp16)
        self.scaler_g = torch.amp.GradScaler(self.device.type, enabled=fp16)
        self.step = 0
        self.resumed_from = None
        self.pending = []  # a resumed run's (step, loss_d, loss_g) since its last metrics row
        self.data_x = ds.x.to(self.device)
        self.data_y = ds.labels.to(self.device) if ds.labels is not None else None
        if saved is not None:
            self._restore(saved)
        # Training copies: DDP syncs the gradients of the steps that update them; the penalty's
        # inner gradient runs on the plain D (double backward through DDP is not supported; its
        # gradients join the same backward, so they are reduced with the loss's).
        self.G_train, self.D_train = self.G, self.D
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.G_train = DDP(self.G, device_ids=ids)
            self.D_train = DDP(self.D, device_ids=ids)
        if c.compile:
            self.G_train, self.D_train = torch.compile(self.G_train), torch.compile(self.D_train)
        self.evaluator, self.eval_samples = quality.for_dataset(ds, self._say)
        weights = c.inception_weights or os.environ.get("GANFAST_INCEPTION_WEIGHTS")
        if weights and ds.x.dim() == 4:
            source = "--inception-weights" if c.inception_weights else "$GANFAST_INCEPTION_WEIGHTS"
            net = _fid_inception(c.inception_weights)
            try:  # (weights that load can still give the training images non-finite features)
                self.evaluator = quality.InceptionFID(net, ds.x, self.evaluator, self.device)
            except ValueError as err:
                raise TrainingError(f"{source} {weights}: {err}") from None
            self.eval_samples = self.eval_samples or quality.DIGITS_SAMPLES
        elif c.inception_weights:
            self._say(f"note: --inception-weights measures images; {c.data} holds points, so "
                      "the run reports its built-in measures only")
        if self.evaluator is None and c.eval_every is not None:
            # (else a flag taken without a word and without effect: no measure, and the rows
            # of losses come by --log-every)
            fid = ", and --inception-weights adds the FID of images" if ds.is_image else ""
            self._say(f"note: --eval-every {c.eval_every}: {c.data} has no built-in quality "
                      f"measure (digits, ring8 and grid25 have){fid}; this run logs losses only")
        # The sample grid: 8x8 samples, or for a conditional run the classes in order, one row
        # of 10 per class up to 10 classes (monitor.class_grid: bounded for more); from the
        # same latents at every step
        fixed = torch.Generator().manual_seed(12345)
        if self.num_classes:
            labels, self.grid_rows, self.grid_cols = class_grid(self.num_classes)
            self.fixed_y = labels.to(self.device)
            if self.num_classes > GRID_MAX_CLASSES:
                self._say(f"note: the sample grids show the first {GRID_MAX_CLASSES} of the "
                          f"{self.num_classes} classes")
        else:
            labels, self.grid_rows, self.grid_cols, self.fixed_y = None, 8, 8, None
        count = len(labels) if labels is not None else self.grid_rows * self.grid_cols
        self.fixed_z = torch.randn(count, self.G.z_dim, generator=fixed).to(self.device)
        # borders that stand out against the data's backgrounds (and so the samples' once
        # trained), the same in every grid of the run
        self.grid_border = border_level(ds.x) if ds.is_image else None
        if saved is not None:  # last: building the pieces above may draw from the global RNG
            checkpoint.restore_rng(self._saved_rng(saved), self.sampler)

    def _saved_rng(self, saved) -> dict:
        """This process's part of the checkpoint's random state (checkpoint.all_ranks_rng_state
        wrote every process's, or one process's alone)."""
        rng = saved["rng"]
        if "per_rank" in rng:
            if len(rng["per_rank"]) != self.world:
                raise TrainingError(f"--resume: {self.out} was written by {len(rng['per_rank'])} "
                                    f"process(es) and this run has {self.world}: resume with the "
                                    "same number, so each continues its own data and latent stream")
            return rng["per_rank"][self.rank]
        if self.world > 1:
            # Written by several processes before checkpoints kept each one's state (or by
            # one): the global RNGs continue, each process's sampler starts a new stream
            self._say(f"note: {self.out} holds one process's random state; each process's data "
                      "and latent stream starts afresh (the run goes on, not exactly as an "
                      "uninterrupted one would)")
            self.sampler.manual_seed(self.config.seed * 1000 + self.rank + 1_000_003 * self.step)
            return {**rng, "sampler": self.sampler.get_state()}
        return rng

    def _restore(self, saved) -> None:
        try:
            self.G.load_state_dict(saved["G"])
            self.D.load_state_dict(saved["D"])
            self.G_ema.load_state_dict(saved["G_ema"])
            self.opt_g.load_state_dict(saved["opt_g"])
            self.opt_d.load_state_dict(saved["opt_d"])
            self.scaler_d.load_state_dict(saved["scaler_d"])
            self.scaler_g.load_state_dict(saved["scaler_g"])
            self.step = int(saved["step"])
            # (checkpoints written before they kept these have none: the row restarts there)
            self.pending = [(int(step), *loss.float().to(self.device).unbind())
                            for step, loss in zip(saved.get("pending_steps", []),
                                                  saved.get("pending_losses", []), strict=True)]
        except (KeyError, RuntimeError, ValueError, TypeError) as err:
            raise TrainingError(f"--resume: {self.out / checkpoint.CHECKPOINT} does not fit the "
                                f"models this run builds ({type(err).__name__}: {err})") from None
        self.resumed_from = self.step
        # A run resumed at its last step only writes its final outputs again: said, or a
        # `--resume` without the larger --steps meant would look like training that took no time
        complete = (" (every step is trained: pass a larger --steps to train on)"
                    if self.step >= self.config.steps else "")
        self._say(f"resuming {self.out} at step {self.step} of {self.config.steps}{complete}")

    # -- one iteration ----------------------------------------------------------------------
    def _autocast(self):
        if self.config.amp == "none":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.config.amp == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def _batch(self):
        idx = torch.randint(len(self.data_x), (self.config.batch_size,), generator=self.sampler)
        idx = idx.to(self.device)
        return self.data_x[idx], (self.data_y[idx] if self.data_y is not None else None)

    def _latents(self, n: int):
        z = torch.randn(n, self.G.z_dim, generator=self.sampler).to(self.device)
        y = (torch.randint(self.num_classes, (n,), generator=self.sampler).to(self.device)
             if self.num_classes else None)
        return z, y

    def _discriminator_step(self, d_step: int):
        c = self.config
        real, real_y = self._batch()
        z, fake_y = self._latents(len(real))
        with torch.no_grad(), self._autocast():
            fake = self.G(z, fake_y).to(real.dtype)  # autocast's bf16/fp16 output in the reals'
            # dtype: one batch for D below (under autocast it casts as it needs) and the penalty
        with self._autocast():
            # One forward for both halves: one DDP synchronisation, and D has no batch norm.
            scores, logits = self.D_train(torch.cat([real, fake]), with_classes=True)
            real_scores, fake_scores = scores.chunk(2)
            real_logits, fake_logits = logits.chunk(2) if logits is not None else (None, None)
            loss = objectives.discriminator_loss(c.loss, real_scores, fake_scores)
            if self.num_classes:
                loss = loss + c.ac_weight * (objectives.auxiliary_classifier_loss(real_logits, real_y)
                                             + objectives.auxiliary_classifier_loss(fake_logits, fake_y))
            total = loss
            if c.penalty != "none" and d_step % c.penalty_every == 0:
                penalty = objectives.penalty(c.penalty, self.D, real, fake, c.penalty_weight,
                                             c.backend, self.scaler_d if c.amp == "fp16" else None)
                total = loss + c.penalty_every * penalty
        self.opt_d.zero_grad(set_to_none=True)
        self.scaler_d.scale(total).backward()
        self.scaler_d.step(self.opt_d)
        self.scaler_d.update()
        return loss.detach()

    def _generator_step(self):
        c = self.config
        z, fake_y = self._latents(c.batch_size)
        self.D.requires_grad_(False)  # no weight gradients for D here (and no DDP sync for it)
        with self._autocast():
            scores, logits = self.D(self.G_train(z, fake_y), with_classes=True)
            loss = objectives.generator_loss(c.loss, scores)
            if self.num_classes:
                loss = loss + c.ac_weight * objectives.auxiliary_classifier_loss(logits, fake_y)
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler_g.scale(loss).backward()
        self.scaler_g.step(self.opt_g)
        self.scaler_g.update()
        self.D.requires_grad_(True)
        return loss.detach()

    @torch.no_grad()
    def _update_ema(self) -> None:
        # Warm-up as in StyleGAN's ema_rampup: early weights are not averaged over a long past.
        decay = min(self.config.ema, (1 + self.step) / (10 + self.step))
        for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters(), strict=True):
            p_ema.lerp_(p, 1 - decay)
        for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers(), strict=True):
            b_ema.copy_(b)

    # -- outputs ----------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, n: int, generator: torch.Generator, labels=None, batch: int = 500):
        """n samples of the EMA generator on the CPU (latents from `generator`; labels [n] for a
        conditional model), made `batch` at a time."""
        out = []
        with ganfast.backends.backend_scope(self.backend):
            for start in range(0, n, batch):
                m = min(batch, n - start)
                z = torch.randn(m, self.G.z_dim, generator=generator).to(self.device)
                y = labels[start:start + m].to(self.device) if labels is not None else None
                out.append(self.G_ema(z, y).float().cpu())
        return torch.cat(out)

    def evaluate(self) -> dict:
        """The quality measures of the data (modes covered, fd_digits, ...; {} when it has none)
        on fresh EMA samples, each process measuring its share."""
        if self.evaluator is None:
            return {}
        n = self.eval_samples // self.world
        gen = torch.Generator().manual_seed(777 + self.rank)
        labels = torch.randint(self.num_classes, (n,), generator=gen) if self.num_classes else None
        samples = self.generate(n, gen, labels)
        self._check_finite_samples(samples)
        return self.evaluator.measure(samples, labels)

    def _on_every_process(self, holds: torch.Tensor) -> bool:
        """Whether a 0-dim bool holds on every process (one sync; a collective when there are
        several): decisions to stop are taken together, or the others would wait in the next
        collective for the process that stopped."""
        holds = holds.float().reshape(1).to(self.device)
        if self.world > 1:
            dist.all_reduce(holds, op=dist.ReduceOp.MIN)
        return bool(holds.item())

    def _check_finite_samples(self, samples: torch.Tensor) -> None:
        """Raise NonFiniteLoss if any process's samples hold NaN/Inf, which the metrics cannot
        measure: finite weights can still overflow (at lr 1e30 they are 1e30 after one step).
        Decided together, as the measures that follow are collectives."""
        if not self._on_every_process(torch.isfinite(samples).all()):
            raise NonFiniteLoss(f"step {self.step}: the generator's samples are no longer finite; "
                                f"stopping (last checkpoint kept in {self.out}; try a lower "
                                "learning rate or a penalty)")

    def save_samples(self, name: str) -> None:
        """The EMA generator's picture as run folder/name: an image grid from the fixed latents
        (fixed_z, fixed_y: grid_rows x grid_cols, borders of grid_border), or a scatter of points
        over a sample of the data and the modes (the writing process only)."""
        if not self.writer:
            return
        if self.dataset.is_image:
            # by batches, as generate(): up to GRID_MAX_CLASSES samples for a conditional run
            fixed_y = self.fixed_y.split(GRID_BATCH) if self.fixed_y is not None else None
            with torch.no_grad():
                images = torch.cat([self.G_ema(z, fixed_y[i] if fixed_y else None) for i, z
                                    in enumerate(self.fixed_z.split(GRID_BATCH))])
            save_image_grid(images, self.grid_rows, self.out / name,
                            scale=max(1, 64 // images.shape[-1]), cols=self.grid_cols,
                            border=self.grid_border)
        else:
            labels = torch.arange(2000) % self.num_classes if self.num_classes else None
            points = self.generate(2000, torch.Generator().manual_seed(4242), labels)
            data = self.dataset.x  # 2,000 of the data beneath, the same at every step
            shown = torch.randperm(len(data), generator=torch.Generator().manual_seed(4243))[:2000]
            save_points(points, self.dataset.centers, self.out / name, f"step {self.step}",
                        data=data[shown])

    def save_checkpoint(self, pending=()) -> None:
        """checkpoint.pt (everything --resume needs) and generator_ema.safetensors, each written
        atomically (the writing process only), never over the last one with weights gone
        non-finite (raises NonFiniteLoss instead). pending: the losses of the steps since the
        last metrics row (averaged over the processes), kept so that a resumed run logs the
        rows an uninterrupted one would."""
        self._check_finite_weights()
        rng = checkpoint.all_ranks_rng_state(self.sampler, self.world)  # (a collective)
        losses = torch.stack([torch.stack([d, g]) for _, d, g in pending]).double() \
            if pending else torch.zeros(0, 2, dtype=torch.float64, device=self.device)
        if self.world > 1:
            dist.all_reduce(losses)
            losses /= self.world
        if not self.writer:
            return
        state = {"G": self.G.state_dict(), "D": self.D.state_dict(), "G_ema": self.G_ema.state_dict(),
                 "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                 "scaler_d": self.scaler_d.state_dict(), "scaler_g": self.scaler_g.state_dict(),
                 "step": self.step, "config": self.config.to_dict(),
                 "data_shape": list(self.dataset.x.shape[1:]),
                 "rng": rng, "pending_steps": torch.tensor([s for s, _, _ in pending]),
                 "pending_losses": losses.cpu()}
        checkpoint.save(self.out, state, self.G_ema.state_dict())

    def _check_finite_weights(self) -> None:
        """Raise NonFiniteLoss if G, D or the EMA generator holds NaN/Inf (in weights or float
        buffers: batch-norm statistics). Losses are checked at log steps only (one sync per
        interval), but checkpoints and evaluations come at their own steps: a checkpoint saved
        between a loss going NaN and its log step would replace the last good one with NaN
        weights, and an evaluation of NaN samples fails inside the metrics. One pass over the
        weights and one sync per call. The processes decide together: DDP keeps the weights
        equal but not the batch-norm statistics, which each process updates from its own
        batches, and a process that stopped alone would leave the others in a collective."""
        weights = [t.detach() for model in (self.G, self.D, self.G_ema)
                   for t in itertools.chain(model.parameters(), model.buffers())
                   if t.is_floating_point()]
        finite = torch.stack([torch.isfinite(w).all() for w in weights]).all() if weights \
            else torch.tensor(True)
        if not self._on_every_process(finite):
            raise NonFiniteLoss(f"step {self.step}: the weights are no longer finite; stopping "
                                f"(last checkpoint kept in {self.out}; try a lower learning rate "
                                "or a penalty)")

    def _flush(self, monitor: Monitor, pending: list, started: float, started_step: int) -> None:
        """Log the mean losses since the last row; stop on the first non-finite one."""
        if not pending:
            return
        steps = [s for s, _, _ in pending]
        losses = torch.stack([torch.stack([d, g]) for _, d, g in pending]).float()
        if self.world > 1:
            dist.all_reduce(losses)
            losses /= self.world
        values = losses.cpu().tolist()
        for step, (loss_d, loss_g) in zip(steps, values, strict=True):
            if not (math.isfinite(loss_d) and math.isfinite(loss_g)):
                name, value = ("loss_d", loss_d) if not math.isfinite(loss_d) else ("loss_g", loss_g)
                raise NonFiniteLoss(f"step {step}: {name} is {value}; stopping (last checkpoint "
                                    f"kept in {self.out}; try a lower learning rate or a penalty)")
        mean_d = sum(v[0] for v in values) / len(values)
        mean_g = sum(v[1] for v in values) / len(values)
        rate = (self.step - started_step) / max(time.perf_counter() - started, 1e-9)
        row = {"step": self.step, "loss_d": mean_d, "loss_g": mean_g, "steps_per_s": rate}
        pending.clear()
        if self.step % self.eval_every == 0 or self.step == self.config.steps:
            self._check_finite_weights()  # (the losses were of the weights before this step)
            row.update(self.evaluate())
        monitor.log(row)
        monitor.advance(0, {k: v for k, v in row.items() if k not in ("step", "steps_per_s")})

    def run(self) -> dict:
        """Train to config.steps; returns the last metrics row (this run's: kept in memory, not
        read back from metrics.jsonl). Ctrl-C or SIGTERM stops at the end of the iteration under
        way and saves a checkpoint there, or after the last step once the final checkpoint is
        written (Stopped, a KeyboardInterrupt, is then raised to the caller); a second Ctrl-C
        stops at once, the last checkpoint kept."""
        c = self.config
        if self.writer:
            self._make_run_folder()
        # Signals are taken from the first checkpoint to the last: one that arrived while the
        # final outputs were written would otherwise leave the checkpoint steps behind the rows.
        with _StopAtBoundary() as stop, ganfast.backends.backend_scope(self.backend):
            if self.step == 0:
                self._say(f"training {type(self.G).__name__} and {type(self.D).__name__} on "
                          f"{c.data} {list(self.dataset.x.shape)}, loss {c.loss}, penalty "
                          f"{c.penalty}, {c.steps} steps, batch {c.batch_size} x {self.world} "
                          f"process(es), device {self.device}, backend {self.backend}, "
                          f"writing {self.out}")
                self.save_checkpoint()  # first: a run stopped at any point can be resumed
            monitor = Monitor(self.out, c.steps, self.step, self.writer, c.tensorboard,
                              resumed_from=self.resumed_from)
            try:
                if self.step == 0:
                    monitor.log({"step": 0, **self.evaluate()})
                    self.save_samples("samples_0000000.png")
                elif self.extends_finished_at == self.step < c.steps:
                    # (the restored EMA generator draws the same grid from the fixed latents)
                    self.save_samples(f"samples_{self.step:07d}.png")
                self._loop(monitor, stop)
                self._save_final_outputs(monitor)
            finally:
                monitor.close()
            if stop.requested:  # after the last step: the run is complete, and stops as asked
                monitor.message(f"{stop.requested} after the last step: the run is complete, its "
                                f"final checkpoint (step {self.step}) saved in {self.out}")
                raise Stopped(stop.signum)
        return monitor.last_row

    def _save_final_outputs(self, monitor: Monitor) -> None:
        """The last sample grid and checkpoint; a second Ctrl-C while they are written stops at
        once, as in the loop."""
        try:
            self.save_samples("samples_final.png")
            self.save_checkpoint()
        except KeyboardInterrupt:
            monitor.message(f"stopped while writing the final checkpoint: the last checkpoint in "
                            f"{self.out} is kept; continue with --resume")
            raise

    def _loop(self, monitor: Monitor, stop: _StopAtBoundary) -> None:
        c = self.config
        started, started_step, pending = time.perf_counter(), self.step, self.pending
        self.pending = []
        if pending and self.step >= c.steps:  # resumed at its last step: the row it owes
            self._flush(monitor, pending, started, started_step)
        try:
            while self.step < c.steps:
                for k in range(c.n_critic):
                    loss_d = self._discriminator_step(self.step * c.n_critic + k)
                loss_g = self._generator_step()
                self._update_ema()
                self.step += 1
                pending.append((self.step, loss_d, loss_g))
                monitor.advance(1, {})
                if self.step % self.log_every == 0 or self.step == c.steps or (
                        self.evaluator is not None and self.step % self.eval_every == 0):
                    # (an evaluation comes with a row; without a measure, rows by --log-every)
                    self._flush(monitor, pending, started, started_step)
                if self.step % self.sample_every == 0 and self.step != c.steps:
                    self.save_samples(f"samples_{self.step:07d}.png")
                    self.save_checkpoint(pending)
                # (after the last step the run is complete: a signal that came during its
                # evaluation waits for the final outputs, in run())
                if self.step < c.steps and self._stop_requested(stop,
                                                                self.step % self.log_every == 0):
                    raise _Interrupted
        except _Interrupted:
            # No partial row: the losses since the last row go into the checkpoint, and the
            # resumed run logs the row an uninterrupted one would
            self.save_checkpoint(pending)
            monitor.message(f"{stop.requested} at step {self.step}: checkpoint saved in "
                            f"{self.out}; continue with --resume")
            raise Stopped(stop.signum) from None
        except KeyboardInterrupt:
            monitor.message(f"stopped during step {self.step + 1}: the last checkpoint in "
                            f"{self.out} is kept; continue with --resume")
            raise

    def _stop_requested(self, stop: _StopAtBoundary, at_log_step: bool) -> bool:
        """Whether any process got a stop signal: every process stops at the same step (a
        process that stopped alone would leave the others waiting in a collective). With
        several processes that is agreed at log steps only, which synchronize anyway: a
        collective and a host sync per step would cost a launch-bound loop its overlap."""
        if self.world == 1:
            return stop.requested is not None
        if not at_log_step:
            return False
        flag = torch.tensor([float(stop.requested is not None)], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item() and stop.requested is None:
            stop.requested = "stopped by another process"
        return bool(flag.item())

    def close(self) -> None:
        """Drop the DistributedDataParallel wrappers: call before destroying the process group.
        A DDP reducer that outlives its group can abort the process at exit (seen with gloo on
        torch 2.11: "terminate called without an active exception")."""
        self.G_train, self.D_train = self.G, self.D
        import gc

        gc.collect()


def train(**settings) -> dict:
    """Python shortcut: ganfast.train.train(data="ring8", steps=500, out="runs/x")."""
    out = settings.pop("out", None)
    resume = settings.pop("resume", False)
    return Trainer(TrainConfig(**settings), out=out, resume=resume).run()


__all__ = ["Trainer", "TrainConfig", "TrainingError", "NonFiniteLoss", "Stopped", "train"]
