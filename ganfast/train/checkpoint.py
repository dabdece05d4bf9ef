"""Checkpoints: everything a run needs to continue exactly, in one file loadable with
torch.load(weights_only=True); the generator's EMA weights also as safetensors when installed."""

from pathlib import Path

import torch

from .._files import write_atomically
from .monitor import METRICS_FILE, METRICS_PLOT, TENSORBOARD_FOLDER

CHECKPOINT = "checkpoint.pt"
GENERATOR_WEIGHTS = "generator_ema.safetensors"


def is_run_output(name: str) -> bool:
    """Whether a run writes a file or folder of this name into its folder."""
    return name in (CHECKPOINT, GENERATOR_WEIGHTS, METRICS_FILE, METRICS_PLOT, TENSORBOARD_FOLDER) \
        or (name.startswith("samples_") and name.endswith(".png"))


def is_run_folder(folder: Path) -> bool:
    """Whether a ganfast run wrote into this folder: it holds a checkpoint and metrics.jsonl
    (both written before the run's first picture; metrics.jsonl may hold no rows yet)."""
    return (folder / CHECKPOINT).is_file() and (folder / METRICS_FILE).is_file()


def save(out: Path, state: dict, generator_state: dict) -> Path:
    """Write the checkpoint (temp file, then rename: a crash never leaves half a file)."""
    path = out / CHECKPOINT
    write_atomically(path, lambda tmp: torch.save(state, tmp))
    from safetensors.torch import save_file  # the [train] extra; Trainer checks it is there

    weights = {k: v.detach().cpu().contiguous() for k, v in generator_state.items()}
    write_atomically(out / GENERATOR_WEIGHTS, lambda tmp: save_file(weights, str(tmp)))
    return path


def load(out: Path) -> dict:
    return torch.load(out / CHECKPOINT, map_location="cpu", weights_only=True)


def rng_state(generator: torch.Generator) -> dict:
    """This process's random state: torch's global RNG, the sampler's, and CUDA's."""
    state = {"torch": torch.get_rng_state(), "sampler": generator.get_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict, generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["sampler"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def all_ranks_rng_state(generator: torch.Generator, world: int) -> dict:
    """The random state to checkpoint: with several processes, every process's own (gathered:
    each draws its own data indices, latents and labels), under "per_rank"."""
    if world == 1:
        return rng_state(generator)
    import torch.distributed as dist

    states = [None] * world
    dist.all_gather_object(states, rng_state(generator))
    return {"per_rank": states}

