"""Short `ganfast train` runs: outputs, checkpoints, exact resume, bad input, DDP on gloo."""

import json
import os
import re
import signal
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
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
def test_a_short_run_writes_grids_metrics_plot_and_checkpoint(tmp_path, dataset, capsys):
    out = tmp_path / dataset
    code = cli.main(["train", "--data", dataset, "--steps", "6", "--batch-size", "16", "--out", str(out),
                     "--log-every", "2", "--sample-every", "3", "--eval-every", "6"])
    assert code == 0
    # The closing message lists what the folder holds.
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"outputs in {out}: checkpoint.pt, generator_ema.safetensors, metrics.jsonl, metrics.png, "
        "samples_final.png, tensorboard/, 2 sample grids samples_<step>.png")
    for name in ("samples_0000000.png", "samples_0000003.png", "samples_final.png", "metrics.png",
                 "checkpoint.pt", "generator_ema.safetensors"):
        assert (out / name).stat().st_size > 0, name
    table = rows(out)
    assert [r["step"] for r in table] == [0, 2, 4, 6]
    assert all({"loss_d", "loss_g"} <= set(r) for r in table[1:])
    expected = ({"modes_covered", "high_quality", "mode_kl"} if dataset != "digits"
                else {"fd_digits", "class_kl"})
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
    # Readable as any file the user makes (safetensors alone writes owner-only files).
    umask = os.umask(0o022)
    os.umask(umask)
    for name in ("checkpoint.pt", "generator_ema.safetensors", "metrics.jsonl", "samples_final.png"):
        assert stat.S_IMODE((tmp_path / "run" / name).stat().st_mode) == 0o666 & ~umask, name


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


def test_a_folder_of_other_files_keeps_them_and_refuses_names_a_run_writes(tmp_path, capsys):
    # A run wrote over the user's files named like its outputs (metrics.png).
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "metrics.png").write_text("my plot")
    args = ["train", "--data", "ring8", "--steps", "1", "--batch-size", "8", "--no-tensorboard"]
    assert cli.main([*args, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"--out {out} holds files named like a run's outputs (metrics.png) and no ganfast " \
           "run: choose a new or empty folder (nothing was written)" in err and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["metrics.png", "notes.txt"]
    assert (out / "metrics.png").read_text() == "my plot"
    for name in ("samples_0000100.png", "tensorboard"):  # the names of grids and folders too
        (out / "metrics.png").unlink(missing_ok=True)
        (out / name).mkdir() if name == "tensorboard" else (out / name).write_text("mine")
        assert cli.main([*args, "--out", str(out)]) == 1
        assert f"named like a run's outputs ({name})" in capsys.readouterr().err
        (out / name).rmdir() if name == "tensorboard" else (out / name).unlink()
    # Other files stay, the run beside them: a log the shell made (`> out/train.log`) before
    # the run started; hidden ones (.gitkeep) are not named. A run's folder holding the user's
    # files since resumes.
    (out / ".gitkeep").write_text("")
    (out / "train.log").write_text("")
    assert cli.main([*args, "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert f"note: --out {out} also holds notes.txt, train.log: the run writes beside them" in said
    outputs = said.split("outputs in")[-1]
    assert "checkpoint.pt" in outputs and "notes.txt" not in outputs and "train.log" not in outputs
    assert (out / "notes.txt").read_text() == "mine" and (out / "checkpoint.pt").exists()
    assert cli.main(["train", "--resume", "--steps", "2", "--out", str(out)]) == 0
    assert "also holds" not in capsys.readouterr().out
    assert (out / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("args,message", [
    (["--data", "mnist"], "digits, ring8, grid25"),
    (["--backend", "cuda", "--device", "cpu"], "--backend cuda:"),
    (["--data", "ring8", "--conditional", "--data", "EMPTY"], "no images found"),
    (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    (["--steps", "-5"], "--steps must be >= 1, got -5"),
    (["--lr-g", "-1"], "--lr-g must be > 0"),
    (["--ema", "2"], "--ema must be in [0, 1)"),
    (["--penalty-weight", "-10"], "--penalty-weight must be >= 0"),
    (["--ac-weight", "-1"], "--ac-weight must be >= 0"),
    (["--seed", "18446744073709552"], "--seed must be in [0, 2**32)"),
    (["--width", "0"], "--width must be >= 1"),
    (["--out", "FILE"], "is a file, not a run folder"),
    (["--lr-d", "inf"], "--lr-d must be > 0 and finite, got inf"),
    (["--penalty-weight", "inf"], "--penalty-weight must be >= 0 and finite, got inf"),
    (["--image-size", "3"], "--image-size must be >= 4 (the smallest side the models build), got 3"),
    (["--penalty", "none", "--penalty-weight", "2"],
     "--penalty-weight has no effect with --penalty none"),
    (["--penalty", "none", "--penalty-every", "2"], "--penalty-every has no effect with --penalty none"),
    (["--ac-weight", "2"], "--ac-weight weighs the class loss of --conditional (AC-GAN), and this "
                           "run is not conditional"),
    (["--device", "cuda:x"], "--device 'cuda:x': expected auto, cpu, cuda or cuda:N"),
])
def test_bad_input_is_a_message_not_a_traceback(tmp_path, capsys, args, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_text("")
    args = [{"EMPTY": str(tmp_path / "empty"), "FILE": str(tmp_path / "file")}.get(a, a) for a in args]
    assert cli.main(["train", "--steps", "1", "--out", str(tmp_path / "run"), *args]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()  # a refused run leaves no folder behind


@pytest.mark.parametrize("args,message", [
    (["--model", "vgg"], "'auto', 'mlp', 'dcgan', 'sngan'"),
    (["--loss", "lsgan"], "'nonsaturating', 'hinge', 'wasserstein'"),
    (["--penalty", "gp"], "'none', 'wgan-gp', 'r1', 'r2'"),
    (["--amp", "fp8"], "'none', 'bf16', 'fp16'"),
    (["--backend", "fastest"], "'auto', 'cuda', 'triton', 'torch'"),
])
def test_an_unknown_choice_is_a_usage_error(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as info:
        cli.main(["train", "--out", str(tmp_path / "run"), *args])
    assert info.value.code == 2 and f"invalid choice: '{args[1]}' (choose from {message})" in \
        capsys.readouterr().err.replace('"', "'")
    # The library checks the same settings when they come from a TrainConfig.
    field = args[0].removeprefix("--")
    with pytest.raises(TrainingError, match=f"--{field}"):
        Trainer(TrainConfig(**{field: args[1]}), out=tmp_path / "lib")
    assert not (tmp_path / "run").exists() and not (tmp_path / "lib").exists()


def test_a_nan_loss_stops_the_run_naming_the_step_and_loss(tmp_path, monkeypatch):
    t = make(tmp_path, data="ring8", steps=10, batch_size=8, log_every=5)
    real_step = t._discriminator_step

    def poisoned(d_step):
        loss = real_step(d_step)
        return loss * float("nan") if t.step == 6 else loss  # t.step counts finished steps

    monkeypatch.setattr(t, "_discriminator_step", poisoned)
    with pytest.raises(NonFiniteLoss, match="step 7: loss_d is nan"):
        t.run()


def test_weights_gone_non_finite_are_never_checkpointed(tmp_path):
    # A huge learning rate makes the weights NaN between log steps (losses are checked there
    # only) and before a checkpoint step: the run stops there, the last good checkpoint kept.
    from ganfast.train import checkpoint

    t = make(tmp_path / "run", data="ring8", steps=40, log_every=20, sample_every=5,
             eval_every=40, loss="wasserstein", penalty="none", lr_g=1e25, lr_d=1e25)
    with pytest.raises(NonFiniteLoss, match="the weights are no longer finite"):
        t.run()
    saved = checkpoint.load(tmp_path / "run")
    assert all(torch.isfinite(v).all() for part in ("G", "D") for v in saved[part].values()
               if v.is_floating_point())


def test_evaluations_come_at_eval_steps_that_are_not_log_steps(tmp_path):
    make(tmp_path, data="ring8", steps=12, batch_size=32, log_every=5, eval_every=4).run()
    evaluated = [r["step"] for r in rows(tmp_path) if "modes_covered" in r]
    assert evaluated == [0, 4, 8, 12]


@pytest.mark.parametrize("penalty,every", [("wgan-gp", 1), ("r1", 4), ("r2", 4), ("none", 4)])
def test_penalty_every_defaults_per_penalty(tmp_path, penalty, every):
    # WGAN-GP on every critic step (the canonical recipe), R1/R2 lazily (StyleGAN2's);
    # an explicit --penalty-every wins.
    assert make(tmp_path / "a", data="ring8", penalty=penalty).config.penalty_every == every
    if penalty == "none":  # an interval of no penalty would do nothing: refused when typed
        settings = dict(data="ring8", penalty=penalty, penalty_every=3)
        with pytest.raises(TrainingError, match="--penalty-every has no effect"):
            Trainer(TrainConfig(tensorboard=False, **settings), out=tmp_path / "b",
                    log=lambda text: None, given=set(settings))
        # A config rebuilt from such a run (which fills in the interval) builds again.
        saved = make(tmp_path / "c", data="ring8", penalty=penalty).config
        assert Trainer(saved, out=tmp_path / "d", log=lambda text: None).config.penalty == "none"
        return
    assert make(tmp_path / "b", data="ring8", penalty=penalty,
                penalty_every=3).config.penalty_every == 3


def test_progress_bar_keeps_the_logged_losses_between_log_steps(tmp_path):
    from ganfast.train.monitor import Monitor

    monitor = Monitor(tmp_path, 10, 0, True, False)
    try:
        monitor.advance(1, {"loss_d": 0.5})
        monitor.advance(1, {})
        assert "loss_d=0.5" in monitor.bar.postfix
    finally:
        monitor.close()


def test_resume_from_a_damaged_checkpoint_names_it(tmp_path):
    from ganfast.train import checkpoint

    make(tmp_path, data="ring8", steps=2, batch_size=8).run()
    (tmp_path / checkpoint.CHECKPOINT).write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(TrainingError, match="--resume: .*checkpoint.pt is not a readable"):
        make(tmp_path, resume=True)


def test_resume_with_models_that_do_not_fit_the_checkpoint_names_it(tmp_path):
    from ganfast.train import checkpoint

    make(tmp_path, data="ring8", steps=2, batch_size=8).run()
    saved = checkpoint.load(tmp_path)
    saved["G"] = {"not a key": torch.zeros(1)}
    torch.save(saved, tmp_path / checkpoint.CHECKPOINT)
    with pytest.raises(TrainingError, match="does not fit the models"):
        make(tmp_path, resume=True)


def test_missing_inception_weights_name_the_flag(tmp_path):
    with pytest.raises(TrainingError, match="nowhere.pth \\(from --inception-weights\\)"):
        make(tmp_path / "run", data="digits", inception_weights=str(tmp_path / "nowhere.pth"))
    notes = []
    Trainer(TrainConfig(data="ring8", inception_weights=str(tmp_path / "nowhere.pth"),
                        tensorboard=False), out=tmp_path / "points", log=notes.append)
    assert any("--inception-weights measures images" in note for note in notes)


@pytest.mark.parametrize("given,message", [
    ("nowhere.pth", "weights file nowhere.pth ({}) does not exist: download https://"),
    ("folder", "folder ({}) is a folder, not a weights file: download https://"),
    ("garbage.pth", "garbage.pth ({}) is not the FID Inception weights (UnpicklingError: "),
    ("other.pth", "other.pth ({}) is not the FID Inception weights (missing keys "),
], ids=["missing", "folder", "garbage", "other-keys"])
@pytest.mark.parametrize("source", ["--inception-weights", "GANFAST_INCEPTION_WEIGHTS"],
                         ids=["flag", "variable"])
def test_inception_weights_errors_name_where_the_path_came_from(tmp_path, monkeypatch, capsys,
                                                                  given, message, source):
    """Not `ganfast fid`'s --weights, which ganfast.metrics' messages name by default."""
    import numpy as np

    np.save(tmp_path / "images.npy", np.zeros((4, 1, 8, 8), np.uint8) + 9)
    (tmp_path / "folder").mkdir()
    (tmp_path / "garbage.pth").write_text("not a checkpoint")
    torch.save({"fc.weight": torch.zeros(1)}, tmp_path / "other.pth")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GANFAST_INCEPTION_WEIGHTS", raising=False)
    args = ["train", "--data", "images.npy", "--steps", "1", "--out", "run"]
    if source == "--inception-weights":
        args += ["--inception-weights", given]
        origin = "from --inception-weights"
    else:
        monkeypatch.setenv("GANFAST_INCEPTION_WEIGHTS", given)
        origin = "from the GANFAST_INCEPTION_WEIGHTS variable"
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert f"ganfast train: fid_inception: {message.format(origin)}" in err, err
    assert "--weights" not in err and "ganfast fid" not in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_inception_weights_load_from_a_path_under_the_home_folder(tmp_path, monkeypatch):
    """~ is the home folder, as in --data (a shell leaves it in --inception-weights=~/...)."""
    import numpy as np

    from ganfast.metrics.inception import FIDInceptionV3
    from ganfast.train import quality

    monkeypatch.setenv("HOME", str(tmp_path))
    torch.save(FIDInceptionV3().state_dict(), tmp_path / "inception.pth")  # random weights
    np.save(tmp_path / "images.npy", np.zeros((2, 1, 8, 8), np.uint8) + 9)
    t = make(tmp_path / "run", data=str(tmp_path / "images.npy"), inception_weights="~/inception.pth")
    assert isinstance(t.evaluator, quality.InceptionFID) and t.evaluator.real.count == 2
    # An empty flag (a script's --inception-weights "$W", W unset) leaves it to the variable.
    monkeypatch.setenv("GANFAST_INCEPTION_WEIGHTS", str(tmp_path / "inception.pth"))
    t = make(tmp_path / "run2", data=str(tmp_path / "images.npy"), inception_weights="")
    assert isinstance(t.evaluator, quality.InceptionFID)


@pytest.mark.parametrize("seed", [-1, 2**32])
def test_seed_out_of_range_is_refused(tmp_path, seed):
    with pytest.raises(TrainingError, match=r"--seed must be in \[0, 2\*\*32\)"):
        make(tmp_path, data="ring8", seed=seed)


def _weights(t: Trainer) -> list:
    return [v.clone() for m in (t.G, t.D, t.G_ema) for v in m.state_dict().values()]


def _signal_during_step(t, monkeypatch, at_step, *signals):
    """Send `signals` to this process in the middle of iteration at_step + 1: after its D step,
    before its G step (the point where a checkpoint would hold half an iteration)."""
    real_step = t._generator_step

    def signalled():
        if t.step == at_step:
            for sig in signals:
                os.kill(os.getpid(), sig)
        return real_step()

    monkeypatch.setattr(t, "_generator_step", signalled)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_signal_mid_iteration_checkpoints_the_iteration_and_resumes_exactly(
        tmp_path, monkeypatch, sig):
    settings = dict(data="ring8", steps=8, batch_size=8, log_every=1, sample_every=100)
    straight = make(tmp_path / "straight", **settings)
    straight.run()
    t = make(tmp_path / "stopped", **settings)
    _signal_during_step(t, monkeypatch, 4, sig)
    with pytest.raises(KeyboardInterrupt):
        t.run()
    assert torch.load(tmp_path / "stopped" / "checkpoint.pt", weights_only=True)["step"] == 5
    resumed = make(tmp_path / "stopped", resume=True)
    assert resumed.step == 5
    resumed.run()
    assert loss_rows(tmp_path / "stopped") == loss_rows(tmp_path / "straight")
    assert all(torch.equal(a, b) for a, b in zip(_weights(resumed), _weights(straight), strict=True))


@pytest.mark.parametrize("stop_at", [5, 2])
def test_a_stop_between_log_steps_resumes_with_the_rows_of_the_uninterrupted_run(
        tmp_path, monkeypatch, stop_at):
    # The losses since the last row go into the checkpoint (no partial row): the resumed run's
    # rows average the same steps as the uninterrupted run's, bit for bit. The same through a
    # checkpoint taken at a sample step between log steps (sample_every=3).
    settings = dict(data="ring8", steps=8, batch_size=8, log_every=4, sample_every=3,
                    eval_every=100)
    make(tmp_path / "straight", **settings).run()
    t = make(tmp_path / "stopped", **settings)
    _signal_during_step(t, monkeypatch, stop_at, signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        t.run()
    assert [row[0] for row in loss_rows(tmp_path / "stopped")] == ([4] if stop_at >= 4 else [])
    make(tmp_path / "stopped", resume=True).run()
    assert loss_rows(tmp_path / "stopped") == loss_rows(tmp_path / "straight")


def test_a_run_stopped_at_its_last_step_logs_its_last_row_on_resume(tmp_path, monkeypatch):
    # Stopped during the last iteration: the checkpoint holds the losses since the last row,
    # and resuming with nothing left to train logs that row and its evaluation.
    settings = dict(data="ring8", steps=7, batch_size=8, log_every=4, sample_every=100,
                    eval_every=100)
    make(tmp_path / "straight", **settings).run()
    t = make(tmp_path / "stopped", **settings)
    _signal_during_step(t, monkeypatch, 6, signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        t.run()
    make(tmp_path / "stopped", resume=True).run()
    assert loss_rows(tmp_path / "stopped") == loss_rows(tmp_path / "straight")
    assert [r["step"] for r in rows(tmp_path / "stopped") if "modes_covered" in r] == [0, 7]


def test_resuming_a_complete_run_says_there_is_nothing_left_to_train(tmp_path):
    make(tmp_path, data="ring8", steps=2, batch_size=8).run()
    said = []
    Trainer(TrainConfig(), out=tmp_path, resume=True, log=said.append).run()
    assert said[0] == (f"resuming {tmp_path} at step 2 of 2 (every step is trained: pass a "
                       "larger --steps to train on)")
    said.clear()
    Trainer(TrainConfig(steps=3), out=tmp_path, resume=True, log=said.append)
    assert said == [f"resuming {tmp_path} at step 2 of 3"]


def test_a_single_process_random_state_resumes_in_several_processes_with_new_streams():
    # A checkpoint holding one process's random state (a single process's, or one written by
    # several before each one's was kept): each process continues with a stream of its own.
    from types import SimpleNamespace

    notes = []
    saved = {"rng": {"torch": torch.get_rng_state(), "sampler": torch.Generator().get_state()}}
    states = []
    for rank in (0, 1):
        fake = SimpleNamespace(world=2, rank=rank, step=5, out="run", sampler=torch.Generator(),
                               config=TrainConfig(seed=3), _say=notes.append)
        states.append(Trainer._saved_rng(fake, saved)["sampler"])
    assert not torch.equal(states[0], states[1])
    assert len(notes) == 2 and "starts afresh" in notes[0]


def test_a_second_ctrl_c_stops_at_once_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    t = make(tmp_path, data="ring8", steps=8, batch_size=8, log_every=1, sample_every=2)
    _signal_during_step(t, monkeypatch, 5, signal.SIGINT, signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        t.run()
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["step"] == 4
    resumed = make(tmp_path, resume=True)
    resumed.run()
    assert [r["step"] for r in rows(tmp_path)] == list(range(0, 9))  # no step twice


def test_a_crash_resumes_from_the_last_checkpoint_without_repeated_or_torn_rows(tmp_path, monkeypatch):
    settings = dict(data="ring8", steps=6, batch_size=8, log_every=1, sample_every=3)
    make(tmp_path / "straight", **settings).run()
    t = make(tmp_path / "crashed", **settings)
    real_step = t._generator_step

    def crashing():
        if t.step == 4:
            raise RuntimeError("the machine went away")
        return real_step()

    monkeypatch.setattr(t, "_generator_step", crashing)
    with pytest.raises(RuntimeError):
        t.run()
    metrics = tmp_path / "crashed" / "metrics.jsonl"
    assert [r["step"] for r in rows(tmp_path / "crashed")] == [0, 1, 2, 3, 4]  # checkpoint at 3
    with open(metrics, "a") as f:
        f.write('{"step": 5, "loss_d": 0.3')  # a line torn by the crash
    make(tmp_path / "crashed", resume=True).run()
    assert loss_rows(tmp_path / "crashed") == loss_rows(tmp_path / "straight")
    assert [r["step"] for r in rows(tmp_path / "crashed")] == list(range(7))


def test_a_run_stopped_before_any_step_resumes_from_step_zero(tmp_path, monkeypatch):
    t = make(tmp_path, data="ring8", steps=3, batch_size=8, log_every=1)
    monkeypatch.setattr(t, "_discriminator_step", lambda d_step: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        t.run()
    resumed = make(tmp_path, resume=True)
    assert resumed.step == 0
    resumed.run()
    assert [r["step"] for r in rows(tmp_path)] == [0, 1, 2, 3]


def test_a_longer_resumed_run_derives_its_intervals_from_the_new_length(tmp_path):
    make(tmp_path, data="ring8", steps=5, batch_size=8).run()  # samples every step
    make(tmp_path, resume=True, steps=10).run()  # every 2nd step from here
    names = {p.name for p in tmp_path.glob("samples_*.png")}
    assert {"samples_0000006.png", "samples_0000008.png"} <= names
    assert not {"samples_0000007.png", "samples_0000009.png"} & names


@pytest.mark.parametrize("args,message", [
    (["--loss", "hinge"], r"--loss 'hinge' \(saved: 'nonsaturating'\)"),
    (["--batch-size", "7", "--lr-g", "5"], r"--batch-size 7 \(saved: 8\), --lr-g 5.0"),
    (["--steps", "2"], "--steps 2 is below the step 3"),
])
def test_resume_refuses_settings_it_would_otherwise_ignore(tmp_path, capsys, args, message):
    out = str(tmp_path / "run")
    assert cli.main(["train", "--data", "ring8", "--steps", "3", "--batch-size", "8", "--out", out]) == 0
    capsys.readouterr()
    assert cli.main(["train", "--resume", "--out", out, *args]) == 1
    assert re.search(message, capsys.readouterr().err)
    assert cli.main(["train", "--resume", "--out", out, "--steps", "4", "--no-tensorboard",
                     "--sample-every", "1"]) == 0  # what may change


def test_a_run_on_a_relative_data_path_resumes_from_another_folder(tmp_path, monkeypatch, capsys):
    # The checkpoint holds where the data are, not a path relative to where the run started:
    # resumed from elsewhere (a cluster job's other working folder) it finds them, and --data
    # naming the same file another way is the same setting, not a conflict.
    import numpy as np

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    np.save(tmp_path / "a" / "pts.npy", np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32))
    out = str(tmp_path / "run")
    monkeypatch.chdir(tmp_path / "a")
    assert cli.main(["train", "--data", "pts.npy", "--steps", "2", "--batch-size", "8",
                     "--no-tensorboard", "--out", out]) == 0
    monkeypatch.chdir(tmp_path / "b")
    assert cli.main(["train", "--resume", "--out", out, "--steps", "3"]) == 0, capsys.readouterr().err
    assert cli.main(["train", "--resume", "--out", out, "--steps", "4",
                     "--data", str(tmp_path / "a" / "pts.npy")]) == 0, capsys.readouterr().err
    monkeypatch.chdir(tmp_path / "a")
    assert cli.main(["train", "--resume", "--out", out, "--steps", "5", "--data", "pts.npy"]) == 0
    # (no step-0 row: the points of a .npy have nothing to measure)
    assert [r["step"] for r in rows(tmp_path / "run")] == list(range(1, 6))
    capsys.readouterr()
    np.save(tmp_path / "b" / "pts.npy", np.zeros((64, 2), np.float32))
    monkeypatch.chdir(tmp_path / "b")  # another file of the same name: still refused
    assert cli.main(["train", "--resume", "--out", out, "--steps", "6", "--data", "pts.npy"]) == 1
    assert "these differ: --data 'pts.npy'" in capsys.readouterr().err


def test_a_run_whose_data_moved_resumes_with_data_saying_where(tmp_path, monkeypatch, capsys):
    # A project folder moved (or copied to a cluster): the absolute path the checkpoint holds is
    # gone. Without --data the run says so; with it, it continues on the same samples.
    import numpy as np

    (tmp_path / "proj").mkdir()
    np.save(tmp_path / "proj" / "pts.npy",
            np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32))
    monkeypatch.chdir(tmp_path / "proj")
    assert cli.main(["train", "--data", "pts.npy", "--steps", "2", "--batch-size", "8",
                     "--no-tensorboard", "--out", "run"]) == 0
    (tmp_path / "proj").rename(tmp_path / "moved")
    monkeypatch.chdir(tmp_path / "moved")
    capsys.readouterr()
    assert cli.main(["train", "--resume", "--out", "run", "--steps", "3"]) == 1
    err = capsys.readouterr().err
    assert "is no longer there; pass --data with where they are now" in err
    assert str(tmp_path / "proj" / "pts.npy") in err
    assert cli.main(["train", "--resume", "--out", "run", "--steps", "3", "--data", "pts.npy"]) == 0
    assert "the data of run, moved from" in capsys.readouterr().out
    assert [r["step"] for r in rows(tmp_path / "moved" / "run")] == [1, 2, 3]  # (nothing measured)
    # stored where they are now: the next resume needs no --data
    assert cli.main(["train", "--resume", "--out", "run", "--steps", "4"]) == 0
    # another shape is still refused, after reading it
    np.save(tmp_path / "moved" / "images.npy", np.full((64, 8, 8), 0.5, np.float32))
    (tmp_path / "moved" / "pts.npy").rename(tmp_path / "moved" / "gone.npy")
    capsys.readouterr()
    assert cli.main(["train", "--resume", "--out", "run", "--steps", "5", "--data", "images.npy"]) == 1
    assert "was trained on [2]" in capsys.readouterr().err


def test_resume_takes_flags_typed_even_when_they_are_defaults(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", "--data", "ring8", "--steps", "2", "--batch-size", "8",
                     "--no-tensorboard", "--out", str(out)]) == 0
    assert not (out / "tensorboard").exists()
    capsys.readouterr()
    assert cli.main(["train", "--resume", "--out", str(out), "--data", "digits"]) == 1  # default
    assert "--data 'digits' (saved: 'ring8')" in capsys.readouterr().err
    assert cli.main(["train", "--resume", "--out", str(out), "--steps", "3", "--tensorboard"]) == 0
    assert list((out / "tensorboard").iterdir())  # switched back on


def test_conditional_points_train_and_plot(tmp_path):
    make(tmp_path, data="ring8", conditional=True, steps=2, batch_size=8).run()
    assert (tmp_path / "samples_final.png").stat().st_size > 0


def test_a_plot_that_fails_loses_no_checkpoint(tmp_path, monkeypatch, capsys):
    from ganfast.train import monitor

    def broken(rows, path):
        raise OSError("disk full")

    monkeypatch.setattr(monitor, "plot_metrics", broken)
    t = Trainer(TrainConfig(data="ring8", steps=3, batch_size=8, tensorboard=False), out=tmp_path)
    t.run()
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["step"] == 3
    assert "metrics.png not written: OSError: disk full" in capsys.readouterr().out


def test_training_errors_are_raised_for_unlabelled_conditional(tmp_path):
    import numpy as np

    np.save(tmp_path / "p.npy", np.zeros((20, 2), np.float32))
    with pytest.raises(TrainingError, match="--conditional needs labelled data"):
        make(tmp_path / "r", data=str(tmp_path / "p.npy"), conditional=True)


def test_conditional_on_a_folder_of_one_class_is_refused(tmp_path):
    # `--data photos --conditional` with all images in photos/train/: one class, so the class
    # loss is 0 and the embedding learns nothing; it trained as an unconditional run, unsaid.
    import numpy as np
    from PIL import Image

    (tmp_path / "photos" / "train").mkdir(parents=True)
    for i in range(4):
        Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(tmp_path / "photos" / "train" / f"{i}.png")
    data = str(tmp_path / "photos")
    with pytest.raises(TrainingError, match=r"--conditional needs at least 2 classes: .*photos has "
                                            r"one, its subfolder train/; put each class's images in "
                                            r"a subfolder of its own, or leave out --conditional"):
        make(tmp_path / "run", data=data, conditional=True, steps=1, batch_size=4)
    assert not (tmp_path / "run").exists()
    make(tmp_path / "run", data=data, steps=1, batch_size=4, width=4).run()  # unconditional: trains
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["step"] == 1


@pytest.fixture
def global_backend(monkeypatch):
    """set(value): as GANFAST_BACKEND=value at import, nothing set_backend() since; ganfast's
    global backend restored after the test."""
    from ganfast import backends

    def set_environment(value):
        monkeypatch.setenv("GANFAST_BACKEND", value)
        monkeypatch.setattr(backends, "_environment", value)
        monkeypatch.setattr(backends, "_selected", None)

    return set_environment


def test_ganfast_backend_in_the_environment_is_the_default_of_backend(tmp_path, capsys,
                                                                      global_backend):
    # Left out, --backend was set to "auto", which hid GANFAST_BACKEND: `GANFAST_BACKEND=torch
    # ganfast train` on a GPU ran the fused kernels, and a backend that cannot run on the device
    # (triton on the CPU) trained unasked rather than being refused as every ganfast call does.
    from ganfast import backends

    args = ["train", "--data", "ring8", "--steps", "1", "--batch-size", "8", "--device", "cpu",
            "--no-tensorboard", "--eval-every", "100"]
    global_backend("triton")
    assert cli.main([*args, "--out", str(tmp_path / "a")]) == 1
    err = capsys.readouterr().err
    assert ("ganfast train: the global backend 'triton' (GANFAST_BACKEND or ganfast.set_backend): "
            "it needs CUDA tensors; got tensors on cpu (unset GANFAST_BACKEND, or pass --backend "
            "auto or torch)") in err and "Traceback" not in err
    assert not (tmp_path / "a").exists()
    # Typed, --backend wins, "auto" included, and the run says which ran.
    for backend in ("torch", "auto"):
        global_backend("triton")
        assert cli.main([*args, "--out", str(tmp_path / backend), "--backend", backend]) == 0
        assert f"device cpu, backend {backend}, writing" in capsys.readouterr().out
    global_backend("torch")
    t = make(tmp_path / "b", data="ring8", steps=1, batch_size=8, device="cpu")
    assert (t.config.backend, t.backend) == ("auto", "torch")
    global_backend("cuda-ish")
    with pytest.raises(TrainingError, match=r"GANFAST_BACKEND must be one of auto, cuda, triton, "
                                            r"torch; got 'cuda-ish' \(or pass --backend\)"):
        make(tmp_path / "c", data="ring8", device="cpu")
    # A Python caller's global choice is the default too.
    global_backend("")
    backends.set_backend("triton")
    with pytest.raises(TrainingError, match=r"the global backend 'triton' \(GANFAST_BACKEND or "
                                            r"ganfast.set_backend\): it needs CUDA tensors"):
        make(tmp_path / "d", data="ring8", device="cpu")


def test_a_runs_backend_holds_for_its_run_and_is_not_the_next_runs_default(tmp_path,
                                                                            global_backend):
    # The backend was made the process-wide choice: after Trainer(backend="triton") was refused
    # on the CPU, the next Trainer() was refused too, and a sweep's train(backend="torch") left
    # later default runs on torch.
    from ganfast import backends

    global_backend("")
    with pytest.raises(TrainingError, match="--backend triton: it needs CUDA tensors"):
        make(tmp_path / "a", data="ring8", device="cpu", backend="triton")
    t = make(tmp_path / "b", data="ring8", steps=1, batch_size=8, device="cpu", backend="torch")
    seen = []
    t._loop = lambda monitor, stop: seen.append(backends.get_backend())
    t.run()
    assert t.backend == "torch" and seen == ["torch"]  # the ops of the run read it
    assert backends.get_backend() == "auto"
    assert make(tmp_path / "c", data="ring8", steps=1, batch_size=8, device="cpu").backend == "auto"


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


DDP_RESUME_WORKER = """
import sys, torch, torch.distributed as dist
from ganfast.train import Trainer, TrainConfig
settings = dict(data="ring8", steps=4, batch_size=8, log_every=2, eval_every=4, sample_every=2,
                tensorboard=False)
t = Trainer(TrainConfig(**settings), out=sys.argv[1], log=lambda text: None)
t.run()
state = t.sampler.get_state()
t.close()
dist.barrier()
resumed = Trainer(TrainConfig(**{**settings, "steps": 6}), out=sys.argv[1], resume=True,
                  log=lambda text: None)
assert torch.equal(resumed.sampler.get_state(), state), "the sampler did not continue its stream"
states = [torch.zeros_like(state) for _ in range(2)]
dist.all_gather(states, state)
assert not torch.equal(states[0], states[1]), "the processes share one stream"
print("rank", dist.get_rank(), "resumed its own stream")
resumed.close()
dist.destroy_process_group()
"""


def test_torchrun_resume_gives_each_process_its_own_random_stream(tmp_path):
    # Each process draws its own data indices, latents and labels: a checkpoint keeps every
    # process's generator state, and a resume with another number of processes is refused.
    worker = tmp_path / "worker.py"
    worker.write_text(DDP_RESUME_WORKER)
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                             "--nproc_per_node", "2", str(worker), str(out)],
                            capture_output=True, text=True, env=env, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("resumed its own stream") == 2
    with pytest.raises(TrainingError, match="written by 2 process\\(es\\) and this run has 1"):
        make(out, resume=True)


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


def test_amp_on_cpu_says_it_is_usually_slower(tmp_path):
    messages = []
    Trainer(TrainConfig(data="ring8", amp="bf16", device="cpu", tensorboard=False), out=tmp_path,
            log=messages.append)
    assert any("--amp bf16 on CPU is usually slower" in m for m in messages)


def test_a_batch_larger_than_the_data_is_said_and_drawn_with_replacement(tmp_path):
    import numpy as np

    np.save(tmp_path / "ten.npy", np.zeros((10, 1, 8, 8), np.uint8) + 9)
    messages = []
    t = Trainer(TrainConfig(data=str(tmp_path / "ten.npy"), tensorboard=False), out=tmp_path / "run",
                log=messages.append)  # the default batch size of images, 64
    assert ("note: the batch size 64 (--batch-size) is more than the 10 samples of "
            f"{tmp_path / 'ten.npy'}: batches are drawn at random with replacement, so each holds "
            "every sample 6.4 times on average") in messages
    assert len(t._batch()[0]) == 64  # the batch asked for, not capped
    messages.clear()
    Trainer(TrainConfig(data=str(tmp_path / "ten.npy"), batch_size=10, tensorboard=False),
            out=tmp_path / "run", log=messages.append)
    assert not [m for m in messages if "--batch-size" in m]


def test_a_run_saved_before_checkpoints_held_the_data_shape_resumes_at_the_size_it_trained_at(
        tmp_path):
    # ganfast once stored --image-size for digits without using it: such a run trained at 16x16.
    out = tmp_path / "old"
    make(out, data="digits", steps=2, batch_size=8, log_every=1).run()
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["data_shape"] == [1, 16, 16]
    del state["data_shape"]
    state["config"]["image_size"] = 32
    torch.save(state, out / "checkpoint.pt")
    resumed = make(out, resume=True, steps=3)
    assert resumed.config.image_size is None and resumed.dataset.x.shape[1:] == (1, 16, 16)
    resumed.run()
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 3


def test_resuming_on_data_of_another_shape_is_refused_by_name(tmp_path):
    import numpy as np

    data = tmp_path / "faces.npy"
    np.save(data, np.random.default_rng(0).uniform(0, 1, (32, 3, 8, 8)).astype(np.float32))
    make(tmp_path / "run", data=str(data), steps=2, batch_size=8).run()
    np.save(data, np.random.default_rng(0).uniform(0, 1, (32, 3, 16, 16)).astype(np.float32))
    with pytest.raises(TrainingError, match=r"now gives samples of shape \[3, 16, 16\], but .* was "
                                            r"trained on \[3, 8, 8\]"):
        make(tmp_path / "run", resume=True, steps=3)


def test_a_missing_train_package_is_named_before_the_run_folder_is_made(tmp_path, monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    absent = set()
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in absent else real_find_spec(name, *a))
    absent.update({"matplotlib", "sklearn"})
    with pytest.raises(TrainingError,
                       match=r"needs matplotlib, scikit-learn: pip install 'ganfast\[train\]'"):
        make(tmp_path / "run", data="digits", steps=1)
    with pytest.raises(TrainingError, match=r"needs matplotlib: "):  # points need no scikit-learn
        make(tmp_path / "run", data="ring8", steps=1)
    absent.clear()
    absent.add("tensorboard")
    said = []
    Trainer(TrainConfig(data="ring8", steps=1), out=tmp_path / "run", log=said.append)
    assert "TensorBoard events not written: the tensorboard package is not installed" in said[0]
    with pytest.raises(TrainingError, match="--tensorboard needs the tensorboard package"):
        Trainer(TrainConfig(data="ring8", steps=1, tensorboard=True), out=tmp_path / "run",
                given={"tensorboard"})
    assert not (tmp_path / "run").exists()


def test_runs_started_in_the_same_second_get_folders_of_their_own(tmp_path, monkeypatch):
    # Both are set up before either makes its folder, and their default names are the same.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(trainer_module, "default_run_folder",
                        lambda data: Path("runs") / f"{data}-20260101-120000")
    first = make(None, data="ring8", steps=2, batch_size=8, log_every=1)
    second = make(None, data="ring8", steps=3, batch_size=8, log_every=1)
    first_row, second_row = first.run(), second.run()
    assert first.out == Path("runs/ring8-20260101-120000")
    assert second.out == Path("runs/ring8-20260101-120000-2")
    assert [r["step"] for r in rows(first.out)] == [0, 1, 2]
    assert [r["step"] for r in rows(second.out)] == [0, 1, 2, 3]
    assert first_row == rows(first.out)[-1] and second_row == rows(second.out)[-1]


def test_the_end_summary_is_the_runs_own_last_row_not_the_files(tmp_path, monkeypatch):
    # Another program appending to metrics.jsonl does not change what the run reports.
    t = make(tmp_path, data="ring8", steps=2, batch_size=8, log_every=1)
    real_save = t.save_samples

    def save_then_append(name):
        real_save(name)
        if name == "samples_final.png":
            with open(tmp_path / "metrics.jsonl", "a") as f:
                f.write('{"step": 99, "loss_d": 5.0}\n')

    monkeypatch.setattr(t, "save_samples", save_then_append)
    assert t.run() == rows(tmp_path)[-2] and rows(tmp_path)[-2]["step"] == 2


def test_a_generator_gone_non_finite_stops_the_run_before_an_evaluation(tmp_path, capsys):
    # At lr 1e30 the weights are 1e30 after step 1 (NaN after step 2) and the samples already
    # NaN, while step 1's losses (of the weights before it) are finite: evaluating the samples
    # failed inside the metrics, with a traceback.
    out = tmp_path / "run"
    assert cli.main(["train", "--steps", "10", "--batch-size", "8", "--width", "8",
                     "--no-tensorboard", "--lr-g", "1e30", "--eval-every", "1", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "step 1: the generator's samples are no longer finite; stopping (last checkpoint kept" \
        in err
    assert "Traceback" not in err
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 0


def test_a_signal_while_the_final_checkpoint_is_written_waits_for_it(tmp_path, monkeypatch, capsys):
    t = make(tmp_path, data="ring8", steps=4, batch_size=8, log_every=1, sample_every=100)
    real_save = t.save_samples

    def interrupted_save(name):
        if name == "samples_final.png":
            os.kill(os.getpid(), signal.SIGINT)
        real_save(name)

    monkeypatch.setattr(t, "save_samples", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        t.run()
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["step"] == 4
    assert [r["step"] for r in rows(tmp_path)] == [0, 1, 2, 3, 4]
    assert (tmp_path / "samples_final.png").exists()
    assert "SIGINT after the last step: the run is complete" in capsys.readouterr().out


def test_a_signal_during_the_last_evaluation_waits_for_the_final_outputs(tmp_path, monkeypatch,
                                                                        capsys):
    t = make(tmp_path, data="ring8", steps=4, batch_size=8, log_every=1, sample_every=100)
    real_evaluate = t.evaluate

    def interrupted_evaluate():
        if t.step == 4:
            os.kill(os.getpid(), signal.SIGINT)
        return real_evaluate()

    monkeypatch.setattr(t, "evaluate", interrupted_evaluate)
    with pytest.raises(KeyboardInterrupt):
        t.run()
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["step"] == 4
    assert (tmp_path / "samples_final.png").exists()
    assert "SIGINT after the last step: the run is complete" in capsys.readouterr().out


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)],
                         ids=["SIGINT", "SIGTERM"])
def test_the_exit_status_of_a_stopped_run_is_the_shells_for_its_signal(
        tmp_path, monkeypatch, sig, code):
    real_step = Trainer._generator_step

    def signalled(self):
        if self.step == 1:
            os.kill(os.getpid(), sig)
        return real_step(self)

    monkeypatch.setattr(Trainer, "_generator_step", signalled)
    assert cli.main(["train", "--data", "ring8", "--steps", "4", "--batch-size", "8",
                     "--no-tensorboard", "--out", str(tmp_path)]) == code
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["step"] == 2


def test_a_ctrl_c_during_the_shutdown_is_no_traceback(tmp_path, monkeypatch):
    def impatient_close(self):
        raise KeyboardInterrupt  # as Python's handler raises it, the loop's being put back

    monkeypatch.setattr(Trainer, "close", impatient_close)
    assert cli.main(["train", "--data", "ring8", "--steps", "2", "--batch-size", "8",
                     "--no-tensorboard", "--out", str(tmp_path)]) == 130


def test_resume_accepts_flags_that_equal_the_values_the_run_used(tmp_path, capsys):
    # Saved: model auto, width and image size left out; typed: what they stood for.
    out = str(tmp_path / "run")
    assert cli.main(["train", "--steps", "2", "--batch-size", "8", "--no-tensorboard",
                     "--eval-every", "100", "--out", out]) == 0
    assert cli.main(["train", "--resume", "--out", out, "--steps", "3", "--model", "dcgan",
                     "--width", "32", "--image-size", "16"]) == 0
    capsys.readouterr()
    assert cli.main(["train", "--resume", "--out", out, "--width", "16", "--model", "sngan",
                     "--image-size", "32"]) == 1
    assert ("--model 'sngan' (saved: 'dcgan'), --width 16 (saved: 32), --image-size 32 "
            "(saved: 16)") in capsys.readouterr().err


def test_images_smaller_than_the_models_take_need_image_size(tmp_path):
    import numpy as np

    np.save(tmp_path / "tiny.npy", np.zeros((10, 2, 2), np.uint8) + 9)
    with pytest.raises(TrainingError, match=r"the images are 2x2, and the models need at least "
                                            r"4x4: pass --image-size 4 \(or more\)"):
        make(tmp_path / "run", data=str(tmp_path / "tiny.npy"), steps=1, batch_size=1)
    make(tmp_path / "run", data=str(tmp_path / "tiny.npy"), image_size=4, steps=1, batch_size=1,
         width=4).run()  # a batch of one trains too: at 4x4 batch norm sees 16 values
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["step"] == 1


def test_device_cuda_n_is_understood(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(TrainingError, match="--device cuda:0: torch sees no CUDA device"):
        make(tmp_path, data="ring8", device="cuda:0")


def test_data_named_like_a_built_in_gets_the_defaults_of_its_kind(tmp_path):
    # The defaults were chosen by the data's name, which a folder or .npy takes from its path:
    # imgs/ring8/ trained 5,000 steps of batch 256 at lr 1e-3 (the 2-D mixture's); ring8.npy
    # 5,000 steps instead of the 3,000 of points.
    from PIL import Image

    from ganfast.train.config import PRESETS

    folder = tmp_path / "imgs" / "ring8"
    folder.mkdir(parents=True)
    for i in range(8):
        Image.fromarray(np.full((8, 8, 3), 30 * i, np.uint8)).save(folder / f"{i}.png")
    np.save(tmp_path / "ring8.npy", np.random.default_rng(0).standard_normal((64, 2)))
    for data, kind in ((str(folder), "images"), (str(tmp_path / "ring8.npy"), "points")):
        t = make(tmp_path / kind, data=data, device="cpu")
        assert t.dataset.name == "ring8"
        assert {k: getattr(t.config, k) for k in PRESETS[kind]} == PRESETS[kind], data
    assert make(tmp_path / "built-in", data="ring8", device="cpu").config.steps == 5000


def test_a_conditional_folder_of_thirty_classes_draws_a_bounded_grid_of_every_class(tmp_path):
    # One row of 10 per class made 30 classes a grid of 300 samples, 30 rows by 10 (100
    # classes: 1,000 samples, ten times taller than wide). Now 3 of each class, 3 classes a
    # row: 10 rows of 9.
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in range(30):
        (tmp_path / "data" / f"c{cls:02d}").mkdir(parents=True)
        Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(
            tmp_path / "data" / f"c{cls:02d}" / "0.png")
    t = make(tmp_path / "run", data=str(tmp_path / "data"), conditional=True, steps=1,
             batch_size=4, width=4)
    t.run()
    assert t.fixed_y.tolist() == [c for c in range(30) for _ in range(3)]
    with Image.open(tmp_path / "run" / "samples_final.png") as grid:  # 8x8 images drawn 8x larger
        assert grid.size == ((9 * 9 + 1) * 8, (10 * 9 + 1) * 8)


def test_data_with_nothing_to_measure_logs_loss_rows_only_and_rgba_grids(tmp_path, capsys):
    # A .npy of dark RGBA images: its grids were RGB (the generated alpha dropped) with black
    # borders lost against the dark backgrounds; with nothing to measure, metrics.jsonl began
    # with {"step": 0}, a row of no figures, and --eval-every was taken without a word, setting
    # which steps logged a row of losses (rows now come by --log-every alone).
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 60, (12, 8, 8, 4), dtype=np.uint8)
    pixels[..., 3] = 255
    np.save(tmp_path / "rgba.npy", pixels)
    out = tmp_path / "run"
    assert cli.main(["train", "--data", str(tmp_path / "rgba.npy"), "--steps", "6", "--batch-size",
                     "4", "--width", "4", "--out", str(out), "--eval-every", "1", "--log-every",
                     "3", "--sample-every", "6", "--no-tensorboard"]) == 0
    said = capsys.readouterr().out
    assert (f"note: --eval-every 1: {tmp_path / 'rgba.npy'} has no built-in quality measure "
            "(digits, ring8 and grid25 have), and --inception-weights adds the FID of images; "
            "this run logs losses only") in said
    assert "done: step 6, loss_d" in said
    table = rows(out)
    assert [r["step"] for r in table] == [3, 6]
    assert all(set(r) == {"step", "loss_d", "loss_g", "steps_per_s"} for r in table)
    for name in ("samples_0000000.png", "samples_final.png"):
        with Image.open(out / name) as grid:
            assert grid.mode == "RGBA" and grid.size == ((8 * 9 + 1) * 8,) * 2
            assert grid.getpixel((0, 0)) == (255, 255, 255, 255)  # a white border, opaque


def test_a_points_scatter_draws_the_same_sample_of_the_data_at_every_step(tmp_path, monkeypatch):
    # Samples of a .npy of points were drawn alone: nothing to compare them with.
    points = np.random.default_rng(0).normal(size=(3000, 2)).astype(np.float32)
    np.save(tmp_path / "p.npy", points)
    drawn = []
    monkeypatch.setattr(trainer_module, "save_points",
                        lambda samples, centers, path, title, data: drawn.append(data))
    make(tmp_path / "run", data=str(tmp_path / "p.npy"), steps=2, batch_size=4,
         sample_every=1).run()
    assert len(drawn) == 3 and all(torch.equal(d, drawn[0]) for d in drawn)
    assert drawn[0].shape == (2000, 2)
    rows_of_data = {tuple(p) for p in points.tolist()}
    assert len({tuple(p) for p in drawn[0].tolist()} & rows_of_data) == 2000  # rows of the data


def test_a_finished_run_taken_further_keeps_the_grid_of_its_last_step(tmp_path):
    # The finished run's last grid was samples_final.png, which the longer run writes anew: its
    # step's grid is drawn again, from the restored EMA generator and the fixed latents.
    from PIL import Image

    make(tmp_path, steps=3, batch_size=8, sample_every=2).run()
    final = np.asarray(Image.open(tmp_path / "samples_final.png"))
    assert not (tmp_path / "samples_0000003.png").exists()
    make(tmp_path, resume=True, steps=5).run()
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "samples_0000003.png")), final)
    assert not np.array_equal(np.asarray(Image.open(tmp_path / "samples_final.png")), final)


def test_a_grid_is_drawn_by_batches_and_names_the_classes_it_leaves_out(tmp_path, monkeypatch):
    # A grid of up to GRID_MAX_CLASSES samples is drawn GRID_BATCH at a time, as generate(); the
    # classes past GRID_MAX_CLASSES are left out with a note (here 10 classes, of which 6 shown).
    from PIL import Image

    from ganfast.train import monitor

    def grid(folder, batch):
        monkeypatch.setattr(trainer_module, "GRID_BATCH", batch)
        said = []
        t = Trainer(TrainConfig(tensorboard=False, conditional=True, steps=1, batch_size=8),
                    out=folder, log=said.append)
        t.run()
        return np.asarray(Image.open(folder / "samples_final.png")).astype(int), said

    whole, _ = grid(tmp_path / "whole", 500)
    batched, _ = grid(tmp_path / "batched", 7)
    assert whole.shape == batched.shape and np.abs(whole - batched).max() <= 1
    monkeypatch.setattr(monitor, "GRID_MAX_CLASSES", 6)
    monkeypatch.setattr(trainer_module, "GRID_MAX_CLASSES", 6)
    shown, said = grid(tmp_path / "six", 500)
    assert "note: the sample grids show the first 6 of the 10 classes" in said
    labels, rows, cols = monitor.class_grid(10)
    assert labels.tolist() == [c for c in range(6) for _ in range(10)] and (rows, cols) == (6, 10)
    assert shown.shape[0] < whole.shape[0] and shown.shape[1] == whole.shape[1]  # 6 rows of 10
