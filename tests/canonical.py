"""Independent oracles: the gradient penalties and the upsample + conv block as users write them
in plain PyTorch, and small critics with non-zero second derivatives (so double backward is
really exercised)."""

import torch
from torch import nn


def interpolation(real, fake, alpha):
    a = alpha.view(-1, *([1] * (real.dim() - 1)))
    return a * real + (1 - a) * fake


def wgan_gp(critic, real, fake, alpha, weight=10.0, center=1.0):
    """Canonical WGAN-GP (Gulrajani et al.), written without ganfast."""
    x_hat = interpolation(real, fake, alpha).detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return weight * ((grad.flatten(1).norm(2, dim=1) - center) ** 2).mean()


def r1(critic, x, gamma=10.0):
    """Canonical R1 (StyleGAN2's d_r1_loss), written without ganfast."""
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
    return gamma / 2 * grad.pow(2).flatten(1).sum(1).mean()


def upsample_conv(x, weight, bias, activation=None, negative_slope=0.01):
    """nn.Upsample(2, nearest) + 3x3 Conv2d (padding 1) + activation, torch.nn only."""
    out = nn.functional.conv2d(nn.Upsample(scale_factor=2, mode="nearest")(x), weight, bias,
                               padding=1)
    if activation == "relu":
        return torch.relu(out)
    if activation == "leaky_relu":
        return nn.functional.leaky_relu(out, negative_slope)
    return out


class MLPCritic(nn.Module):
    """Any [B, ...] input: flatten, a smooth hidden layer, a [B, 1] score."""

    def __init__(self, in_features, hidden=16):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden), nn.Softplus(),
                                 nn.Linear(hidden, 1))

    def forward(self, x):
        return self.net(x)


class ConvCritic(nn.Module):
    """Images [B, C, H, W]: conv, smooth activation, pooled to a [B] score."""

    def __init__(self, channels, width=8):
        super().__init__()
        self.conv = nn.Conv2d(channels, width, 3, padding=1)
        self.head = nn.Linear(width, 1)

    def forward(self, x):
        return self.head(torch.nn.functional.softplus(self.conv(x)).mean((2, 3))).squeeze(1)


def critic_for(shape, dtype=torch.float32, device="cpu"):
    in_features = 1
    for size in shape[1:]:
        in_features *= size
    critic = ConvCritic(shape[1]) if len(shape) == 4 else MLPCritic(in_features)
    return critic.to(device=device, dtype=dtype)


def param_grads(module):
    """Each parameter's gradient; zeros for one the loss does not reach (a final bias has no
    effect on an input gradient)."""
    return [torch.zeros_like(p) if p.grad is None else p.grad.detach().clone()
            for p in module.parameters()]
