"""UpsampleConv2d: nn.Upsample(scale_factor=2, mode="nearest") + nn.Conv2d(k=3, padding=1)
as one fused layer (see ganfast/ops/upsample_conv.py for the folding)."""

import torch
from torch import nn

from ..ops.upsample_conv import ACTIVATIONS, check_configuration, checked_slope, upsample_conv2d

# torch.fx.symbolic_trace records the call as one node (its argument checks cannot run on
# Proxies): a traced accelerated model keeps the fused op, as a traced Conv2d keeps conv2d.
torch.fx.wrap("upsample_conv2d")


class UpsampleConv2d(nn.Conv2d):
    """Nearest 2x upsampling followed by a 3x3 conv with padding 1 (or "same", the same for a
    3x3 kernel), without the upsampled tensor.

    A subclass of nn.Conv2d with the same weight [out, in, 3, 3] and bias [out]: a Conv2d's
    state_dict loads into it and the other way round. `activation` ("relu" or "leaky_relu")
    fuses the conv-activation pair that generators use."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, padding=1,
                 bias: bool = True, scale_factor=2, *, activation: str | None = None,
                 negative_slope: float = 0.01, device=None, dtype=None):
        check_configuration(kernel_size, padding, scale_factor)
        if activation not in ACTIVATIONS:
            raise ValueError(f"UpsampleConv2d: activation must be one of {ACTIVATIONS}; "
                             f"got {activation!r}")
        super().__init__(in_channels, out_channels, kernel_size, padding=padding, bias=bias,
                         device=device, dtype=dtype)
        self.scale_factor = scale_factor
        self.activation = activation
        self.negative_slope = checked_slope(negative_slope, "UpsampleConv2d")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upsample_conv2d(x, self.weight, self.bias, activation=self.activation,
                               negative_slope=self.negative_slope)

    def extra_repr(self) -> str:
        text = super().extra_repr() + f", scale_factor={self.scale_factor}"
        if self.activation is not None:
            text += f", activation={self.activation!r}"
        if self.activation == "leaky_relu":
            text += f", negative_slope={self.negative_slope}"
        return text
