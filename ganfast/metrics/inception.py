"""The FID Inception network (TensorFlow's 2015-12-05 InceptionV3 as FID defines it), written here.

Same modules and state_dict keys as pytorch-fid's `fid_inception_v3()` (torchvision's
Inception3 with num_classes=1008, no aux head, and the FID patches: average pools that do not
count padding, max pooling in the last block), so its weight file
`pt_inception-2015-12-05-6726825d.pth` loads as it is. Only what FID, KID, IS and
precision/recall need: the 2048-d pool features and the 1008-way logits.

Weights are never downloaded: `fid_inception(weights)` takes a path (.pth, loaded with
weights_only=True, or .safetensors), else the GANFAST_INCEPTION_WEIGHTS environment variable.
"""

import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .._errors import error_line
from .._files import some_names
from ._tensors import check_choice
from .resize import RESIZE_CHOICES, resize_299

WEIGHTS_ENV = "GANFAST_INCEPTION_WEIGHTS"
PRECISION_CHOICES = ("fp32", "bf16")
WEIGHTS_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
               "pt_inception-2015-12-05-6726825d.pth")


class BasicConv2d(nn.Module):
    """conv (no bias) -> batch norm (eps 1e-3, TensorFlow's) -> ReLU."""

    def __init__(self, c_in: int, c_out: int, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


def _tf_avg_pool(x):
    # TensorFlow's average pool leaves the zero padding out of the average.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    def __init__(self, c_in: int, pool_features: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(c_in, 64, 1)
        self.branch5x5_1 = BasicConv2d(c_in, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(c_in, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(c_in, pool_features, 1)

    def forward(self, x):
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(_tf_avg_pool(x)),
        ], 1)


class InceptionB(nn.Module):
    def __init__(self, c_in: int):
        super().__init__()
        self.branch3x3 = BasicConv2d(c_in, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(c_in, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x):
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, kernel_size=3, stride=2),
        ], 1)


class InceptionC(nn.Module):
    def __init__(self, c_in: int, channels_7x7: int):
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(c_in, 192, 1)
        self.branch7x7_1 = BasicConv2d(c_in, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(c_in, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(c_in, 192, 1)

    def forward(self, x):
        double = x
        for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3,
                      self.branch7x7dbl_4, self.branch7x7dbl_5):
            double = layer(double)
        return torch.cat([
            self.branch1x1(x),
            self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))),
            double,
            self.branch_pool(_tf_avg_pool(x)),
        ], 1)


class InceptionD(nn.Module):
    def __init__(self, c_in: int):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(c_in, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(c_in, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x):
        seven = self.branch7x7x3_2(self.branch7x7x3_1(x))
        return torch.cat([
            self.branch3x3_2(self.branch3x3_1(x)),
            self.branch7x7x3_4(self.branch7x7x3_3(seven)),
            F.max_pool2d(x, kernel_size=3, stride=2),
        ], 1)


class InceptionE(nn.Module):
    """`max_pool`: the FID network's last block pools by max where the paper averages."""

    def __init__(self, c_in: int, max_pool: bool):
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = BasicConv2d(c_in, 320, 1)
        self.branch3x3_1 = BasicConv2d(c_in, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(c_in, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(c_in, 192, 1)

    def forward(self, x):
        single = self.branch3x3_1(x)
        double = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = (F.max_pool2d(x, kernel_size=3, stride=1, padding=1) if self.max_pool
                  else _tf_avg_pool(x))
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(single), self.branch3x3_2b(single),
            self.branch3x3dbl_3a(double), self.branch3x3dbl_3b(double),
            self.branch_pool(pooled),
        ], 1)


class FIDInceptionV3(nn.Module):
    """images [N, 3, H, W] in [0, 1] -> 2048-d pool features; `.logits` -> [N, 1008].

    Images are resized to 299x299 and scaled to [-1, 1]. `resize="pytorch"` does both as
    pytorch-fid does (bilinear, align_corners=False, half-pixel centres; 2 x - 1),
    `resize="tf1"` as TensorFlow 1's FID graph and torch-fidelity do (see
    ganfast.metrics.resize; 0..255 values v to (v - 128) / 128). `precision="fp32"` is the
    reference; `precision="bf16"` runs the convolutions channels_last under bf16 autocast on the
    images' device (features pooled and returned in fp32): faster where bf16 matrix units exist,
    at the cost in FID measured in README. Built with random weights; `fid_inception()` loads
    the real ones.
    """

    # fp32 feature maps run channels_last on these device types (bf16 runs it everywhere). On
    # the CPU oneDNN's NHWC convolutions and pools took a batch of 4 from 347-400 ms to 275 ms
    # (2 cores), features within 5e-6 of NCHW's (a network with calibrated batch-norm
    # statistics). On CUDA not measured yet: `ganfast bench --op fid` times the other layout
    # beside the default there too.
    channels_last_devices = ("cpu",)

    def __init__(self, resize: str = "pytorch", precision: str = "fp32"):
        super().__init__()
        self.resize = check_choice(resize, "resize", RESIZE_CHOICES)
        self.precision = check_choice(precision, "precision", PRECISION_CHOICES)
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, max_pool=False)
        self.Mixed_7c = InceptionE(2048, max_pool=True)
        self.fc = nn.Linear(2048, 1008)
        if precision == "bf16":
            self.to(memory_format=torch.channels_last)
        self.eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"FID Inception: images must be a tensor [N, 3, H, W] in [0, 1], got "
                            f"{type(images).__name__}"
                            + (" (torch.from_numpy(x))" if hasattr(images, "__array__") else ""))
        if images.dim() != 4 or images.shape[1] != 3 or 0 in images.shape[2:]:
            raise ValueError(f"FID Inception: images must be [N, 3, H, W] in [0, 1], H and W at "
                             f"least 1, got {list(images.shape)}{_layout_hint(images.shape)}")
        if not images.is_floating_point():
            integers = images.dtype != torch.bool and not images.is_complex()
            raise TypeError(f"FID Inception: images must be floating point in [0, 1], got "
                            f"{images.dtype}" + (" (0..255 integers: x.float() / 255)"
                                                 if integers else ""))
        # One pass (and a host sync) that catches [-1, 1] and [0, 255] images and NaN; left out
        # of compiled graphs and empty batches.
        low, high = (torch.stack(images.aminmax()).tolist()
                     if images.numel() and not torch.compiler.is_compiling() else (0.0, 1.0))
        if math.isnan(low) or math.isnan(high):  # NaN passes every comparison below
            raise ValueError("FID Inception: images must be in [0, 1], got NaN values (a "
                             "generator that diverged, or 0 / 0 in the preprocessing)")
        if low < -1e-3 or high > 1 + 1e-3:
            raise ValueError(f"FID Inception: images must be in [0, 1], got values in "
                             f"[{low:.3g}, {high:.3g}] (a generator's [-1, 1] "
                             "output: (x + 1) / 2; uint8 values: x / 255)")
        images = images.to(self.fc.weight.dtype)
        resized = resize_299(images, self.resize)
        # pytorch-fid maps [0, 1] to [-1, 1] with 2 x - 1; TensorFlow 1's FID graph (and
        # torch-fidelity) takes 0..255 values v to (v - 128) / 128, [-1, 1 - 1/128]: features
        # 3% apart with a network whose features follow its input
        x = 2 * resized - 1 if self.resize == "pytorch" else resized * (255 / 128) - 1
        if self.precision == "bf16":
            with torch.autocast(x.device.type, dtype=torch.bfloat16):
                x = self._feature_map(x.contiguous(memory_format=torch.channels_last))
        elif x.device.type in self.channels_last_devices:  # oneDNN reorders the weights to it
            x = self._feature_map(x.contiguous(memory_format=torch.channels_last))
        else:
            x = self._feature_map(x)
        return x.float().mean((2, 3))

    def _feature_map(self, x):
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = F.max_pool2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), kernel_size=3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b,
                      self.Mixed_6c, self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b,
                      self.Mixed_7c):
            x = block(x)
        return x

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """The 1008-way logits (with the fc bias; torch-fidelity's Inception Score uses the
        logits without it: `features @ net.fc.weight.T`)."""
        return self.fc(self(images))


def _layout_hint(shape) -> str:
    """What to do with an image batch of another shape, where it is a common one."""
    if len(shape) == 4 and shape[1] == 1:
        return " (grey images: x.expand(-1, 3, -1, -1))"
    if len(shape) == 4 and shape[1] == 4:
        return " (RGBA images: x[:, :3], alpha dropped as pytorch-fid's convert('RGB'))"
    if len(shape) == 4 and shape[3] in (1, 3) and shape[1] not in (1, 3):
        return " (channels last, [N, H, W, C]: x.permute(0, 3, 1, 2))"
    if len(shape) == 3 and shape[0] == 3:
        return " (one image: x[None])"
    return ""


def fid_inception(weights=None, *, resize: str = "pytorch", precision: str = "fp32",
                  flag_name: str = "weights= (--weights of ganfast fid)") -> FIDInceptionV3:
    """The FID Inception network with pytorch-fid's weights from a local file: `weights`, else
    the GANFAST_INCEPTION_WEIGHTS environment variable. Inference mode; `resize` and `precision`
    as in FIDInceptionV3 (defaults: pytorch-fid's resize, fp32). `flag_name`: what errors call
    `weights` (a tool passes its own flag)."""
    net = FIDInceptionV3(resize=resize, precision=precision)  # bad choices fail before file I/O
    source = flag_name  # where the path came from, as errors say
    if weights is not None and not os.fspath(weights):  # "" from an unset $W: --weights "$W"
        weights = None
    if weights is None:
        weights, source = os.environ.get(WEIGHTS_ENV) or None, f"the {WEIGHTS_ENV} variable"
    how = (f"download {WEIGHTS_URL} once (pytorch-fid's weights) and pass its path as "
           f"{flag_name} or set {WEIGHTS_ENV}; ganfast never downloads")
    if weights is None:
        raise FileNotFoundError(f"fid_inception: no weights file given: {how}")
    path = Path(weights).expanduser()  # a shell leaves ~ in --flag=~/...
    if not path.exists():
        raise FileNotFoundError(f"fid_inception: weights file {path} (from {source}) does not "
                                f"exist: {how}")
    if not path.is_file():
        raise FileNotFoundError(f"fid_inception: {path} (from {source}) is a folder, not a "
                                f"weights file: {how}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file  # an ImportError here says what to install

    def not_the_weights(what: str) -> ValueError:
        return ValueError(
            f"fid_inception: {path} (from {source}) is not the FID Inception weights ({what}); "
            f"expected the state dict of pytorch-fid's pt_inception-2015-12-05-6726825d.pth (or "
            f"a .safetensors of it), from {WEIGHTS_URL}")

    def failed(error: Exception) -> ValueError:
        return not_the_weights(error_line(error))

    if path.stat().st_size == 0:
        raise not_the_weights("it is empty, 0 bytes: an interrupted download?")
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load and safetensors raise many kinds
        raise failed(error) from error
    # Checked here: load_state_dict's own error names no key on its first line, then all of them.
    mismatch = _state_dict_mismatch(net.state_dict(), state)
    if mismatch:
        raise not_the_weights(mismatch)
    try:  # strict=False: the check asked for every key but num_batches_tracked
        net.load_state_dict(state, strict=False)
    except Exception as error:  # values that do not copy into the tensors (wrong kinds)
        raise failed(error) from error
    return net.requires_grad_(False).eval()


def _state_dict_mismatch(expected: dict, state) -> str:
    """What keeps `state` from being the network's state dict `expected`: keys it lacks or
    should not have, and values of other shapes or not floating point where the network's are
    (load_state_dict would cast them, complex ones to their real part), the first few of each;
    "" when nothing does.
    BatchNorm's num_batches_tracked (a training step count, unused in inference) may be absent,
    as load_state_dict allows in files saved without it."""
    if not isinstance(state, dict):
        return f"it holds a {type(state).__name__}, not a state dict"
    missing = [k for k in expected if k not in state and not k.endswith(".num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    reshaped, retyped = [], []
    for key, value in expected.items():
        given = state.get(key)
        if isinstance(given, torch.Tensor) and given.shape != value.shape:
            reshaped.append(f"{key} {list(given.shape)} where {list(value.shape)} belongs")
        elif (isinstance(given, torch.Tensor) and value.is_floating_point()
              and not given.is_floating_point()):
            retyped.append(f"{key} {given.dtype}")
        elif key in state and not isinstance(given, torch.Tensor):
            reshaped.append(f"{key} a {type(given).__name__}, no tensor")
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {some_names(missing)}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {some_names(unexpected)}")
    if reshaped:
        problems.append(f"other shapes ({len(reshaped)}): {some_names(reshaped)}")
    if retyped:
        problems.append(f"not floating point ({len(retyped)}): {some_names(retyped)}")
    return "; ".join(problems)
