"""The acceptance targets of `ganfast train`, on CPU, with the shipped defaults."""

import pytest

from ganfast.train import TrainConfig, Trainer

# Minutes of training each: `make test` runs them, the oldest-torch run (an API check, whose
# short runs in test_train_run.py go through the same code) leaves them out.
pytestmark = pytest.mark.quality


@pytest.fixture(autouse=True)
def shared_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("GANFAST_CACHE", str(tmp_path_factory.getbasetemp() / "ganfast-cache"))


def run(out, **settings) -> list:
    trainer = Trainer(TrainConfig(tensorboard=False, **settings), out=out, log=lambda text: None)
    trainer.run()
    import json

    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_ring8_defaults_cover_the_modes_with_high_quality_samples(tmp_path):
    last = run(tmp_path, data="ring8")[-1]  # the default length (5000 steps)
    assert last["modes_covered"] >= 7, last
    assert last["high_quality"] >= 0.70, last


def test_digits_quality_improves_from_start_to_end(tmp_path):
    """The default run's settings, shortened: the measured quality improves from step 0."""
    table = run(tmp_path, steps=200, eval_every=200)
    start, end = table[0], table[-1]
    assert end["fd_digits"] < 0.2 * start["fd_digits"], (start, end)
    assert end["class_kl"] < start["class_kl"] and end["classes_covered"] >= 9, (start, end)


def test_acgan_on_digits_draws_the_asked_class(tmp_path):
    """AC-GAN within an eighth of its default budget already reaches the 80% target."""
    last = run(tmp_path, conditional=True, steps=200, eval_every=200)[-1]
    assert last["class_accuracy"] >= 0.80, last
