"""`ganfast fid A B`: image folders and .npz statistics, a custom extractor, clear errors."""

import re

import numpy as np
import pytest
import torch
from PIL import Image

from ganfast.cli import main
from ganfast.metrics import FeatureStats, frechet_distance, kid, precision_recall

EXTRACTOR = '''
import torch

def colour_features(images):
    """Per-channel means and standard deviations, and a 2x2 pooled grey map: 10 features."""
    grey = images.mean(1, keepdim=True)
    pooled = torch.nn.functional.adaptive_avg_pool2d(grey, 2).flatten(1)
    return torch.cat([images.mean((2, 3)), images.std((2, 3)), pooled], 1)
'''


@pytest.fixture
def extractor(tmp_path, monkeypatch):
    (tmp_path / "fid_test_features.py").write_text(EXTRACTOR)
    monkeypatch.syspath_prepend(str(tmp_path))
    import fid_test_features

    return fid_test_features.colour_features


def _folder(path, n, seed, size=(12, 10), shift=0.0):
    path.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(n):
        pixels = np.clip(rng.normal(127 + shift, 50, size + (3,)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(path / f"{i:03d}.png")
    return path


def _features(folder, extractor):
    images = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("*.png"))]
    batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255
    return extractor(batch).double()


def test_fid_kid_prc_of_two_folders_equal_the_functions(tmp_path, extractor, capsys):
    a = _folder(tmp_path / "a", 23, seed=0)
    b = _folder(tmp_path / "b", 17, seed=1, shift=20)
    stats = [tmp_path / "a.npz", tmp_path / "b.npz"]
    code = main(["fid", str(a), str(b), "--features", "fid_test_features:colour_features",
                 "--kid", "--prc", "--batch-size", "5", "--device", "cpu",
                 "--save-stats", *map(str, stats)])
    out = capsys.readouterr().out
    assert code == 0, out
    fa, fb = _features(a, extractor), _features(b, extractor)
    expected = frechet_distance(fa.mean(0), torch.from_numpy(np.cov(fa.numpy(), rowvar=False)),
                                fb.mean(0), torch.from_numpy(np.cov(fb.numpy(), rowvar=False)))
    printed = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
    assert float(printed["FID"]) == pytest.approx(expected, rel=1e-5)
    kid_mean, _ = kid(fa, fb, subset_size=17)
    assert float(printed["KID"].split(" +- ")[0]) == pytest.approx(kid_mean, rel=1e-4, abs=1e-6)
    precision, recall = precision_recall(fa, fb)
    assert f"precision: {precision:.4f}  recall: {recall:.4f}" in out
    # The saved statistics give the same FID again, as .npz inputs.
    assert main(["fid", *map(str, stats)]) == 0
    again = capsys.readouterr().out
    assert float(again.split("FID: ")[1]) == pytest.approx(float(printed["FID"]), rel=1e-9)
    assert FeatureStats.load(stats[0]).count == 23


def test_bad_inputs_are_named(tmp_path, extractor, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    a = _folder(tmp_path / "a", 4, seed=0)
    mixed = _folder(tmp_path / "mixed", 2, seed=2)
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(mixed / "z.png")
    broken = _folder(tmp_path / "broken", 2, seed=3)
    (broken / "zz.png").write_bytes(b"not an image")
    features = ["--features", "fid_test_features:colour_features", "--device", "cpu"]
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, mu=np.zeros(3), sigma=np.eye(3))
    cases = [
        ([str(empty), str(a), *features], "holds no images"),
        ([str(mixed), str(a), *features], "mixed sizes"),
        ([str(broken), str(a), *features], "cannot read image"),
        ([str(a), str(wrong), *features], "feature sizes differ: .* 10, .* 3"),
        ([str(a), str(tmp_path / "missing"), *features], "does not exist"),
        ([str(a), str(wrong), "--kid", *features], "need image folders"),
        ([str(a), str(a), "--features", "no_such_module:f"], "cannot load it"),
        ([str(a), str(a), "--isc", *features], "--isc needs the Inception network"),
    ]
    for args, message in cases:
        assert main(["fid", *args]) == 1, args
        err = capsys.readouterr().err
        assert re.search("ganfast fid: .*" + message, err), err


def test_missing_inception_weights_say_how_to_get_them(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("GANFAST_INCEPTION_WEIGHTS", raising=False)
    a = _folder(tmp_path / "a", 2, seed=0)
    assert main(["fid", str(a), str(a), "--device", "cpu"]) == 1
    assert "GANFAST_INCEPTION_WEIGHTS" in capsys.readouterr().err


@pytest.mark.slow
def test_resize_flag_reaches_the_inception_network(tmp_path, capsys):
    from ganfast.bench.fid import random_inception
    from ganfast.metrics import fid_inception

    weights = tmp_path / "weights.pth"  # random, with features of a trained network's scale
    torch.save(random_inception(calibration=2).state_dict(), weights)
    a = _folder(tmp_path / "a", 2, seed=0, size=(9, 13))
    b = _folder(tmp_path / "b", 2, seed=1, size=(9, 13), shift=30)
    assert main(["fid", str(a), str(b), "--weights", str(weights), "--resize", "tf1",
                 "--device", "cpu"]) == 0
    printed = float(capsys.readouterr().out.split("FID: ")[1])
    net = fid_inception(weights, resize="tf1")
    with torch.no_grad():
        fa, fb = (net(_features(f, lambda x: x).float()).double() for f in (a, b))
    stats = [FeatureStats(2048).update(f) for f in (fa, fb)]
    expected = frechet_distance(stats[0].mean, stats[0].covariance, stats[1].mean,
                                stats[1].covariance)
    assert expected > 1 and printed == pytest.approx(expected, rel=1e-4)


def test_bad_resize_names_the_flag_and_choices(tmp_path, extractor, capsys):
    a = _folder(tmp_path / "a", 2, seed=0)
    with pytest.raises(SystemExit):
        main(["fid", str(a), str(a), "--resize", "tf2"])
    assert re.search(r"--resize: invalid choice: 'tf2' \(choose from '?pytorch'?, '?tf1'?\)",
                     capsys.readouterr().err)
    assert main(["fid", str(a), str(a), "--resize", "tf1", "--features",
                 "fid_test_features:colour_features", "--device", "cpu"]) == 1
    assert "--resize sets up the Inception network" in capsys.readouterr().err
    assert main(["fid", str(a), str(a), "--precision", "bf16", "--features",
                 "fid_test_features:colour_features", "--device", "cpu"]) == 1
    assert "--precision sets up the Inception network" in capsys.readouterr().err
