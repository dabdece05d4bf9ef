"""What a run shows and writes: progress bar, metrics.jsonl, TensorBoard, sample grids, plots."""

import json
import math
from pathlib import Path

import numpy as np
import torch

from .._files import write_atomically

# What a run writes into its folder besides the checkpoint files (checkpoint.py) and the
# sample grids samples_<step>.png / samples_final.png (trainer.py)
METRICS_FILE, METRICS_PLOT, TENSORBOARD_FOLDER = "metrics.jsonl", "metrics.png", "tensorboard"


def image_grid(images: torch.Tensor, rows: int) -> np.ndarray:
    """[N, C, H, W] in [-1, 1] -> uint8 [rows*(H+1)+1, cols*(W+1)+1, C] with 1-pixel borders."""
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    n, c, h, w = x.shape
    cols = math.ceil(n / rows)
    grid = torch.zeros(rows * (h + 1) + 1, cols * (w + 1) + 1, c, dtype=torch.uint8)
    for i in range(n):
        r, q = divmod(i, cols)
        grid[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + q * (w + 1):1 + q * (w + 1) + w] = x[i].permute(1, 2, 0)
    return grid.numpy()


def save_image_grid(images: torch.Tensor, rows: int, path: Path, scale: int = 1) -> None:
    from PIL import Image

    grid = image_grid(images, rows)
    picture = Image.fromarray(grid[..., 0] if grid.shape[2] == 1 else grid[..., :3])
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    write_atomically(path, lambda tmp: picture.save(tmp, format="PNG"))


def save_points(points: torch.Tensor, centers, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4))
    p = points.detach().float().cpu().numpy()
    ax.scatter(p[:, 0], p[:, 1], s=2, alpha=0.5, label="samples")
    if centers is not None:
        ax.scatter(centers[:, 0], centers[:, 1], s=30, c="red", marker="x", label="modes")
    ax.set_title(title)
    ax.set_aspect("equal")
    fig.tight_layout()
    write_atomically(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


def plot_metrics(rows: list, path: Path) -> None:
    """Losses on the left, each quality metric in its own panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric_names = [k for k in dict.fromkeys(k for r in rows for k in r)
                    if k not in ("step", "loss_d", "loss_g", "steps_per_s", "penalty")]
    fig, axes = plt.subplots(1, 1 + len(metric_names), figsize=(4 * (1 + len(metric_names)), 3.2))
    axes = np.atleast_1d(axes)
    for key in ("loss_d", "loss_g"):
        pts = [(r["step"], r[key]) for r in rows if key in r]
        if pts:  # a single row (--steps 1) is a point: a line alone would draw nothing
            axes[0].plot(*zip(*pts, strict=True), label=key, marker="o" if len(pts) == 1 else None)
    axes[0].set_xlabel("step")
    if axes[0].lines:
        axes[0].legend()
    axes[0].set_title("losses")
    for ax, key in zip(axes[1:], metric_names, strict=True):
        pts = [(r["step"], r[key]) for r in rows if key in r]
        ax.plot(*zip(*pts, strict=True), marker="o")
        if key.startswith(("fd_", "fid_")) and all(v > 0 for _, v in pts):
            ax.set_yscale("log")  # distances fall by orders of magnitude
        ax.set_xlabel("step")
        ax.set_title(key)
    fig.tight_layout()
    write_atomically(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


def read_metrics(path: Path) -> list:
    """The rows of metrics.jsonl; a line torn by a crash mid-write is left out."""
    if not path.exists():
        return []
    rows = []
    with open(path) as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and "step" in row:
                rows.append(row)
    return rows


def keep_rows_until(path: Path, step: int) -> list:
    """Rewrite metrics.jsonl (atomically) with the rows a run resumed at `step` keeps: those of
    steps up to it (none when it starts again from step 0, which logs step 0 again). Rows of
    steps after the checkpoint would repeat, and a torn last line would swallow the next row.
    Returns the rows kept."""
    rows = [r for r in read_metrics(path) if 0 < step and r["step"] <= step]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    write_atomically(path, lambda tmp: Path(tmp).write_text(text))
    return rows


class Monitor:
    """Progress bar and outputs; on processes other than the writer, the bar and files are off."""

    def __init__(self, out: Path, total_steps: int, start_step: int, writer: bool,
                 tensorboard: bool = True, resumed_from: int | None = None):
        """resumed_from: the checkpoint's step when resuming; what was logged after it is
        dropped (metrics.jsonl rows and TensorBoard events), as the run repeats those steps."""
        self.out, self.writer = out, writer
        self.metrics_path = out / METRICS_FILE
        self.bar = self.board = None
        # The last row this run logged (or kept, resuming), on the writer: what the run reports
        # at its end, not re-read from metrics.jsonl, which another program could append to.
        self.last_row = {}
        if not writer:
            return
        if resumed_from is not None:
            kept = keep_rows_until(self.metrics_path, resumed_from)
            self.last_row = kept[-1] if kept else {}
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional
                SummaryWriter = None
            if SummaryWriter is not None:
                purge = None if resumed_from is None else resumed_from + 1 if resumed_from else 0
                self.board = SummaryWriter(str(out / TENSORBOARD_FOLDER), purge_step=purge)

    def advance(self, steps: int, postfix: dict) -> None:
        """Move the bar by `steps`; a non-empty postfix replaces the figures shown beside it
        (an empty one keeps the last logged losses on screen)."""
        if self.bar is not None:
            if postfix:
                self.bar.set_postfix({k: f"{v:.3g}" for k, v in postfix.items()}, refresh=False)
            self.bar.update(steps)

    def log(self, row: dict) -> None:
        if not self.writer:
            return
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(row) + "\n")
        self.last_row = row
        if self.board is not None:
            for key, value in row.items():
                if key != "step":
                    self.board.add_scalar(key, value, row["step"])

    def message(self, text: str) -> None:
        if not self.writer:
            return
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.board is not None:
            self.board.close()
        if self.writer:
            rows = read_metrics(self.metrics_path)
            if rows:
                try:
                    plot_metrics(rows, self.out / METRICS_PLOT)
                except Exception as err:  # a picture is not worth the run's end: say, go on
                    self.message(f"metrics.png not written: {type(err).__name__}: {err}")
