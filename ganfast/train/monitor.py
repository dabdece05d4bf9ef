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

# The PNG mode of a sample grid by the images' channels
GRID_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
# A conditional run's grid holds about GRID_SAMPLES samples up to that many classes, one per
# class beyond, of the first GRID_MAX_CLASSES classes at most (class_grid).
GRID_SAMPLES, GRID_MAX_CLASSES = 100, 1024


def border_level(images: torch.Tensor) -> int:
    """255 (white) when the 1-pixel frame of [N, C, H, W] images in [-1, 1] is darker than mid-grey
    on average, else 0 (black): the grid border that contrasts with the images' backgrounds. A
    fixed black vanished against the black backgrounds of digits, the samples running into each
    other; a fixed mid-grey would against an untrained generator's mid-grey samples, and white
    against light photos.
    Brightness is the grey channel, or the luma (ITU-R BT.601) of the first three (colour)
    channels; an alpha channel does not count. Of a large set, about 1,000 images evenly spaced."""
    x = images.detach()
    x = x[::max(1, len(x) // 1000)]  # about 1,000 of a large data set are enough (a view)
    edges = (x[..., 0, :], x[..., -1, :], x[..., :, 0], x[..., :, -1])  # views: no copy of the data
    channel_means = sum(e.sum(dim=(0, 2), dtype=torch.float64) for e in edges).cpu() \
        / sum(e.shape[0] * e.shape[2] for e in edges)
    weights = torch.tensor([0.299, 0.587, 0.114] if x.shape[1] >= 3 else [1.0], dtype=torch.float64)
    luma = (channel_means[:len(weights)] * weights).sum().item()
    return 255 if luma < 0 else 0


def class_grid(num_classes: int) -> tuple:
    """(labels, rows, cols): the sample grid of a conditional run, labels in its row-major order.
    One row of 10 samples per class for up to 10 classes; with more, fewer samples of each
    (GRID_SAMPLES // classes, at least 1), the classes in order, each class's samples side by side
    and as many classes to a row as keep the grid about square (20 classes: 10 rows, each 5 of
    one class then 5 of the next; 100: 10x10, one sample each). A one-row-per-class grid of 30
    or 100 classes was 300 or 1,000 samples, 3 or 10 times taller than wide. Only the first
    GRID_MAX_CLASSES classes are drawn (a 32x32 grid)."""
    if num_classes < 1:
        raise ValueError(f"class_grid: num_classes must be >= 1, got {num_classes}")
    classes = min(num_classes, GRID_MAX_CLASSES)
    per_class = max(1, min(10, GRID_SAMPLES // classes))
    per_row = max(1, math.floor(math.sqrt(per_class * classes) / per_class + 0.5))
    labels = torch.arange(classes).repeat_interleave(per_class)
    return labels, math.ceil(classes / per_row), per_row * per_class


def image_grid(images: torch.Tensor, rows: int, cols: int | None = None,
               border: int | None = None) -> np.ndarray:
    """[N, C, H, W] in [-1, 1] -> uint8 [rows*(H+1)+1, cols*(W+1)+1, C] with 1-pixel borders, the
    images in row-major order (cols: by default as few as hold N in `rows` rows). border: the
    borders' grey level 0..255 (by default border_level(images)); an alpha channel (C = 2 or 4)
    is opaque there. Cells past the N-th are border-coloured, not black: a black cell read as a
    black sample."""
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    n, c, h, w = x.shape
    cols = cols or math.ceil(n / rows)
    if rows * cols < n:
        raise ValueError(f"image_grid: {n} images do not fit {rows} rows of {cols}")
    if border is None:
        border = border_level(images)
    grid = torch.full((rows * (h + 1) + 1, cols * (w + 1) + 1, c), border, dtype=torch.uint8)
    if c in (2, 4):
        grid[..., -1] = 255  # opaque borders: a transparent one would show whatever lies behind
    for i in range(n):
        r, q = divmod(i, cols)
        grid[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + q * (w + 1):1 + q * (w + 1) + w] = x[i].permute(1, 2, 0)
    return grid.numpy()


def save_image_grid(images: torch.Tensor, rows: int, path: Path, scale: int = 1,
                    cols: int | None = None, border: int | None = None) -> None:
    """image_grid as a PNG of the images' own channels (grey, grey+alpha, RGB, RGBA: the
    generated alpha of 4-channel data is kept), `scale` times larger (nearest neighbour)."""
    from PIL import Image

    if images.dim() != 4 or images.shape[1] not in GRID_MODES:
        raise ValueError("save_image_grid: images must be [N, C, H, W] with C = 1, 2, 3 or 4, got "
                         f"shape {list(images.shape)}")
    grid = image_grid(images, rows, cols, border)
    picture = Image.fromarray(grid[..., 0] if grid.shape[2] == 1 else grid)  # GRID_MODES' mode
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    write_atomically(path, lambda tmp: picture.save(tmp, format="PNG"))


def save_points(points: torch.Tensor, centers, path: Path, title: str, data=None) -> None:
    """A scatter of 2-D samples over a sample of the training data (`data`, light grey: a run on
    a .npy of points had nothing to compare its samples with) and the modes' centres (red
    crosses), with a legend saying which is which."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4))
    if data is not None:
        d = torch.as_tensor(data).detach().float().cpu().numpy()
        ax.scatter(d[:, 0], d[:, 1], s=2, c="0.75", label="data")
    p = points.detach().float().cpu().numpy()
    ax.scatter(p[:, 0], p[:, 1], s=2, alpha=0.5, c="tab:blue", label="samples")
    if centers is not None:
        ax.scatter(centers[:, 0], centers[:, 1], s=30, c="red", marker="x", label="modes")
    # below the axes: inside, "best" still covered modes at the border (grid25's top row)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.04), ncol=3, fontsize="small",
              markerscale=2, frameon=False)
    ax.set_title(title)
    ax.set_aspect("equal")
    fig.tight_layout()
    write_atomically(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


PANELS_PER_ROW = 4


def plot_metrics(rows: list, path: Path) -> None:
    """Losses in the first panel, each quality metric in its own, at most PANELS_PER_ROW to a
    row (a conditional digits run with the FID drew 6 in one row, 24 inches wide), all over the
    same steps. Steps, and metrics logged as integers (modes_covered, classes_covered), on integer
    ticks: a 2-step run's axis read 0.5 and 1.5."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    metric_names = [k for k in dict.fromkeys(k for r in rows for k in r)
                    if k not in ("step", "loss_d", "loss_g", "steps_per_s", "penalty")]
    panels = 1 + len(metric_names)
    grid_rows = math.ceil(panels / PANELS_PER_ROW)
    grid_cols = math.ceil(panels / grid_rows)
    fig, axes = plt.subplots(grid_rows, grid_cols, figsize=(4 * grid_cols, 3.2 * grid_rows),
                             squeeze=False)
    axes = axes.ravel()
    for ax in axes[panels:]:  # (a last row not filled)
        fig.delaxes(ax)
    axes = axes[:panels]
    for ax in axes[1:]:  # one step axis: the losses start at step 1, the measures at step 0
        ax.sharex(axes[0])
    for key in ("loss_d", "loss_g"):
        pts = [(r["step"], r[key]) for r in rows if key in r]
        if pts:  # a single row (--steps 1) is a point: a line alone would draw nothing
            axes[0].plot(*zip(*pts, strict=True), label=key, marker="o" if len(pts) == 1 else None)
    if axes[0].lines:
        axes[0].legend()
    axes[0].set_title("losses")
    for ax, key in zip(axes[1:], metric_names, strict=True):
        pts = [(r["step"], r[key]) for r in rows if key in r]
        ax.plot(*zip(*pts, strict=True), marker="o")
        if key.startswith(("fd_", "fid_")) and all(v > 0 for _, v in pts):
            ax.set_yscale("log")  # distances fall by orders of magnitude
        elif all(isinstance(v, int) for _, v in pts):
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(key)
    for ax in axes:
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
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
    steps up to it (none when it starts again from step 0, which logs its step-0 row again if
    it has one: data with nothing to measure have none). Rows of
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
        # There from the start, rows or not (data with nothing to measure log none at step 0):
        # with checkpoint.pt it marks a run folder, whose pictures an image folder leaves out
        self.metrics_path.touch()
        self.shown = {}  # the figures beside the bar
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
        """Move the bar by `steps`; the figures of `postfix` replace those of the same names
        beside it, the others staying: the last logged losses between log steps, and the last
        evaluation's measures until the next (they were shown for one log interval of the
        many between two evaluations). Losses first."""
        if self.bar is not None:
            if postfix:
                self.shown.update(postfix)
                order = sorted(self.shown, key=lambda k: not k.startswith("loss_"))
                self.bar.set_postfix({k: f"{self.shown[k]:.3g}" for k in order}, refresh=False)
            self.bar.update(steps)

    def log(self, row: dict) -> None:
        """Append `row` to metrics.jsonl (and TensorBoard); a row of nothing but its step (the
        step-0 evaluation of data with nothing to measure) is not written: it was a row with
        no figures, read as a measurement that found nothing."""
        if not self.writer or not set(row) - {"step"}:
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
