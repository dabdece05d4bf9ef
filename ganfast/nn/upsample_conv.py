"""UpsampleConv2d: nn.Upsample(scale_factor=2, mode="nearest") + nn.Conv2d(k=3, padding=1)
as one fused layer (see ganfast/ops/upsample_conv.py for the folding)."""

import torch
from torch import nn

from .._numbers import integer
from ..ops.upsample_conv import (
    ACTIVATIONS,
    KERNEL_SIZE,
    PADDING,
    SCALE_FACTOR,
    check_configuration,
    checked_slope,
    upsample_conv2d_called_as,
)

# torch.fx.symbolic_trace records the call as one node (its argument checks cannot run on
# Proxies): a traced accelerated model keeps the fused op, as a traced Conv2d keeps conv2d.
torch.fx.wrap("upsample_conv2d_called_as")


class UpsampleConv2d(nn.Conv2d):
    """Nearest 2x upsampling followed by a 3x3 conv with padding 1 (or "same", the same for a
    3x3 kernel), without the upsampled tensor.

    A subclass of nn.Conv2d with the same weight [out, in, 3, 3] and bias [out]: a Conv2d's
    state_dict loads into it and the other way round. `activation` ("relu" or "leaky_relu")
    fuses the conv-activation pair that generators use."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, padding=1,
                 bias: bool = True, scale_factor=2, *, activation: str | None = None,
                 negative_slope: float = 0.01, device=None, dtype=None):
        # (nn.Conv2d's own errors name neither: "not all arguments converted during string
        # formatting" for a str, "in_channels must be divisible by groups" for 3.5, a negative
        # dimension from torch.empty; a bool passed for 1)
        in_channels, out_channels = (_channel_count(value, name) for name, value in
                                     (("in_channels", in_channels), ("out_channels", out_channels)))
        check_configuration(kernel_size, padding, scale_factor)
        if activation not in ACTIVATIONS:
            raise ValueError(f"UpsampleConv2d: activation must be one of {ACTIVATIONS}; "
                             f"got {activation!r}")
        # The supported values themselves from here on, however given (np.int64(3), a tensor
        # pair, 2.0): what the layer's repr shows and a copy of it is made with
        padding = "same" if isinstance(padding, str) else PADDING
        super().__init__(in_channels, out_channels, KERNEL_SIZE, padding=padding, bias=bias,
                         device=device, dtype=dtype)
        self.scale_factor = SCALE_FACTOR
        self.activation = activation
        self.negative_slope = checked_slope(negative_slope, "UpsampleConv2d")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (refusals name the layer: "upsample_conv2d: x must be ..." named a function the
        # user never called)
        return upsample_conv2d_called_as("UpsampleConv2d", x, self.weight, self.bias,
                                         self.activation, self.negative_slope)

    def extra_repr(self) -> str:
        text = super().extra_repr() + f", scale_factor={self.scale_factor}"
        if self.activation is not None:
            text += f", activation={self.activation!r}"
        if self.activation == "leaky_relu":
            text += f", negative_slope={self.negative_slope}"
        return text


def _channel_count(value, name: str) -> int:
    """value as an int >= 0 (numpy's, a 0-dim integer tensor: as nn.Conv2d takes it), or an
    error naming the argument."""
    count = integer(value)
    if count is None:
        raise TypeError(f"UpsampleConv2d: {name} must be an int >= 0 (a channel count, as for "
                        f"nn.Conv2d), got {value!r}")
    if count < 0:
        raise ValueError(f"UpsampleConv2d: {name} must be an int >= 0 (a channel count, as for "
                         f"nn.Conv2d), got {value!r}")
    return count
