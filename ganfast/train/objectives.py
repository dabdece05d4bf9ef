"""GAN losses and regularizers, each named as on the command line.

Losses take discriminator scores ([B] logits or critic values):
  nonsaturating  D: softplus(-real) + softplus(fake)   G: softplus(-fake)   (Goodfellow et al. 2014)
  hinge          D: relu(1 - real) + relu(1 + fake)    G: -fake             (Lim & Ye 2017; SNGAN)
  wasserstein    D: fake - real                         G: -fake             (Arjovsky et al. 2017)
Penalties run through ganfast's fused ops: wgan-gp (Gulrajani et al. 2017), r1 at the reals and
r2 at the fakes (Mescheder et al. 2018). Lazy regularization (StyleGAN2, Karras et al. 2020):
the penalty is applied every k-th discriminator step, multiplied by k so its average strength
is unchanged.
"""

import torch
import torch.nn.functional as F

import ganfast

LOSSES = ("nonsaturating", "hinge", "wasserstein")
PENALTIES = ("none", "wgan-gp", "r1", "r2")


def check_choice(kind: str, name: str, valid) -> str:
    if name not in valid:
        raise ValueError(f"--{kind} {name!r}: expected one of {', '.join(valid)}")
    return name


def discriminator_loss(loss: str, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    real, fake = real.float(), fake.float()
    if loss == "nonsaturating":
        return F.softplus(-real).mean() + F.softplus(fake).mean()
    if loss == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    return fake.mean() - real.mean()


def generator_loss(loss: str, fake: torch.Tensor) -> torch.Tensor:
    fake = fake.float()
    return F.softplus(-fake).mean() if loss == "nonsaturating" else -fake.mean()


def auxiliary_classifier_loss(logits, labels) -> torch.Tensor:
    """AC-GAN's class term (Odena et al. 2017): zero when the model is unconditional."""
    return 0.0 if logits is None else F.cross_entropy(logits.float(), labels)


def penalty(name: str, critic, real, fake, weight: float, backend: str, scaler=None):
    """The named penalty on the critic (a module returning [B] scores), through ganfast."""
    if name == "wgan-gp":
        return ganfast.gradient_penalty(critic, real, fake.detach(), weight=weight, backend=backend,
                                        scaler=scaler)
    point = real if name == "r1" else fake
    return ganfast.r1_penalty(critic, point, gamma=weight, backend=backend, scaler=scaler)


def default_penalty_weight(name: str) -> float:
    return {"wgan-gp": 10.0}.get(name, 1.0)


def default_penalty_every(name: str) -> int:
    """WGAN-GP's penalty on every critic step, as Gulrajani et al.; R1/R2 lazily, every 4th D
    step times 4, as StyleGAN2 (Karras et al. 2020)."""
    return {"wgan-gp": 1}.get(name, 4)
