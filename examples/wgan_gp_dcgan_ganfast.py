"""wgan_gp_dcgan.py accelerated by ganfast: the same script but for the lines marked "ganfast".

    python examples/wgan_gp_dcgan_ganfast.py --steps 200   # a GPU; on a 2-core CPU about 0.8
                                                           # s a step (AMD EPYC, idle): try
                                                           # --steps 20 there

`ganfast.accelerate` swaps the generator's Upsample + Conv2d pairs for fused UpsampleConv2d
layers (same weights, same function) and the gradient penalty becomes ganfast's fused one
(the same canonical WGAN-GP, same random draws), so the hand-written penalty is gone.
"""

import argparse

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

import ganfast  # ganfast


def up_block(c_in, c_out):
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                         nn.Conv2d(c_in, c_out, 3, 1, 1), nn.BatchNorm2d(c_out), nn.ReLU(True))


class Generator(nn.Module):
    def __init__(self, z_dim=64, width=16):
        super().__init__()
        self.width = width
        self.fc = nn.Linear(z_dim, width * 8 * 4 * 4)
        self.main = nn.Sequential(up_block(width * 8, width * 4), up_block(width * 4, width * 2),
                                  up_block(width * 2, width), up_block(width, width),
                                  nn.Conv2d(width, 1, 3, 1, 1), nn.Tanh())

    def forward(self, z):
        return self.main(self.fc(z).view(-1, self.width * 8, 4, 4))


class Critic(nn.Module):
    def __init__(self, width=16):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(1, width, 4, 2, 1), nn.LeakyReLU(0.2, True),
            nn.Conv2d(width, width * 2, 4, 2, 1), nn.LeakyReLU(0.2, True),
            nn.Conv2d(width * 2, width * 4, 4, 2, 1), nn.LeakyReLU(0.2, True),
            nn.Conv2d(width * 4, width * 8, 4, 2, 1), nn.LeakyReLU(0.2, True),
            nn.Conv2d(width * 8, 1, 4, 1, 0))

    def forward(self, x):
        return self.main(x).view(-1)


def load_data(device):
    digits = torch.tensor(load_digits().images, dtype=torch.float32) / 16.0 * 2 - 1
    return F.interpolate(digits[:, None], size=64, mode="bilinear").to(device)


def train(steps=200, batch_size=64, n_critic=5, z_dim=64, width=16, seed=0, device="cpu",
          log_every=20):
    torch.manual_seed(seed)
    data = load_data(device)
    G, D = Generator(z_dim, width).to(device), Critic(width).to(device)
    G, D = ganfast.accelerate(G), ganfast.accelerate(D)  # ganfast
    opt_g = torch.optim.Adam(G.parameters(), lr=1e-4, betas=(0.0, 0.9))
    opt_d = torch.optim.Adam(D.parameters(), lr=1e-4, betas=(0.0, 0.9))
    history = []
    for step in range(steps):
        for _ in range(n_critic):
            real = data[torch.randint(len(data), (batch_size,), device=device)]
            fake = G(torch.randn(batch_size, z_dim, device=device)).detach()
            loss_d = D(fake).mean() - D(real).mean() + ganfast.gradient_penalty(D, real, fake)  # ganfast
            opt_d.zero_grad()
            loss_d.backward()
            opt_d.step()
        loss_g = -D(G(torch.randn(batch_size, z_dim, device=device))).mean()
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        history.append((loss_d.item(), loss_g.item()))
        if log_every and (step % log_every == 0 or step == steps - 1):  # and the last step
            print(f"step {step:5d}  loss_d {loss_d.item():8.4f}  loss_g {loss_g.item():8.4f}")
    return history


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200,
                        help="generator updates, each after 5 critic updates (default: 200)")
    parser.add_argument("--batch-size", type=int, default=64, help="default: 64")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="default: cuda when available, else cpu")
    parser.add_argument("--seed", type=int, default=0, help="default: 0")
    args = parser.parse_args()
    train(args.steps, args.batch_size, seed=args.seed, device=args.device)
