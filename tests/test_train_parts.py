"""ganfast.train's parts against independent oracles: data, models, adapters, metrics."""

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from ganfast.train import data, layers, models, quality


def test_digits_are_upscaled_labelled_and_in_range():
    ds = data.digits()
    assert ds.x.shape == (1797, 1, data.DIGITS_SIZE, data.DIGITS_SIZE)
    assert ds.x.min() >= -1 and ds.x.max() <= 1
    assert sorted(ds.labels.unique().tolist()) == list(range(10))


@pytest.mark.parametrize("name,modes,std", [("ring8", 8, 0.02), ("grid25", 25, 0.05)])
def test_mixtures_follow_the_standard_setup(name, modes, std):
    ds = data.load(name)
    assert ds.centers.shape == (modes, 2) and ds.std == std
    offsets = ds.x - ds.centers[ds.labels]
    assert offsets.std().item() == pytest.approx(std, rel=0.02)
    if name == "ring8":
        assert torch.allclose(ds.centers.norm(dim=1), torch.full((8,), 2.0))
    else:
        assert sorted(ds.centers[:, 0].unique().tolist()) == [-4, -2, 0, 2, 4]


def test_image_folder_with_classes_and_mixed_sizes(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls, size in (("cat", 12), ("dog", 16)):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(
                tmp_path / cls / f"{i}.png")
    said = []
    ds = data.load(str(tmp_path), image_size=8, log=said.append)
    assert ds.x.shape == (6, 3, 8, 8) and ds.class_names == ["cat", "dog"]
    assert ds.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert said and "resizing" in said[0]


def test_empty_or_unreadable_folder_is_a_clear_error(tmp_path):
    with pytest.raises(data.DataError, match="no images found"):
        data.load(str(tmp_path))
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(data.DataError, match="cannot read image"):
        data.load(str(tmp_path))
    with pytest.raises(data.DataError, match="digits, ring8, grid25"):
        data.load("no-such-dataset")


def test_npy_points_and_uint8_images(tmp_path):
    np.save(tmp_path / "p.npy", np.random.default_rng(0).normal(size=(50, 2)))
    assert data.load(str(tmp_path / "p.npy")).x.shape == (50, 2)
    np.save(tmp_path / "im.npy", np.full((4, 8, 8, 3), 255, np.uint8))
    ds = data.load(str(tmp_path / "im.npy"))
    assert ds.x.shape == (4, 3, 8, 8) and torch.all(ds.x == 1)


@pytest.mark.parametrize("name", ["dcgan", "sngan"])
@pytest.mark.parametrize("size,channels", [(16, 1), (28, 3), (32, 3)])
def test_image_models_fit_any_size(name, size, channels):
    g, d = models.build(name, (channels, size, size), num_classes=4)
    y = torch.tensor([0, 1, 3])
    x = g(torch.randn(3, g.z_dim), y)
    assert x.shape == (3, channels, size, size)
    scores, logits = d(x, with_classes=True)
    assert scores.shape == (3,) and logits.shape == (3, 4)


def test_generators_upsample_with_upsample_conv_and_sngan_has_spectral_norm():
    g, d = models.build("sngan", (3, 32, 32))
    assert any(isinstance(m, layers.UpsampleConv2d) for m in g.modules())
    sn = [m for m in d.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert sn and all(torch.nn.utils.parametrize.is_parametrized(m, "weight") for m in sn)


def test_upsample_conv_matches_upsample_then_conv_and_shares_its_state_dict():
    torch.manual_seed(0)
    layer = layers.UpsampleConv2d(3, 5)
    conv = nn.Conv2d(3, 5, 3, padding=1)
    conv.load_state_dict(layer.state_dict())
    x = torch.randn(2, 3, 7, 9)
    expected = conv(nn.Upsample(scale_factor=2, mode="nearest")(x))
    torch.testing.assert_close(layer(x), expected)


def test_bad_model_names_list_the_valid_ones():
    with pytest.raises(ValueError, match="auto, mlp, dcgan, sngan"):
        models.build("resnet", (2,))
    with pytest.raises(ValueError, match="for images"):
        models.build("dcgan", (2,))


def test_frechet_distance_matches_scipy_sqrtm():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(200, 6)), rng.normal(size=(300, 6)) @ rng.normal(size=(6, 6)) + 0.5
    mu1, s1 = layers.feature_statistics(torch.from_numpy(a))
    mu2, s2 = layers.feature_statistics(torch.from_numpy(b))
    np.testing.assert_allclose(s1, np.cov(a, rowvar=False), rtol=1e-10)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean)
    assert layers.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)
    assert layers.frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0, abs=1e-8)


def test_moments_give_the_unbiased_covariance():
    f = torch.randn(40, 5, dtype=torch.float64)
    mean, cov = quality.mean_and_covariance(quality.moments(f), 5)
    np.testing.assert_allclose(mean, f.mean(0).numpy(), rtol=1e-12)
    np.testing.assert_allclose(cov, np.cov(f.numpy(), rowvar=False), rtol=1e-10)


def test_mixture_metrics_count_modes_and_quality():
    centers = data.ring8_centers()
    q = quality.MixtureQuality(centers, 0.02)
    on_three = centers[torch.arange(2500) % 3] + 0.01 * torch.randn(2500, 2)
    row = q.measure(on_three)
    assert row["modes_covered"] == 3 and row["high_quality"] > 0.95
    assert q.measure(torch.zeros(2500, 2))["high_quality"] == 0.0


def test_digits_metrics_see_real_digits_and_mode_collapse(tmp_path, monkeypatch):
    monkeypatch.setenv("GANFAST_CACHE", str(tmp_path))
    q = quality.DigitsQuality(data.DIGITS_SIZE)
    assert (tmp_path / f"digits_classifier_{data.DIGITS_SIZE}px.pt").exists()
    ds = data.digits()
    real = q.measure(ds.x[:1000], ds.labels[:1000])
    assert real["classes_covered"] == 10 and real["class_accuracy"] > 0.95 and real["class_kl"] < 0.05
    ones = ds.x[ds.labels == 1][:150]
    collapsed = q.measure(ones)
    assert collapsed["classes_covered"] <= 2 and collapsed["class_kl"] > 1.5
    assert collapsed["fd_digits"] > 5 * real["fd_digits"]
    again = quality.DigitsQuality(data.DIGITS_SIZE)  # from the cache: the same network
    for p, p2 in zip(q.net.parameters(), again.net.parameters(), strict=True):
        assert torch.equal(p, p2)


def test_inception_fid_of_samples_against_the_training_images(tmp_path):
    """With Inception weights the trainer's measure also reports the true FID: the Frechet
    distance of the FID Inception network's features (random weights here: no download)."""
    from ganfast.metrics import FeatureStats, fid_inception, frechet_distance
    from ganfast.metrics.inception import FIDInceptionV3
    from ganfast.train import quality

    torch.manual_seed(0)
    weights = tmp_path / "inception.pth"
    torch.save(FIDInceptionV3().state_dict(), weights)
    real, fake = torch.rand(5, 1, 16, 16) * 2 - 1, torch.rand(4, 1, 16, 16) * 2 - 1
    row = quality.InceptionFID(weights, real, None, torch.device("cpu")).measure(fake)
    net = fid_inception(weights)
    with torch.no_grad():
        stats = [FeatureStats(2048).update(net(((x + 1) / 2).expand(-1, 3, -1, -1)))
                 for x in (fake, real)]
    expected = frechet_distance(stats[0].mean, stats[0].covariance, stats[1].mean,
                                stats[1].covariance)
    assert row["fid_inception"] == pytest.approx(expected, rel=1e-9)
