"""Whole GAN training steps per second: `ganfast bench --op train_step`.

One step is one discriminator update and one generator update (n_critic = 1, so the figure is
per update pair), on random data:
  dcgan64 wgan-gp   DCGAN-64 (Upsample + 3x3 conv up-blocks), Wasserstein loss + gradient penalty
  sngan32 hinge     SNGAN ResNet-32 (spectral norm on every D layer), hinge loss
Backends, side by side in one run on the same weights and data:
  eager             the stock models and the canonical penalty, as users write them
  compile           the same under torch.compile
  ganfast           the models after ganfast.accelerate, with ganfast.gradient_penalty
  ganfast+compile   that under torch.compile
`speedup` is eager / this, `speedup_vs_compile` compile / this. bf16 rows run the forward
passes under torch.autocast. Under compile both networks are compiled, and the gradient penalty
calls the critic uncompiled (AOTAutograd has no double backward, and that is how users run
WGAN-GP under compile). A case whose first step fails is recorded as skipped with the error.
"""

import contextlib
import copy

import torch
import torch.nn.functional as F

from .._errors import error_line
from ..accelerate import accelerate
from ..losses import gradient_penalty
from . import stock_gans
from .cases import Case
from .gradient_penalty import canonical_wgan_gp

MODELS = {
    "dcgan64 wgan-gp": (lambda: stock_gans.dcgan64(), 64),
    "sngan32 hinge": (lambda: stock_gans.sngan32(), 32),
}
BACKENDS = ("eager", "compile", "ganfast", "ganfast+compile")


def _losses(model: str, G, D, real, z, penalty):
    """(loss_d, loss_g) closures of one model's objective."""
    if model.endswith("wgan-gp"):
        def loss_d():
            fake = G(z).detach()
            eager_critic = getattr(D, "_orig_mod", D)  # see the module docstring
            return D(fake).mean() - D(real).mean() + penalty(eager_critic, real, fake.float())

        def loss_g():
            return -D(G(z)).mean()
    else:
        def loss_d():
            return F.relu(1 - D(real)).mean() + F.relu(1 + D(G(z).detach())).mean()

        def loss_g():
            return -D(G(z)).mean()
    return loss_d, loss_g


def _step(model: str, G, D, real, z, penalty, autocast_dtype):
    opt_g = torch.optim.Adam(G.parameters(), lr=1e-4, betas=(0.0, 0.9))
    opt_d = torch.optim.Adam(D.parameters(), lr=1e-4, betas=(0.0, 0.9))
    loss_d, loss_g = _losses(model, G, D, real, z, penalty)
    device_type = real.device.type
    autocast = (lambda: torch.autocast(device_type, dtype=autocast_dtype)) if autocast_dtype \
        else contextlib.nullcontext

    def step():
        for loss, opt in ((loss_d, opt_d), (loss_g, opt_g)):
            opt.zero_grad(set_to_none=True)
            with autocast():
                value = loss()
            value.backward()
            opt.step()

    return step


def cases(models, batches, dtypes, device, backends=BACKENDS):
    for model in models:
        build, size = MODELS[model]
        for batch in batches:
            for dtype in dtypes:
                yield from _model_cases(model, build, size, batch, dtype, device, backends)


def _model_cases(model, build, size, batch, dtype, device, backends):
    torch.manual_seed(0)
    G, D = (m.to(device) for m in build())
    real = torch.rand(batch, 3, size, size, device=device) * 2 - 1
    z = torch.randn(batch, G.z_dim, device=device)
    key = dict(shape=[batch, 3, size, size], dtype=str(dtype).removeprefix("torch."))
    autocast_dtype = None if dtype == torch.float32 else dtype
    for backend in backends:
        g, d = copy.deepcopy(G), copy.deepcopy(D)
        penalty = canonical_wgan_gp
        if backend.startswith("ganfast"):
            g, d = accelerate(g, verbose=False), accelerate(d, verbose=False)
            penalty = gradient_penalty
        if backend.endswith("compile"):
            g, d = torch.compile(g), torch.compile(d)
        yield Case(model, key, backend, _step(model, g, d, real, z, penalty, autocast_dtype), None,
                   reps=5 if device.type == "cpu" else 60)


def first_call_fails(case) -> str:
    """A reason to skip a case whose first call raises (e.g. a compiled critic asked for the
    double backward of the gradient penalty), "" when it runs."""
    try:
        case.fn()
    except Exception as error:  # noqa: BLE001 - any failure is reported as the row's reason
        return error_line(error, 160)
    return ""


def add_steps_per_s(rows: list[dict]) -> list[dict]:
    for row in rows:
        if row.get("median_ms"):
            row["steps_per_s"] = round(1e3 / row["median_ms"], 2)
    return rows
