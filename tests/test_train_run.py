"""Short `ganfast train` runs: outputs, checkpoints, exact resume, bad input, DDP on gloo."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ganfast import cli
from ganfast.train import NonFiniteLoss, TrainConfig, Trainer, TrainingError
from ganfast.train import trainer as trainer_module


def make(out, resume=False, **settings) -> Trainer:
    """A quiet Trainer (no messages, no TensorBoard)."""
    return Trainer(TrainConfig(tensorboard=False, **settings), out=out, resume=resume,
                   log=lambda text: None)


@pytest.fixture(autouse=True)
def shared_cache(tmp_path_factory, monkeypatch):
    """One classifier cache for the whole session (it is deterministic)."""
    monkeypatch.setenv("GANFAST_CACHE", str(tmp_path_factory.getbasetemp() / "ganfast-cache"))


def rows(out: Path) -> list:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("dataset", ["digits", "ring8", "grid25"])
def test_a_short_run_writes_grids_metrics_plot_and_checkpoint(tmp_path, dataset):
    out = tmp_path / dataset
    code = cli.main(["train", "--data", dataset, "--steps", "6", "--batch-size", "16", "--out", str(out),
                     "--log-every", "2", "--sample-every", "3", "--eval-every", "6"])
    assert code == 0
    for name in ("samples_0000000.png", "samples_0000003.png", "samples_final.png", "metrics.png",
                 "checkpoint.pt", "generator_ema.safetensors"):
        assert (out / name).stat().st_size > 0, name
    table = rows(out)
    assert [r["step"] for r in table] == [0, 2, 4, 6]
    assert all({"loss_d", "loss_g"} <= set(r) for r in table[1:])
    expected = {"modes_covered", "high_quality"} if dataset != "digits" else {"fd_digits", "class_kl"}
    assert expected <= set(table[-1])
    assert list((out / "tensorboard").iterdir())


def test_checkpoint_loads_with_weights_only_and_safetensors(tmp_path):
    from safetensors.torch import load_file

    t = make(tmp_path / "run", data="ring8", steps=3, batch_size=8)
    t.run()
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["step"] == 3 and state["config"]["data"] == "ring8"
    assert {"G", "D", "G_ema", "opt_g", "opt_d", "rng"} <= set(state)
    weights = load_file(tmp_path / "run" / "generator_ema.safetensors")
    for key, value in t.G_ema.state_dict().items():
        assert torch.equal(weights[key], value)


def loss_rows(out: Path) -> list:
    return [(r["step"], r["loss_d"], r["loss_g"]) for r in rows(out) if "loss_d" in r]


@pytest.mark.parametrize("extra", [{}, {"loss": "wasserstein", "penalty": "wgan-gp", "n_critic": 2,
                                        "model": "sngan"}])
def test_resume_repeats_the_uninterrupted_run_bit_for_bit(tmp_path, extra):
    settings = dict(data="digits", batch_size=8, log_every=1, sample_every=100, eval_every=100,
                    penalty_every=2, **extra)
    make(tmp_path / "straight", steps=6, **settings).run()
    make(tmp_path / "halves", steps=3, **settings).run()
    make(tmp_path / "halves", resume=True, steps=6).run()
    straight, halves = loss_rows(tmp_path / "straight"), loss_rows(tmp_path / "halves")
    assert len(straight) == 6 and straight == halves  # exact equality of the float losses


@pytest.mark.parametrize("data,name", [("digits", "digits"), ("photos/", "photos"),
                                       ("/data/faces.npy", "faces"), ("../sets/ring.npy", "ring")])
def test_the_default_run_folder_is_under_runs_named_after_the_data(data, name):
    folder = trainer_module.default_run_folder(data)
    assert folder.parent == Path("runs") and folder.name.startswith(f"{name}-"), folder


def test_a_folder_holding_a_run_is_never_overwritten(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", "--data", "ring8", "--steps", "2", "--out", str(out)]) == 0
    before = (out / "metrics.jsonl").read_text()
    assert cli.main(["train", "--data", "ring8", "--steps", "2", "--out", str(out)]) == 1
    assert "already holds a run" in capsys.readouterr().err
    assert (out / "metrics.jsonl").read_text() == before
    assert cli.main(["train", "--resume", "--out", str(tmp_path / "nothing")]) == 1
    assert "holds no checkpoint.pt" in capsys.readouterr().err


@pytest.mark.parametrize("args,message", [
    (["--data", "mnist"], "digits, ring8, grid25"),
    (["--model", "vgg"], "auto, mlp, dcgan, sngan"),
    (["--loss", "lsgan"], "nonsaturating, hinge, wasserstein"),
    (["--penalty", "gp"], "none, wgan-gp, r1, r2"),
    (["--backend", "cuda", "--device", "cpu"], "--backend cuda:"),
    (["--data", "ring8", "--conditional", "--data", "EMPTY"], "no images found"),
])
def test_bad_input_is_a_message_not_a_traceback(tmp_path, capsys, args, message):
    (tmp_path / "empty").mkdir()
    args = [str(tmp_path / "empty") if a == "EMPTY" else a for a in args]
    assert cli.main(["train", "--steps", "1", "--out", str(tmp_path / "run"), *args]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_nan_loss_stops_the_run_naming_the_step_and_loss(tmp_path, monkeypatch):
    t = make(tmp_path, data="ring8", steps=10, batch_size=8, log_every=5)
    real_step = t._discriminator_step

    def poisoned(d_step):
        loss = real_step(d_step)
        return loss * float("nan") if t.step == 6 else loss  # t.step counts finished steps

    monkeypatch.setattr(t, "_discriminator_step", poisoned)
    with pytest.raises(NonFiniteLoss, match="step 7: loss_d is nan"):
        t.run()


def test_ctrl_c_saves_a_checkpoint_that_resumes(tmp_path, monkeypatch):
    t = make(tmp_path, data="ring8", steps=10, batch_size=8, log_every=1)
    real_step = t._generator_step

    def interrupted():
        if t.step == 4:
            raise KeyboardInterrupt
        return real_step()

    monkeypatch.setattr(t, "_generator_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        t.run()
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["step"] == 4
    resumed = make(tmp_path, resume=True)
    assert resumed.step == 4
    resumed.run()
    assert [r["step"] for r in rows(tmp_path) if "loss_d" in r] == list(range(1, 11))


def test_training_errors_are_raised_for_unlabelled_conditional(tmp_path):
    import numpy as np

    np.save(tmp_path / "p.npy", np.zeros((20, 2), np.float32))
    with pytest.raises(TrainingError, match="--conditional needs labelled data"):
        make(tmp_path / "r", data=str(tmp_path / "p.npy"), conditional=True)


DDP_WORKER = """
import sys, torch, torch.distributed as dist
from ganfast.train import Trainer, TrainConfig
t = Trainer(TrainConfig(data=sys.argv[2], model=sys.argv[3], steps=4, batch_size=8, log_every=2,
            eval_every=4, sample_every=2, tensorboard=False), out=sys.argv[1])
t.run()
flat = torch.cat([p.detach().flatten() for p in list(t.G.parameters()) + list(t.D.parameters())]
                 + [b.flatten().float() for b in t.D.buffers()])
gathered = [torch.zeros_like(flat) for _ in range(2)]
dist.all_gather(gathered, flat)
assert torch.equal(gathered[0], gathered[1]), "the processes' models differ"
print("rank", dist.get_rank(), "in sync")
t.close()
dist.destroy_process_group()
"""


@pytest.mark.parametrize("dataset,model", [("digits", "sngan"), ("ring8", "mlp")])
def test_torchrun_trains_with_ddp_on_gloo(tmp_path, dataset, model):
    worker = tmp_path / "worker.py"
    worker.write_text(DDP_WORKER)
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                             "--nproc_per_node", "2", str(worker), str(out), dataset, model],
                            capture_output=True, text=True, env=env, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("in sync") == 2
    table = rows(out)  # one writer: each row once
    assert [r["step"] for r in table] == [0, 2, 4]
    assert (out / "samples_final.png").exists() and (out / "checkpoint.pt").exists()


def test_trainer_module_names_its_public_pieces():
    assert trainer_module.Trainer is Trainer


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_trains_with_finite_losses(tmp_path, amp):
    t = make(tmp_path, data="digits", steps=4, batch_size=8, amp=amp, loss="wasserstein",
             penalty="wgan-gp", penalty_every=1, log_every=1, eval_every=100)
    t.run()
    table = [r for r in rows(tmp_path) if "loss_d" in r]
    assert len(table) == 4
    assert all(abs(r["loss_d"]) < 1e4 for r in table)  # finite (NaN would have stopped the run)
    assert (t.scaler_d.is_enabled(), t.scaler_g.is_enabled()) == ((amp == "fp16",) * 2)


def test_conditional_image_folder_draws_one_grid_row_per_class(tmp_path):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("a", "b", "c"):
        (tmp_path / "data" / cls).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(
                tmp_path / "data" / cls / f"{i}.png")
    t = make(tmp_path / "run", data=str(tmp_path / "data"), conditional=True, steps=2, batch_size=4)
    t.run()
    assert t.fixed_y.tolist() == [c for c in range(3) for _ in range(10)]
    with Image.open(tmp_path / "run" / "samples_final.png") as grid:  # 8x8 images drawn 8x larger
        assert grid.size == ((10 * 9 + 1) * 8, (3 * 9 + 1) * 8)  # 3 rows of 10, 1-pixel borders


@pytest.mark.slow
def test_compiled_models_train(tmp_path):
    t = make(tmp_path, data="ring8", steps=3, batch_size=8, compile=True, log_every=1)
    t.run()
    assert len([r for r in rows(tmp_path) if "loss_d" in r]) == 3
