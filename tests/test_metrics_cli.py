"""`ganfast fid A B`: image folders and .npz statistics, a custom extractor, clear errors."""

import re
import sys
from pathlib import Path

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
    kid_mean, _ = kid(fa, fb, subset_size=17, seed=2020)  # torch-fidelity's seed, as the CLI
    assert float(printed["KID"].split(" +- ")[0]) == pytest.approx(kid_mean, rel=1e-4, abs=1e-6)
    assert printed["KID"].endswith(" (100 subsets of 17)")  # the subset size B's 17 images allow
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


def test_user_mistakes_are_named_before_features_are_extracted(tmp_path, extractor, capsys):
    one = _folder(tmp_path / "one", 1, seed=0)
    three = _folder(tmp_path / "three", 3, seed=1)
    a = _folder(tmp_path / "a", 6, seed=2)
    (tmp_path / "fid_test_not_callable.py").write_text("features = 3\n")
    features = ["--features", "fid_test_features:colour_features"]
    nan_stats, negative_stats = tmp_path / "nan.npz", tmp_path / "negative.npz"
    np.savez(nan_stats, mu=np.full(10, np.nan), sigma=np.eye(10), count=5)
    np.savez(negative_stats, mu=np.zeros(10), sigma=-np.eye(10), count=5)
    text_stats, array_stats = tmp_path / "text.npz", tmp_path / "array.npz"
    text_stats.write_text("not statistics\n")
    with open(array_stats, "wb") as f:  # np.save to a file object: the name keeps .npz
        np.save(f, np.zeros(10))
    cases = [
        ([str(one), str(a), *features, "--device", "cpu"], "one holds 1 image.*FID .* at least 2"),
        ([str(three), str(a), "--prc", *features, "--device", "cpu"], "three holds 3 .*--prc"),
        ([str(a), str(a), *features, "--device", "foo"], "--device 'foo'"),
        ([str(a), str(a), "--features", "fid_test_not_callable:features", "--device", "cpu"],
         "features is an int, not a function"),
        ([str(a), str(a), *features, "--device", "cpu", "--save-stats", str(tmp_path / "x.npz"),
          str(tmp_path / "no" / "such" / "b.npz")], "--save-stats .*b.npz: its folder .* not exist"),
        ([str(a), str(nan_stats), *features, "--device", "cpu"], "nan.npz: mu holds NaN"),
        ([str(a), str(negative_stats), *features, "--device", "cpu"], "negative variances"),
        ([str(a), str(text_stats), *features], r"text.npz is not an .npz archive .*np.savez writes\)$"),
        ([str(a), str(array_stats), *features], "array.npz is not an .npz archive .*single .npy array"),
        # meta was a NotImplementedError traceback from the first batch's features; fpga a
        # backend no PyTorch build computes on
        ([str(a), str(a), *features, "--device", "meta"], "--device 'meta': meta tensors hold "
                                                          "shapes, no values"),
        ([str(a), str(a), *features, "--device", "fpga"], "--device 'fpga': this PyTorch cannot "
                                                          "place tensors there"),
    ]
    if not torch.cuda.is_available():
        cases.append(([str(a), str(a), *features, "--device", "cuda"], "CUDA is not available"))
    for args, message in cases:
        assert main(["fid", *args]) == 1, args
        err = capsys.readouterr().err
        assert re.search("ganfast fid: .*" + message, err), err


def test_a_gpu_number_past_the_last_is_named(monkeypatch):
    from ganfast.metrics.cli import FidError, _device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(FidError, match=r"--device 'cuda:2': torch sees 2 CUDA device\(s\), "
                                       r"cuda:0 to cuda:1$"):
        _device("cuda:2")


def test_features_from_the_current_folder_or_a_file(tmp_path, monkeypatch, capsys):
    # The installed `ganfast` script does not put the current folder on sys.path itself.
    (tmp_path / "fid_test_cwd_features.py").write_text(
        EXTRACTOR.replace("def colour_features", "def cwd_features"))
    (tmp_path / "numpy_features.py").write_text(
        EXTRACTOR + "\ndef as_numpy(images):\n    return colour_features(images).numpy()\n")
    _folder(tmp_path / "a", 6, seed=0)
    _folder(tmp_path / "b", 5, seed=1, shift=30)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    printed = []
    for spec in ("fid_test_cwd_features:cwd_features", f"{tmp_path / 'numpy_features.py'}:as_numpy"):
        assert main(["fid", "a", "b", "--features", spec, "--device", "cpu"]) == 0, \
            capsys.readouterr().err
        printed.append(float(capsys.readouterr().out.split("FID: ")[1]))
    assert printed[0] == printed[1] > 0


def test_save_stats_keeps_a_stored_count_and_fid_prints_no_negative_zero(tmp_path, extractor, capsys):
    a = _folder(tmp_path / "a", 7, seed=0)
    stats = FeatureStats(10).update(_features(a, extractor))
    stats.save(tmp_path / "a.npz")
    assert main(["fid", str(a), str(tmp_path / "a.npz"), "--features",
                 "fid_test_features:colour_features", "--device", "cpu", "--save-stats",
                 str(tmp_path / "again.npz"), str(tmp_path / "copy.npz")]) == 0
    out = capsys.readouterr().out
    assert FeatureStats.load(tmp_path / "copy.npz").count == 7
    assert re.fullmatch(r"FID: \d\.\d{6}\n", out), out  # identical sets: 0 up to rounding, unsigned
    # A pytorch-fid reference (no count) beside a folder: its file is copied as it is.
    reference = tmp_path / "pytorch_fid.npz"
    np.savez(reference, mu=stats.mean.numpy(), sigma=stats.covariance.numpy())
    assert main(["fid", str(a), str(reference), "--features", "fid_test_features:colour_features",
                 "--device", "cpu", "--save-stats", str(tmp_path / "a2.npz"),
                 str(tmp_path / "ref2.npz")]) == 0
    assert (tmp_path / "ref2.npz").read_bytes() == reference.read_bytes()
    assert FeatureStats.load(tmp_path / "a2.npz").count == 7


def test_tiff_and_16_bit_images_are_read(tmp_path, extractor, capsys):
    folder = tmp_path / "deep"
    folder.mkdir()
    rng = np.random.default_rng(0)
    grey16 = rng.integers(0, 65536, (4, 6, 5), dtype=np.uint16)
    for i, image in enumerate(grey16):
        Image.fromarray(image).save(folder / f"{i}.tif" if i % 2 else folder / f"{i}.png")
    from ganfast.metrics.cli import _read

    for i, image in enumerate(grey16):
        read = _read(folder / (f"{i}.tif" if i % 2 else f"{i}.png"))
        expected = np.round(image.astype(np.float64) * 255 / 65535).astype(np.uint8)
        assert torch.equal(read, torch.from_numpy(np.repeat(expected[None], 3, axis=0)))
    assert main(["fid", str(folder), str(folder), "--features", "fid_test_features:colour_features",
                 "--device", "cpu"]) == 0, capsys.readouterr().err


def test_hidden_files_and_folders_are_skipped_and_the_counts_printed(tmp_path, extractor, capsys):
    # .ipynb_checkpoints/ copies, macOS's ._ files (not images at all) and other dot files were
    # read as images of the set. The folder given may itself be hidden.
    a = _folder(tmp_path / ".a", 5, seed=0)
    b = _folder(tmp_path / "b", 4, seed=1, shift=30)
    fa, fb = _features(a, extractor), _features(b, extractor)  # before the hidden files come
    (a / "._000.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble, not a PNG")
    (a / ".ipynb_checkpoints").mkdir()
    Image.fromarray(np.zeros((3, 3, 3), np.uint8)).save(a / ".ipynb_checkpoints" / "000.png")
    (b / "sub").mkdir()
    Image.fromarray(np.zeros((12, 10, 3), np.uint8)).save(b / "sub" / ".hidden.png")
    assert main(["fid", str(a), str(b), "--features", "fid_test_features:colour_features",
                 "--device", "cpu"]) == 0, capsys.readouterr().err
    out, err = capsys.readouterr()
    assert f"{a}: 5 images\n" in err and f"{b}: 4 images\n" in err  # before extraction
    assert re.fullmatch(r"FID: \d+\.\d{6}\n", out)  # stdout holds the results alone
    expected = frechet_distance(fa.mean(0), torch.from_numpy(np.cov(fa.numpy(), rowvar=False)),
                                fb.mean(0), torch.from_numpy(np.cov(fb.numpy(), rowvar=False)))
    assert float(out.split("FID: ")[1]) == pytest.approx(expected, rel=1e-5)
    hidden_only = tmp_path / "hidden_only"
    hidden_only.mkdir()
    (a / ".ipynb_checkpoints").rename(hidden_only / ".ipynb_checkpoints")
    assert main(["fid", str(hidden_only), str(b), "--features",
                 "fid_test_features:colour_features", "--device", "cpu"]) == 1
    assert re.search(r"hidden_only holds no images .*names starting with '.' are skipped",
                     capsys.readouterr().err)


def test_float_grey_tiffs_are_read_from_zero_one_or_0_255_and_32_bit_integers_named(tmp_path):
    # Mode "F" (32- and 64-bit float TIFFs) went through PIL's convert(), which truncates every
    # value below 1 to 0: a [0, 1] image came out black.
    from ganfast.metrics.cli import FidError, _read

    grey = np.random.default_rng(0).random((6, 5)).astype(np.float32)
    grey[0, :2] = 0.0, 1.0
    for dtype in (np.float32, np.float64):
        path = tmp_path / f"{np.dtype(dtype).name}.tif"
        Image.fromarray(grey.astype(dtype)).save(path)
        assert Image.open(path).mode == "F"
        expected = np.round(grey.astype(np.float64) * 255).astype(np.uint8)
        assert torch.equal(_read(path), torch.from_numpy(np.repeat(expected[None], 3, axis=0)))
    Image.fromarray(grey * 255).save(tmp_path / "pixels.tif")  # above 1.5: 0..255, as in train
    assert torch.equal(_read(tmp_path / "pixels.tif")[0],
                       torch.from_numpy(np.round(grey.astype(np.float64) * 255).astype(np.uint8)))
    for values, message in [(grey * 1.25, r"values from 0 to 1.25; expected floats in \[0, 1\] "
                                          r"or 0..255"),
                            (np.where(grey > 0.5, np.nan, grey), "NaN values")]:
        Image.fromarray(values.astype(np.float32)).save(tmp_path / "bad.tif")
        with pytest.raises(FidError, match=r"cannot read image .*bad.tif: PIL mode F \(float "
                                           r"grey\) with " + message):
            _read(tmp_path / "bad.tif")
    # One folder, one scale: a dark frame of a 0..255 set (values 0 and 1) after a bright one
    # is read as 0..255, not stretched to white; a 0..255 image after a [0, 1] reading is refused.
    from ganfast._files import FloatGreyScale

    dark = np.array([[0.0, 1.0]], np.float32)
    Image.fromarray(dark * 200).save(tmp_path / "bright.tif")
    Image.fromarray(dark).save(tmp_path / "dark.tif")
    scale = FloatGreyScale()
    assert [_read(tmp_path / name, scale)[0].tolist() for name in ("bright.tif", "dark.tif")] == \
        [[[0, 200]], [[0, 1]]]
    assert _read(tmp_path / "dark.tif")[0].tolist() == [[0, 255]]  # alone: [0, 1]
    scale = FloatGreyScale()
    _read(tmp_path / "dark.tif", scale)
    with pytest.raises(FidError, match=r"bright.tif: float grey values up to 200 \(0..255\), but "
                                       r".*dark.tif was read as \[0, 1\]"):
        _read(tmp_path / "bright.tif", scale)
    # Mode "I" is 16-bit grey (16-bit PGMs open so, and 16-bit PNGs in older Pillow); a 32-bit
    # integer image past 65535 is refused, naming the file, its mode and what to do.
    Image.fromarray(np.array([[0, 65535]], np.int32)).save(tmp_path / "i.tif")
    assert _read(tmp_path / "i.tif")[0].tolist() == [[0, 255]]
    Image.fromarray(np.array([[0, 70000]], np.int32)).save(tmp_path / "i32.tif")
    with pytest.raises(FidError, match=r"i32.tif: PIL mode I with values from 0 to 70000; "
                                       r"expected 16-bit grey, 0..65535 \(a 32-bit integer"):
        _read(tmp_path / "i32.tif")


@pytest.mark.slow
def test_inception_score_equals_torch_fidelity(tmp_path, capsys):
    # torch-fidelity's IS: the logits without the fc bias, rows shuffled with RandomState(2020).
    metric_isc = pytest.importorskip("torch_fidelity.metric_isc")
    from ganfast.bench.fid import random_inception

    net = random_inception(calibration=2)
    with torch.no_grad():  # a bias large enough that leaving it in would change the score
        net.fc.bias.normal_(0, 3)
        net.fc.weight.mul_(20)
    weights = tmp_path / "weights.pth"
    torch.save(net.state_dict(), weights)
    a = _folder(tmp_path / "a", 21, seed=0, size=(8, 8))
    assert main(["fid", str(a), str(a), "--weights", str(weights), "--isc", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out.split(f"IS of {a}: ")[1].split()
    with torch.no_grad():
        features = net(_features(a, lambda x: x).float()).double()
    expected = metric_isc.isc_features_to_metric(features @ net.fc.weight.double().T, splits=10)
    mean, std = expected["inception_score_mean"], expected["inception_score_std"]
    assert (float(printed[0]), float(printed[2])) == pytest.approx((mean, std), abs=6e-5)  # 4 places
    biased = metric_isc.isc_features_to_metric(net.fc(features.float()).double(), splits=10)
    assert biased["inception_score_mean"] != pytest.approx(mean, rel=1e-3)  # it discriminates


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


def test_image_folders_without_pillow_are_named_before_extraction(tmp_path, monkeypatch, capsys,
                                                                 extractor):
    import importlib.util

    a = _folder(tmp_path / "a", 3, seed=0)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "PIL" else real_find_spec(name, *args))
    assert main(["fid", str(a), str(a), "--features", "fid_test_features:colour_features"]) == 1
    assert f"reading the images of {a} needs Pillow: pip install Pillow" in capsys.readouterr().err


def test_fid_alone_streams_the_statistics_without_keeping_features(tmp_path, extractor):
    # FID needs O(D^2): each batch goes into the statistics as it comes, and the features are
    # kept only for --kid and --prc.
    from ganfast.metrics import cli as fid_cli

    folder = _folder(tmp_path / "a", 23, 0)
    files = fid_cli._image_files(folder)
    expected = _features(folder, extractor).numpy()
    for keep, workers in ((False, 0), (True, 2)):
        stats, features, logits = fid_cli._features_of_folder(
            folder, files, (extractor, None), 5, torch.device("cpu"), False, keep=keep,
            workers=workers)
        assert logits is None and (features is None) == (not keep)
        assert stats.count == 23
        np.testing.assert_allclose(stats.covariance.numpy(), np.cov(expected, rowvar=False),
                                   rtol=1e-5, atol=1e-9)  # a float32 extractor

    calls = []

    def changing_width(images):  # 10 features for the first batch, 9 after
        calls.append(len(images))
        return extractor(images)[:, : 10 if len(calls) == 1 else 9]

    with pytest.raises(fid_cli.FidError, match="returned 10 features per image for earlier"):
        fid_cli._features_of_folder(folder, files, (changing_width, None), 5,
                                    torch.device("cpu"), False, keep=False)


@pytest.mark.parametrize("workers", [1, 3])
def test_decoding_threads_give_the_images_in_order(tmp_path, workers):
    """The next batch decodes in threads while this one is computed: the same images, in the
    same order, as one thread, a folder of PNGs and float grey TIFFs read on one scale."""
    from ganfast.metrics import cli as fid_cli

    folder = _folder(tmp_path / "a", 11, 0)
    dark = np.tile(np.array([[0.0, 1.0]], np.float32), (12, 5))  # 12 x 10, the PNGs' size
    Image.fromarray(dark * 200).save(folder / "005_bright.tif")
    Image.fromarray(dark).save(folder / "006_dark.tif")  # 0..255 after 005: values 0 and 1
    files = fid_cli._image_files(folder)
    one = list(fid_cli._image_batches(files, 4, 0))
    threaded = list(fid_cli._image_batches(files, 4, workers))
    assert [paths for paths, _ in threaded] == [paths for paths, _ in one]
    assert all(torch.equal(a, b) for (_, x), (_, y) in zip(one, threaded, strict=True)
               for a, b in zip(x, y, strict=True))


def test_decoding_threads_decide_in_file_order_not_as_they_finish(tmp_path):
    """The earlier file of each pair is slow to decode and the later one fast, in one batch:
    what finishes first must not decide. The first bad file is the one named; the float grey
    scale is the bright (0..255) image's, the first in order."""
    import io

    from ganfast.metrics import cli as fid_cli

    rng = np.random.default_rng(0)
    bad, grey = tmp_path / "bad", tmp_path / "grey"
    bad.mkdir()
    grey.mkdir()
    encoded = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (1500, 1500, 3), dtype=np.uint8)).save(
        encoded, "PNG", compress_level=1)
    (bad / "0_slow_truncated.png").write_bytes(encoded.getvalue()[:len(encoded.getvalue()) * 9 // 10])
    (bad / "1_fast_garbage.png").write_bytes(b"not a png")
    bright = rng.random((1500, 1500), dtype=np.float32) * 200
    Image.fromarray(bright).save(grey / "0_bright.tif", compression="tiff_adobe_deflate")
    Image.fromarray(np.array([[0.0, 1.0]], np.float32)).save(grey / "1_dark.tif")
    with pytest.raises(fid_cli.FidError, match=r"cannot read image .*0_slow_truncated.png"):
        list(fid_cli._image_batches(fid_cli._image_files(bad), 4, 2))
    [(_, images)] = fid_cli._image_batches(fid_cli._image_files(grey), 4, 2)
    assert images[1].unique().tolist() == [0, 1]  # read as 0..255, not stretched from [0, 1]


def test_a_caller_that_stops_leaves_no_decoding_queued(tmp_path, monkeypatch):
    """An error, Ctrl-C or a caller done early: the batch decoding ahead is dropped, its queued
    files never decoded, and closing does not wait for it. (Events, not sleeps, order the
    threads: a loaded machine's scheduling cannot change what is decoded.)"""
    import threading
    import time

    from ganfast.metrics import cli as fid_cli

    files = [tmp_path / f"{i}.png" for i in range(12)]
    started, decoded, release = [], [], threading.Event()

    def held_decode(path):  # batch 1 at once; later files wait until released
        started.append(path)
        if files.index(path) >= 4:
            assert release.wait(30), "the decoding was never released"
        decoded.append(path)
        return torch.zeros(3, 1, 1, dtype=torch.uint8)

    def wait_until(condition):
        for _ in range(3000):
            if condition():
                return True
            time.sleep(0.01)
        return False

    monkeypatch.setattr(fid_cli, "_decode", held_decode)
    batches = fid_cli._image_batches(files, 4, 2)
    next(batches)  # batch 1 decoded; batch 2: two files decoding (held), two queued
    assert wait_until(lambda: len(started) == 6), started
    closer = threading.Thread(target=batches.close)
    closer.start()
    closer.join(10)
    assert not closer.is_alive()  # closed while two decodes were still held
    release.set()
    assert wait_until(lambda: len(decoded) == 6), decoded
    time.sleep(0.3)  # time for a queued file to start, were it not dropped
    assert sorted(started) == sorted(decoded) == sorted(files[:6])


def test_default_workers_are_for_a_gpu(monkeypatch):
    from ganfast.metrics import cli as fid_cli

    assert fid_cli.default_workers(torch.device("cpu")) == 0
    monkeypatch.setattr(fid_cli.os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    assert fid_cli.default_workers(torch.device("cuda")) == 3  # the cores this process may use
    monkeypatch.setattr(fid_cli.os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    assert fid_cli.default_workers(torch.device("cuda:1")) == 8


def test_a_broken_png_is_named(tmp_path):
    # A PNG chunk with broken type bytes raises SyntaxError in Pillow: it was a traceback.
    from ganfast.metrics import cli as fid_cli

    folder = _folder(tmp_path / "a", 1, 0, size=(300, 300))  # several IDAT chunks of 64 KiB
    data = bytearray((folder / "000.png").read_bytes())
    second = data.index(b"IDAT", data.index(b"IDAT") + 4)
    data[second:second + 4] = bytes([0, 1, 2, 3])
    (folder / "000.png").write_bytes(bytes(data))
    with pytest.raises(fid_cli.FidError, match=r"cannot read image .*000.png"):
        fid_cli._read(folder / "000.png")


def test_an_image_past_pillows_pixel_limit_is_named(tmp_path, monkeypatch):
    # Pillow's DecompressionBombError is neither OSError nor ValueError: it was a traceback.
    from ganfast.metrics import cli as fid_cli

    folder = _folder(tmp_path / "a", 1, 0)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)  # 12 x 10 = 120 pixels, over twice that
    with pytest.raises(fid_cli.FidError, match=r"cannot read image .*000.png: Image size"):
        fid_cli._read(folder / "000.png")


def test_workers_must_not_be_negative(tmp_path, extractor, capsys):
    a = _folder(tmp_path / "a", 3, 0)
    assert main(["fid", str(a), str(a), "--features", "fid_test_features:colour_features",
                 "--workers", "-1"]) == 1
    assert "--workers must be >= 0, got -1" in capsys.readouterr().err


def _no_extraction(monkeypatch):
    """Make any feature extraction fail the test: the mistakes are to be named before it."""
    from ganfast.metrics import cli as fid_cli

    def extraction(*args, **kwargs):
        raise AssertionError("features were extracted before the mistake was named")

    monkeypatch.setattr(fid_cli, "_features_of_folder", extraction)


def test_save_stats_never_replaces_an_input(tmp_path, extractor, monkeypatch, capsys):
    # `fid A b.npz --save-stats b.npz out.npz` wrote A's statistics over b.npz, then copied that
    # into out.npz; `fid a.npz b.npz --save-stats b.npz a.npz` lost B's.
    a = _folder(tmp_path / "a", 4, seed=0)
    a_npz, b_npz = tmp_path / "a.npz", tmp_path / "b.npz"
    FeatureStats(10).update(_features(a, extractor)).save(a_npz)
    FeatureStats(10).update(_features(a, extractor) + 1).save(b_npz)
    originals = {p: p.read_bytes() for p in (a_npz, b_npz)}
    (tmp_path / "link.npz").symlink_to(b_npz)
    out = tmp_path / "out.npz"
    features = ["--features", "fid_test_features:colour_features", "--device", "cpu"]
    _no_extraction(monkeypatch)
    cases = [
        ([a, b_npz, "--save-stats", b_npz, out], "b.npz is input B .*writing A's statistics"),
        ([a_npz, b_npz, "--save-stats", b_npz, a_npz], "b.npz is input B .*would replace it"),
        ([a_npz, b_npz, "--save-stats", out, a_npz], "a.npz is input A .*writing B's statistics"),
        ([a, b_npz, "--save-stats", tmp_path / "link.npz", out], "link.npz is input B"),
        ([a, b_npz, "--save-stats", out, tmp_path / "." / "out.npz"], "one file twice"),
    ]
    for args, message in cases:
        assert main(["fid", *map(str, args), *features]) == 1, args
        assert re.search("ganfast fid: --save-stats .*" + message, capsys.readouterr().err)
    assert {p: p.read_bytes() for p in (a_npz, b_npz)} == originals and not out.exists()
    # An input's own path stays allowed: the file already holds what would be written.
    assert main(["fid", str(a_npz), str(b_npz), "--save-stats", str(a_npz), str(out)]) == 0
    assert {p: p.read_bytes() for p in (a_npz, b_npz)} == originals
    assert out.read_bytes() == originals[b_npz]


def test_save_stats_folder_is_named_before_extraction(tmp_path, extractor, monkeypatch, capsys):
    # It was an IsADirectoryError traceback once the features were extracted.
    a = _folder(tmp_path / "a", 3, seed=0)
    _no_extraction(monkeypatch)
    assert main(["fid", str(a), str(a), "--features", "fid_test_features:colour_features",
                 "--device", "cpu", "--save-stats", str(tmp_path / "x.npz"), str(tmp_path)]) == 1
    assert re.search(r"--save-stats .* is a folder; expected the path of a .npz file",
                     capsys.readouterr().err)


NON_FINITE_EXTRACTOR = EXTRACTOR + '''
calls = []

def spoilt(images):
    """colour_features, with a NaN for the second image of the second batch of the second folder
    (folders are extracted in order, 2 batches each)."""
    calls.append(len(images))
    features = colour_features(images)
    if len(calls) == 4:
        features[1, 5] = float("nan")
    return features
'''


def test_non_finite_features_name_the_image_and_nothing_is_written(tmp_path, monkeypatch,
                                                                  capsys):
    # They were a LinAlgError traceback, after both --save-stats files had been written.
    (tmp_path / "fid_test_nan_features.py").write_text(NON_FINITE_EXTRACTOR)
    monkeypatch.syspath_prepend(str(tmp_path))
    a = _folder(tmp_path / "a", 6, seed=0)
    b = _folder(tmp_path / "b", 6, seed=1)
    saved = [tmp_path / "a.npz", tmp_path / "b.npz"]
    assert main(["fid", str(a), str(b), "--features", "fid_test_nan_features:spoilt", "--device",
                 "cpu", "--batch-size", "4", "--save-stats", *map(str, saved)]) == 1
    err = capsys.readouterr().err
    assert re.search(r"ganfast fid: the feature extractor returned NaN or infinite features for "
                     r".*b/005.png \(batch 2 of .*b, images 004.png to 005.png\)", err), err
    assert not any(p.exists() for p in saved)


@pytest.mark.parametrize("returned", ["[:, :0]", ".to(torch.complex64)", " > 0.5", ".long()",
                                      ".numpy().astype(object)"])
def test_extractor_output_that_is_not_real_floating_features_is_named(tmp_path, monkeypatch,
                                                                      capsys, returned):
    # [N, 0] was an IndexError traceback, complex a TypeError one; bool and int were taken.
    (tmp_path / "fid_test_odd_features.py").write_text(
        EXTRACTOR + f"\ndef odd(images):\n    return colour_features(images){returned}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    a = _folder(tmp_path / "a", 3, seed=0)
    assert main(["fid", str(a), str(a), "--features", "fid_test_odd_features:odd", "--device",
                 "cpu"]) == 1
    assert re.search(r"ganfast fid: the feature extractor must return a tensor \(or numpy "
                     r"array\) of \[N, D\] real floating-point features, D >= 1",
                     capsys.readouterr().err)


def test_npz_sigma_that_is_no_covariance_is_named_before_extraction(tmp_path, extractor,
                                                                   monkeypatch, capsys):
    # Positive variances, yet indefinite (eigenvalue -1): it was taken as a covariance.
    a = _folder(tmp_path / "a", 3, seed=0)
    indefinite = tmp_path / "indefinite.npz"
    sigma = np.eye(10)
    sigma[0, 1] = sigma[1, 0] = 2.0
    np.savez(indefinite, mu=np.zeros(10), sigma=sigma, count=50)
    _no_extraction(monkeypatch)
    assert main(["fid", str(a), str(indefinite), "--features", "fid_test_features:colour_features",
                 "--device", "cpu"]) == 1
    assert re.search(r"ganfast fid: .*indefinite.npz: sigma is not a covariance matrix \(positive "
                     r"semi-definite\): it has the eigenvalue -1", capsys.readouterr().err)


def test_folder_named_npz_and_upper_case_npz_suffix(tmp_path, extractor, capsys):
    # A folder is a folder whatever its name (`x.npz` was read as statistics), and `.NPZ` is
    # statistics as `.npz` is.
    folder = _folder(tmp_path / "images.npz", 5, seed=0)
    assert main(["fid", str(folder), str(folder), "--features",
                 "fid_test_features:colour_features", "--device", "cpu", "--prc",
                 "--save-stats", str(tmp_path / "UPPER.NPZ"), str(tmp_path / "b.npz")]) == 0, \
        capsys.readouterr().err
    assert "precision: 1.0000  recall: 1.0000" in capsys.readouterr().out
    assert main(["fid", str(tmp_path / "UPPER.NPZ"), str(tmp_path / "b.npz")]) == 0, \
        capsys.readouterr().err
    assert capsys.readouterr().out == "FID: 0.000000\n"


def test_save_stats_help_says_nothing_is_written_when_anything_fails(capsys):
    with pytest.raises(SystemExit):
        main(["fid", "--help"])
    assert "nothing is written when anything fails" in " ".join(capsys.readouterr().out.split())


FAILING_EXTRACTOR = EXTRACTOR + '''
calls = []

def failing(images):
    """colour_features, raising on its second batch what the test set in `raised`."""
    calls.append(len(images))
    if len(calls) == 2:
        raise raised[0]
    return colour_features(images)

raised = []
'''


def _failing_extractor(tmp_path, monkeypatch, error):
    (tmp_path / "fid_test_failing.py").write_text(FAILING_EXTRACTOR)
    monkeypatch.syspath_prepend(str(tmp_path))
    import fid_test_failing

    monkeypatch.setattr(fid_test_failing, "calls", [])
    monkeypatch.setattr(fid_test_failing, "raised", [error])
    return ["--features", "fid_test_failing:failing", "--device", "cpu", "--batch-size", "4"]


def test_ctrl_c_is_a_message_and_exit_130_with_nothing_written(tmp_path, monkeypatch, capsys):
    # It was a traceback ending in KeyboardInterrupt (and death by SIGINT); ganfast train's
    # Ctrl-C returns 130, 128 + SIGINT, as a shell reports it.
    features = _failing_extractor(tmp_path, monkeypatch, KeyboardInterrupt())
    a = _folder(tmp_path / "a", 6, seed=0)
    saved = [tmp_path / "a.npz", tmp_path / "b.npz"]
    assert main(["fid", str(a), str(a), *features, "--workers", "1",
                 "--save-stats", *map(str, saved)]) == 130
    err = capsys.readouterr().err
    assert err.rstrip().endswith("ganfast fid: interrupted") and "Traceback" not in err, err
    assert not any(p.exists() for p in saved)


def test_an_extractor_that_raises_shows_its_own_frames_and_names_the_batch(tmp_path, monkeypatch,
                                                                          capsys):
    # It was a traceback through ganfast's frames, ending in the user's error, no batch named.
    features = _failing_extractor(tmp_path, monkeypatch, RuntimeError("boom\nsecond line"))
    a = _folder(tmp_path / "a", 6, seed=0)
    assert main(["fid", str(a), str(a), *features]) == 1
    err = capsys.readouterr().err
    assert re.search(r'Traceback .*\n  File ".*fid_test_failing.py", line \d+, in failing\n', err)
    assert "ganfast/metrics/cli.py" not in err and "_contextlib" not in err, err
    assert err.rstrip().splitlines()[-1] == (
        f"ganfast fid: the feature extractor failed on batch 2 of {a}, images 004.png to "
        "005.png: RuntimeError: boom")


def test_out_of_memory_in_the_extractor_says_to_lower_the_batch_size(tmp_path, monkeypatch,
                                                                    capsys):
    features = _failing_extractor(tmp_path, monkeypatch,
                                  torch.cuda.OutOfMemoryError("CUDA out of memory. Tried ..."))
    a = _folder(tmp_path / "a", 6, seed=0)
    assert main(["fid", str(a), str(a), *features]) == 1
    err = capsys.readouterr().err
    assert re.search(rf"ganfast fid: out of memory on cpu computing the features of batch 2 of "
                     rf"{re.escape(str(a))}, .*\(2 images of 12x10\): use a smaller --batch-size",
                     err), err
    assert "Traceback" not in err


def test_features_modules_that_fail_or_are_misnamed(tmp_path, monkeypatch, capsys):
    # A file.py whose code raised was wrapped twice ("cannot load it (--features ...: running
    # ... failed ...)"); a module:function whose import raised was a traceback through
    # importlib and ganfast; "module" without ":function" said "Empty module name"; an empty
    # --features silently meant the Inception network.
    _folder(tmp_path / "a", 3, seed=0)
    (tmp_path / "fid_test_broken_file.py").write_text("import torch\n\nvalue = undefined_name\n")
    (tmp_path / "fid_test_broken_module.py").write_text("x = 1\nraise ValueError('at import')\n")
    (tmp_path / "fid_test_needs_dep.py").write_text("import fid_test_no_such_dependency\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GANFAST_INCEPTION_WEIGHTS", str(tmp_path / "weights.pth"))
    _no_extraction(monkeypatch)
    cases = [  # --features, the error's last line, the user's frame shown (or None)
        ("fid_test_broken_file.py:f", r"--features 'fid_test_broken_file.py:f': running "
         r"fid_test_broken_file.py failed: NameError: name 'undefined_name' is not defined$",
         r'fid_test_broken_file.py", line 3, in <module>'),
        ("fid_test_broken_module:f", r"--features 'fid_test_broken_module:f': importing "
         r"fid_test_broken_module failed: ValueError: at import$",
         r'fid_test_broken_module.py", line 2, in <module>'),
        ("fid_test_needs_dep:f", r"importing fid_test_needs_dep failed: ModuleNotFoundError: "
         r"No module named 'fid_test_no_such_dependency'$", r'fid_test_needs_dep.py", line 1'),
        ("no_such_package.sub:f", r"cannot load it \(No module named 'no_such_package'\); "
         r"expected module:function", None),
        ("fid_test_broken_file", r"--features 'fid_test_broken_file': no function named; "
         r"expected module:function", None),
        ("fid_test_broken_file.py", r"no function named; expected module:function", None),
        ("fid_test_broken_file.py:", r"no function named; expected module:function", None),
        (":f", r"no module named; expected module:function", None),
        (".fid_test_broken_module:f", r"'.fid_test_broken_module' is not a module name", None),
        ("sub/fid_test_broken_module:f", r"'sub/fid_test_broken_module' is not a module name",
         None),
        ("", r"--features '': expected module:function or path/to/file.py:function \(an unset "
         r"variable\?\)", None),
    ]
    for spec, message, frame in cases:
        assert main(["fid", "a", "a", "--features", spec, "--device", "cpu"]) == 1, spec
        err = capsys.readouterr().err
        assert re.search("ganfast fid: .*" + message, err.rstrip().splitlines()[-1]), err
        assert "cannot load it (--features" not in err and "metrics/cli.py" not in err, err
        assert ("Traceback" in err) == (frame is not None) and (
            frame is None or re.search(frame, err)), err


def test_features_modules_named_as_files_may_be_named(tmp_path, monkeypatch, capsys):
    # import_module finds a file of any name in the current folder: "my-feats:fn" and
    # "2024_feats:fn" worked and must keep working (not refused as "not a module name")
    a = _folder(tmp_path / "a", 3, seed=0)
    for name in ("fid-test-features", "2024_fid_test_features"):
        (tmp_path / f"{name}.py").write_text(
            "def extract(images):\n    return images.flatten(2).mean(2).double()\n")
    monkeypatch.chdir(tmp_path)
    for name in ("fid-test-features", "2024_fid_test_features"):
        assert main(["fid", str(a), str(a), "--features", f"{name}:extract",
                     "--device", "cpu"]) == 0, capsys.readouterr().err
        assert capsys.readouterr().out.startswith("FID: ")


def test_weights_with_features_is_refused(tmp_path, extractor, monkeypatch, capsys):
    # --weights was ignored without a word when --features chose another extractor.
    a = _folder(tmp_path / "a", 3, seed=0)
    _no_extraction(monkeypatch)
    assert main(["fid", str(a), str(a), "--features", "fid_test_features:colour_features",
                 "--weights", str(tmp_path / "w.pth"), "--device", "cpu"]) == 1
    assert "ganfast fid: --weights sets up the Inception network: leave it out with --features" \
        in capsys.readouterr().err


def test_weights_errors_name_the_weights_flag(tmp_path, monkeypatch, capsys):
    # They said "weights= (--weights of ganfast fid)", the Python argument's name.
    monkeypatch.delenv("GANFAST_INCEPTION_WEIGHTS", raising=False)
    a = _folder(tmp_path / "a", 2, seed=0)
    assert main(["fid", str(a), str(a), "--device", "cpu", "--weights",
                 str(tmp_path / "nope.pth")]) == 1
    err = capsys.readouterr().err
    assert "nope.pth (from --weights) does not exist" in err
    assert "pass its path as --weights or set GANFAST_INCEPTION_WEIGHTS" in err
    assert "weights=" not in err


def test_save_stats_without_npz_suffix_is_refused_before_extraction(tmp_path, extractor,
                                                                    monkeypatch, capsys):
    # `--save-stats stats_a stats_b` wrote files `ganfast fid stats_a stats_b` then refused to
    # read ("neither a folder nor a .npz statistics file"); "" was reported as the folder ".".
    a = _folder(tmp_path / "a", 3, seed=0)
    _no_extraction(monkeypatch)
    features = ["--features", "fid_test_features:colour_features", "--device", "cpu"]
    for targets, message in [((tmp_path / "stats_a", tmp_path / "b.npz"),
                              r"--save-stats .*stats_a: expected a name ending in .npz.*"
                              r"\(stats_a.npz, say\)"),
                             ((tmp_path / "a.npz", tmp_path / "b.txt"), r"b.txt: .*\(b.npz, say\)"),
                             (("", tmp_path / "b.npz"), r"--save-stats '': expected the path")]:
        assert main(["fid", str(a), str(a), *features, "--save-stats", *map(str, targets)]) == 1
        assert re.search("ganfast fid: .*" + message, capsys.readouterr().err)
    assert not list(tmp_path.glob("*.npz")) and not (tmp_path / "stats_a").exists()


def test_a_folder_named_like_an_image_is_walked_not_read(tmp_path, extractor, capsys):
    # `a/more.png/` (a folder) was listed as an image: "cannot read image ...: Is a directory".
    a = _folder(tmp_path / "a", 3, seed=0)
    _folder(a / "more.png", 2, seed=1)
    assert main(["fid", str(a), str(a), "--features", "fid_test_features:colour_features",
                 "--device", "cpu"]) == 0, capsys.readouterr().err
    assert f"{a}: 5 images\n" in capsys.readouterr().err
    (a / "gone.png").symlink_to(tmp_path / "nowhere.png")  # a broken link is still named
    assert main(["fid", str(a), str(a), "--features", "fid_test_features:colour_features",
                 "--device", "cpu"]) == 1
    assert "cannot read image" in capsys.readouterr().err


def test_statistics_of_another_feature_size_are_named_before_the_folder_is_read(
        tmp_path, extractor, monkeypatch, capsys):
    # A 64-d .npz (pytorch-fid's --dims 64, or another extractor's) beside a folder was found
    # out after all of the folder's features had been extracted: hours on a large set.
    from ganfast.metrics import cli as fid_cli
    from ganfast.metrics import inception

    a = _folder(tmp_path / "a", 6, seed=0)
    small = tmp_path / "dims64.npz"
    np.savez(small, mu=np.zeros(64), sigma=np.eye(64))
    monkeypatch.setattr(inception, "fid_inception", lambda *args, **kwargs:
                        inception.FIDInceptionV3())  # no weights file here
    real_features_of_folder = fid_cli._features_of_folder
    with monkeypatch.context() as patch:
        _no_extraction(patch)
        assert main(["fid", str(a), str(small), "--device", "cpu"]) == 1
    assert re.search(r"ganfast fid: .*dims64.npz holds statistics of 64 features; the FID "
                     r"Inception network gives 2048", capsys.readouterr().err)
    # another extractor's size is known from its first batch: the rest is not extracted
    calls = []
    monkeypatch.setattr(fid_cli, "_features_of_folder", real_features_of_folder)
    (tmp_path / "fid_test_counted.py").write_text(
        EXTRACTOR + "\ncalls = []\n\ndef counted(images):\n    calls.append(len(images))\n"
                    "    return colour_features(images)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import fid_test_counted

    monkeypatch.setattr(fid_test_counted, "calls", calls)
    assert main(["fid", str(small), str(a), "--features", "fid_test_counted:counted",
                 "--device", "cpu", "--batch-size", "2"]) == 1
    assert re.search(r"ganfast fid: feature sizes differ: .*dims64.npz has 64, .*a has 10",
                     capsys.readouterr().err)
    assert calls == [2]


def test_statistics_errors_name_the_file_once(tmp_path, extractor, capsys):
    # "cannot read statistics from x.npz: x.npz: mu (10, 1) and sigma ..." named it twice.
    a = _folder(tmp_path / "a", 3, seed=0)
    bad = tmp_path / "column.npz"
    np.savez(bad, mu=np.zeros((10, 1)), sigma=np.eye(10))
    assert main(["fid", str(a), str(bad), "--features", "fid_test_features:colour_features",
                 "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert err.count("column.npz") == 1 and re.search(r"ganfast fid: .*column.npz: mu \(10, 1\)",
                                                      err), err


def test_one_folder_named_twice_is_extracted_once(tmp_path, extractor, monkeypatch, capsys):
    # `fid a a`, `fid a a/`, a link to a, ./a beside /abs/a: the features were extracted twice
    # (hours on a large folder, for an FID of 0); now once, with a note, and KID, IS and
    # precision/recall those of the folder against itself.
    from ganfast.metrics import cli as fid_cli
    from ganfast.metrics import inception_score

    a = _folder(tmp_path / "a", 20, seed=0)
    _folder(tmp_path / "other", 20, seed=1, shift=20)
    (tmp_path / "link").symlink_to(a, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    calls = []

    def counted(images):
        calls.append(len(images))
        return extractor(images)

    # --isc without the Inception network: these features as 10 logits
    monkeypatch.setattr(fid_cli, "_extractor", lambda args, device: (counted, lambda f: f))
    fa = _features(a, extractor)
    kid_mean, kid_std = kid(fa, fa, subset_size=20, seed=2020)
    order = torch.from_numpy(np.random.RandomState(2020).permutation(20))
    is_mean, is_std = inception_score(fa[order], splits=10)
    for pair in (["a", "a"], ["a", "a/"], ["a", "link"], ["./link/", str(a)]):
        calls.clear()
        assert main(["fid", *pair, "--kid", "--isc", "--prc", "--batch-size", "8",
                     "--device", "cpu"]) == 0, pair
        out, err = capsys.readouterr()
        assert calls == [8, 8, 4], pair  # one pass over the folder's 20 images
        assert f"A and B are one folder, {a.resolve()}: its features are extracted once" in err
        assert err.count(": 20 images") == 1, err
        printed = dict(line.split(": ", 1) for line in out.splitlines())
        assert printed["FID"] == "0.000000"
        assert printed["KID"] == f"{kid_mean:.6f} +- {kid_std:.6f} (100 subsets of 20)"
        assert [printed[f"IS of {Path(p)}"] for p in pair] == [f"{is_mean:.4f} +- {is_std:.4f}"] * 2
        assert out.endswith("precision: 1.0000  recall: 1.0000\n")
    # two folders: each extracted, no note
    calls.clear()
    assert main(["fid", "a", "other", "--device", "cpu", "--batch-size", "8"]) == 0
    assert calls == [8, 8, 4] * 2 and "one folder" not in capsys.readouterr().err
    # one statistics file named twice: read once, the same note
    stats = FeatureStats(fa.shape[1])
    stats.update(fa)
    stats.save(tmp_path / "a.npz")
    read = []
    monkeypatch.setattr(fid_cli, "_load_stats", lambda path, args: read.append(path) or
                        FeatureStats.load(path))
    assert main(["fid", "a.npz", str(tmp_path / "a.npz")]) == 0
    out, err = capsys.readouterr()
    assert len(read) == 1
    assert f"A and B are one statistics file, {(tmp_path / 'a.npz').resolve()}: it is read once" in err
    assert out.startswith("FID: 0.000000")
