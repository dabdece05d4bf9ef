"""Quality and mode-collapse metrics that need no download.

2-D mixtures (VEEGAN / PacGAN protocol): a sample is high quality when it lies within 3
standard deviations of its nearest mode (distance < 3 std, as PacGAN's code, from the exact
float64 differences: a point on the boundary is decided the same in a batch of any size); a mode
is covered when it holds at least 0.8% of the samples as high-quality ones (20 of 2,500, PacGAN's
threshold for its grid). `mode_kl`, after the reverse KL in PacGAN's tables beside the two
counts: the KL divergence of the samples' distribution over their nearest modes (every finite
sample, high quality or not) to the data's, uniform; 0 when balanced, log(modes) when all fall to
one mode. It sees a generator that
piles most samples on a few modes while leaving 20 on each other one, which the two counts read
as full coverage (8 of 8 modes, 100% high quality).

Digits: a small classifier trained once on scikit-learn's digits, deterministically, in a few
seconds, cached as `digits_classifier_<size>px.pt` in $GANFAST_CACHE, else
$XDG_CACHE_HOME/ganfast, else ~/.cache/ganfast. Its penultimate layer gives a Frechet distance
("FD-digits": the FID formula in this network's 64-d feature space; not comparable with
published FIDs, which use Inception features of natural images), the class coverage of the
samples (classes predicted for at least a quarter of their uniform share) with the KL divergence
of the predicted class histogram to uniform (mode collapse shows here), and for a conditional
generator the fraction of samples classified as the class asked for.

Under torch.distributed every process measures its share of the samples; the sums are reduced,
so the figures are those of all samples together.
"""

import math
import os
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from .._files import write_atomically
from . import data as datasets
from .layers import frechet_distance

MIXTURE_SAMPLES = 2500
DIGITS_SAMPLES = 2000
HIGH_QUALITY_STDS = 3.0
MODE_COVERED_FRACTION = 20 / 2500


def kl_to_uniform(counts: torch.Tensor) -> float:
    """KL divergence of the histogram `counts` (not all 0) to the uniform one over its bins: 0
    when balanced, log(bins) when everything falls in one."""
    p = counts[counts > 0] / counts.sum()
    return float((p * (p * len(counts)).log()).sum())


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """t summed over the processes of torch.distributed (t itself when there is no group), on
    t's device. The statistics are CPU tensors and NCCL moves CUDA tensors only (a CPU tensor was
    "No backend type associated with device type cpu" at the first evaluation of every
    multi-GPU run): they travel through the device the backend takes (metrics' rule)."""
    if not (dist.is_available() and dist.is_initialized()):
        return t
    from ..metrics.stats import collective_device

    moved = t.to(collective_device(dist.get_backend(), t.device))  # (t itself where it can go)
    dist.all_reduce(moved)
    return moved.to(t.device)


def cache_dir() -> Path:
    root = os.environ.get("GANFAST_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "ganfast")
    return Path(root)


class MixtureQuality:
    def __init__(self, centers: torch.Tensor, std: float):
        self.centers, self.std = centers.double(), std

    def measure(self, points: torch.Tensor, labels=None) -> dict:
        if points.dim() != 2 or points.shape[1] != self.centers.shape[1]:
            raise ValueError(f"MixtureQuality.measure: points must be [N, {self.centers.shape[1]}], "
                             f"got shape {list(points.shape)}")
        points = points.detach().double().cpu()
        # Exact differences, not torch.cdist: past 25 rows it takes |x|^2 + |c|^2 - 2 x.c, whose
        # rounding moved points lying on the 3-std boundary to either side depending on the
        # number of samples measured together.
        dist_to_modes = (points[:, None, :] - self.centers[None]).square().sum(-1).sqrt()
        nearest_dist, nearest = dist_to_modes.min(1)
        good = nearest_dist < HIGH_QUALITY_STDS * self.std
        k = len(self.centers)
        per_mode = torch.bincount(nearest[good], minlength=k).double()
        # NaN/inf samples have no nearest mode: in the count, in no mode
        nearest_mode = torch.bincount(nearest[nearest_dist.isfinite()], minlength=k).double()
        totals = all_reduce_sum(torch.cat([per_mode, nearest_mode, torch.tensor([float(len(points))])]))
        per_mode, nearest_mode, n = totals[:k], totals[k:2 * k], totals[-1].item()
        if n == 0:
            raise ValueError("MixtureQuality.measure: points must hold at least one sample (over "
                             f"all processes), got shape {list(points.shape)}")
        return {"modes_covered": int((per_mode >= MODE_COVERED_FRACTION * n).sum()),
                "high_quality": per_mode.sum().item() / n,
                # (no sample with a nearest mode, all NaN/inf: as far from the data as all in one)
                "mode_kl": kl_to_uniform(nearest_mode) if nearest_mode.sum() else math.log(k)}


class DigitsClassifier(nn.Module):
    def __init__(self, size: int):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(size * size, 256), nn.ReLU(),
                                  nn.Linear(256, 64), nn.ReLU())
        self.head = nn.Linear(64, 10)

    def forward(self, x):
        return self.head(self.body(x))


def train_digits_classifier(size: int, steps: int = 400) -> DigitsClassifier:
    """Full-batch Adam on all 1797 digits with light noise and 1-pixel shifts (so generated
    digits slightly off the data still classify); seeded, its own RNG, CPU."""
    data = datasets.digits(size)
    threads = torch.get_num_threads()
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(1)  # as the trainer: small ops, often a shared machine
    try:
        return _fit_classifier(size, data, steps)
    finally:
        torch.set_num_threads(threads)


def _fit_classifier(size: int, data, steps: int) -> DigitsClassifier:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = DigitsClassifier(size)
        opt = torch.optim.Adam(net.parameters(), lr=2e-3)
        for _ in range(steps):
            shift = torch.randint(-1, 2, (2,)).tolist()
            x = torch.roll(data.x, shifts=shift, dims=(2, 3)) + 0.1 * torch.randn_like(data.x)
            loss = nn.functional.cross_entropy(net(x), data.labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


def load_digits_classifier(size: int, log=print) -> DigitsClassifier:
    path = cache_dir() / f"digits_classifier_{size}px.pt"
    net = DigitsClassifier(size)
    if path.exists():
        try:
            net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            return net.eval()
        except (RuntimeError, OSError, KeyError) as err:
            log(f"the cached digits classifier {path} is unreadable ({err}); training it again")
    else:  # said, as the run is silent until it is trained (seconds; longer on a slow CPU)
        log(f"training the digits classifier of the quality metrics (once: cached as {path})")
    net = train_digits_classifier(size)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda tmp: torch.save(net.state_dict(), tmp))
    return net


def moments(features: torch.Tensor) -> torch.Tensor:
    """[count, sum, sum of outer products] flattened, float64: all-reducible statistics."""
    f = features.double()
    return torch.cat([torch.tensor([float(len(f))]), f.sum(0), (f.T @ f).flatten()])


def mean_and_covariance(m: torch.Tensor, dim: int):
    n, s, outer = m[0], m[1:1 + dim], m[1 + dim:].view(dim, dim)
    mean = s / n
    cov = (outer - n * torch.outer(mean, mean)) / (n - 1)  # unbiased, as pytorch-fid
    return mean.numpy(), cov.numpy()


class DigitsQuality:
    def __init__(self, size: int, log=print):
        self.net = load_digits_classifier(size, log)
        self.dim = self.net.head.in_features
        with torch.no_grad():
            real = self.net.body(datasets.digits(size).x)
        self.real_stats = mean_and_covariance(moments(real), self.dim)

    @torch.no_grad()
    def measure(self, images: torch.Tensor, labels=None) -> dict:
        images = images.detach().float().cpu()
        features = self.net.body(images)
        predicted = self.net.head(features).argmax(1)
        counts = torch.bincount(predicted, minlength=10).double()
        correct = float((predicted == labels.cpu()).sum()) if labels is not None else 0.0
        totals = all_reduce_sum(torch.cat([moments(features), counts, torch.tensor([correct])]))
        m, counts, correct = totals[:-11], totals[-11:-1], totals[-1].item()
        if m[0] < 2:  # (decided on the totals: the same on every process)
            raise ValueError("DigitsQuality.measure: images must hold at least 2 images (over all "
                             "processes) for a covariance, got shape " + str(list(images.shape)))
        p = counts / counts.sum()
        row = {"fd_digits": frechet_distance(*mean_and_covariance(m, self.dim), *self.real_stats),
               "classes_covered": int((p >= 0.25 / 10).sum()),
               "class_kl": kl_to_uniform(counts)}
        if labels is not None:
            row["class_accuracy"] = correct / counts.sum().item()
        return row


def for_dataset(dataset: datasets.Dataset, log=print):
    """The evaluator for this data (None when there is no built-in measure for it) and the
    number of samples it measures."""
    if dataset.centers is not None:
        return MixtureQuality(dataset.centers, dataset.std), MIXTURE_SAMPLES
    # --data digits itself: a folder or .npy is named after its path (--data photos/digits,
    # digits.npy), and the digits classifier measured those as digits (a shape error at step 0
    # for colour images or points, figures of scikit-learn's digits for grey ones)
    if dataset.builtin and dataset.name == "digits":
        return DigitsQuality(dataset.x.shape[-1], log), DIGITS_SAMPLES
    return None, 0


class InceptionFID:
    """The true FID (FID Inception network, pytorch-fid's weights) of samples against the
    training images, beside what `inner` (the built-in measure, or None) reports: `fid_inception`.
    Comparable with published FIDs only when the data and sample count are the published ones.
    `net`: that network, from `fid_inception` (the trainer loads it, its errors naming
    --inception-weights)."""

    def __init__(self, net: nn.Module, real_images: torch.Tensor, inner, device, batch: int = 50):
        self.net, self.inner, self.device, self.batch = net.to(device), inner, device, batch
        self.real = self._stats(real_images, across_ranks=False)  # every rank holds all of it

    @torch.no_grad()
    def _stats(self, images: torch.Tensor, across_ranks: bool = True):
        from ..metrics import FeatureStats

        stats = FeatureStats(2048)
        for start in range(0, len(images), self.batch):
            x = ((images[start:start + self.batch].float().to(self.device) + 1) / 2).clamp_(0, 1)
            # grey as RGB; RGBA (a .npy's 4 channels) without its alpha, as pytorch-fid reads an
            # RGBA image (PIL's convert("RGB") drops it): the network takes 3 channels
            stats.update(self.net(x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x[:, :3]))
        if across_ranks and torch.distributed.is_available() and torch.distributed.is_initialized():
            stats.all_reduce()  # each rank measured its share of the samples
        return stats

    def measure(self, images: torch.Tensor, labels=None) -> dict:
        from ..metrics import frechet_distance

        row = self.inner.measure(images, labels) if self.inner is not None else {}
        fake = self._stats(images)
        row["fid_inception"] = frechet_distance(fake.mean, fake.covariance, self.real.mean,
                                                self.real.covariance)
        return row
