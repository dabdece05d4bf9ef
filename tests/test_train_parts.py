"""ganfast.train's parts against independent oracles: data, models, adapters, metrics."""

import math

import numpy as np
import pytest
import scipy.linalg
import torch
from PIL import Image
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


def _mixture_oracle(points, centers, std):
    """VEEGAN/PacGAN's measures in plain float64 Python: each finite sample's nearest mode by the
    exact distance; high quality below 3 std; a mode covered by at least 20 high-quality samples
    per 2,500 (compared as integers); KL of the nearest-mode histogram to uniform."""
    k, n = len(centers), len(points)
    hq, nearest = [0] * k, [0] * k
    for x, y in points.tolist():
        d, j = min((math.sqrt((x - cx) ** 2 + (y - cy) ** 2), j)
                   for j, (cx, cy) in enumerate(centers.tolist()))
        if math.isfinite(d):
            nearest[j] += 1
            hq[j] += d < 3 * std
    total = sum(nearest)
    kl = sum(m / total * math.log(m / total * k) for m in nearest if m) if total else math.log(k)
    return {"modes_covered": sum(m * 2500 >= 20 * n for m in hq), "high_quality": sum(hq) / n,
            "mode_kl": kl}


def _crafted_mixture_samples(centers, std):
    k = len(centers)
    rng = torch.Generator().manual_seed(0)
    far = torch.full((2500, 2), 100.0)
    count = {c: torch.cat([centers[1].expand(c, 2), far[c:]]) for c in (19, 20)}
    return {
        "on every mode": centers[torch.arange(2500) % k],
        "on one mode": centers[3].expand(2500, 2),
        "on half the modes": centers[torch.arange(2500) % (k // 2)]
        + std * torch.randn(2500, 2, generator=rng),
        "far from every mode": far,
        "between two modes": ((centers[0] + centers[1]) / 2).expand(2500, 2),
        "19 of 2500 on a mode": count[19],
        "20 of 2500 on a mode": count[20],
        # 20 on each mode but one, the rest on it: full coverage by the counts, a collapse
        "piled on one mode": torch.cat([centers[0].expand(2500 - 20 * (k - 1), 2),
                                        centers[1:].repeat_interleave(20, 0)]),
        "half NaN": torch.cat([centers[torch.arange(1250) % k], torch.full((1250, 2), math.nan)]),
        "half inf": torch.cat([centers[torch.arange(1250) % k], torch.full((1250, 2), math.inf)]),
        "1000 samples": centers[torch.arange(1000) % k],
        "7 samples": centers[torch.arange(7) % k],
    }


@pytest.mark.parametrize("name", ["ring8", "grid25"])
def test_mixture_metrics_match_a_float64_oracle_on_crafted_samples(name):
    ds = data.load(name)
    q = quality.MixtureQuality(ds.centers, ds.std)
    for case, points in _crafted_mixture_samples(ds.centers, ds.std).items():
        row, expected = q.measure(points), _mixture_oracle(points.double(), ds.centers.double(), ds.std)
        assert row["modes_covered"] == expected["modes_covered"], case
        assert row["high_quality"] == pytest.approx(expected["high_quality"], abs=1e-15), case
        assert row["mode_kl"] == pytest.approx(expected["mode_kl"], rel=1e-12, abs=1e-15), case
    k = len(ds.centers)
    piled = q.measure(_crafted_mixture_samples(ds.centers, ds.std)["piled on one mode"])
    assert piled["modes_covered"] == k and piled["high_quality"] == 1 and piled["mode_kl"] > 1.5
    assert q.measure(ds.centers[torch.arange(100 * k) % k])["mode_kl"] == pytest.approx(0, abs=1e-15)
    assert q.measure(ds.centers[5].expand(50, 2))["mode_kl"] == pytest.approx(math.log(k), rel=1e-15)


def test_mixture_high_quality_boundary_is_the_exact_distance_in_a_batch_of_any_size():
    # Points (2 + e, 0) beside ring8's mode (2, 0), e a few float64 steps either side of 3 std:
    # the distance e is exact (2 + e - 2 rounds nothing). torch.cdist, past 25 rows, took
    # |x|^2 + |c|^2 - 2 x.c: the same point was high quality in a batch of 2,500 and not alone.
    centers = data.ring8_centers()
    q = quality.MixtureQuality(centers, 0.02)
    threshold = 3 * 0.02
    xs, up, down = [2 + threshold], 2 + threshold, 2 + threshold
    for _ in range(6):
        up, down = math.nextafter(up, math.inf), math.nextafter(down, -math.inf)
        xs += [up, down]
    for x in xs:
        point = torch.tensor([x, 0.0], dtype=torch.float64)
        for n in (1, 2500):
            assert q.measure(point.expand(n, 2))["high_quality"] == float(x - 2 < threshold), (x, n)


def test_mixture_metrics_refuse_an_empty_or_misshapen_batch():
    q = quality.MixtureQuality(data.ring8_centers(), 0.02)
    with pytest.raises(ValueError, match=r"MixtureQuality.measure: points must hold at least one "
                                         r"sample \(over all processes\), got shape \[0, 2\]"):
        q.measure(torch.zeros(0, 2))
    with pytest.raises(ValueError, match=r"MixtureQuality.measure: points must be \[N, 2\], got "
                                         r"shape \[5, 3\]"):
        q.measure(torch.zeros(5, 3))


def test_quality_statistics_travel_where_the_process_group_takes_them(monkeypatch):
    # The statistics are CPU tensors and NCCL reduces CUDA tensors only: every multi-GPU run
    # (nccl) failed its first evaluation with "No backend type associated with device type
    # cpu". The sum now goes through metrics' collective_device (the CUDA device for nccl); here,
    # with no GPU, a stand-in group: the rule is asked with the backend and the tensors' device,
    # and what comes back from the reduction (two processes holding the same share) is used.
    import torch.distributed as dist

    from ganfast.metrics import stats

    asked, reduced = [], []
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_backend", lambda group=None: "nccl")
    monkeypatch.setattr(stats, "collective_device",
                        lambda backend, device: asked.append((backend, device)) or torch.device("cpu"))
    monkeypatch.setattr(dist, "all_reduce", lambda t, *a, **k: reduced.append(t.device) or t.mul_(2))
    centers = data.ring8_centers()
    points = torch.cat([centers[torch.arange(16) % 8], centers[:1].expand(9, 2)])  # 10 on mode 0
    row = quality.MixtureQuality(centers, 0.02).measure(points)
    assert asked == [("nccl", torch.device("cpu"))] and reduced == [torch.device("cpu")]
    expected = _mixture_oracle(torch.cat([points, points]).double(), centers.double(), 0.02)
    assert row == pytest.approx(expected, rel=1e-12)


@pytest.mark.gpu
def test_quality_statistics_reduce_over_nccl(tmp_path):
    import torch.distributed as dist

    torch.cuda.set_device(0)
    dist.init_process_group("nccl", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0,
                            world_size=1)
    try:
        centers = data.ring8_centers()
        points = centers[torch.arange(100) % 8]  # on the CPU, as the trainer measures them
        row = quality.MixtureQuality(centers, 0.02).measure(points)
        assert row == pytest.approx(_mixture_oracle(points.double(), centers.double(), 0.02))
        t = torch.arange(5, dtype=torch.float64)
        total = quality.all_reduce_sum(t.clone())
        assert total.device == t.device and torch.equal(total, t)
    finally:
        dist.destroy_process_group()


class _ClassFromPixel(nn.Module):
    """A stand-in digits classifier: an image's first pixel is its class; features one-hot."""
    head = nn.Identity()
    head.in_features = 10

    def body(self, x):
        return nn.functional.one_hot(x[:, 0, 0, 0].long().clamp(0, 9), 10).float() * 3


def _stand_in_digits_quality(monkeypatch):
    monkeypatch.setattr(quality, "load_digits_classifier", lambda size, log=print: _ClassFromPixel())
    return quality.DigitsQuality(data.DIGITS_SIZE)


def _images_of_classes(classes):
    return torch.tensor(classes, dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 1, 4, 4)


@pytest.mark.parametrize("classes", [[i % 10 for i in range(2000)], [3] * 2000, [i % 5 for i in range(2000)],
                                     [i % 9 for i in range(1950)] + [9] * 50,   # a quarter share: covered
                                     [i % 9 for i in range(1951)] + [9] * 49,   # under it: not
                                     list(range(7))])
def test_digits_class_coverage_and_kl_match_a_float64_oracle(monkeypatch, classes):
    q = _stand_in_digits_quality(monkeypatch)
    labels = torch.tensor(classes[::-1])
    row = q.measure(_images_of_classes(classes), labels)
    counts = np.bincount(classes, minlength=10)
    p = counts / counts.sum()
    assert row["classes_covered"] == sum(int(c * 10 * 4 >= len(classes)) for c in counts)
    kl = sum(x * math.log(10 * x) for x in p if x > 0)
    assert row["class_kl"] == pytest.approx(kl, rel=1e-12, abs=1e-15)
    right = sum(a == b for a, b in zip(classes, classes[::-1], strict=True))
    assert row["class_accuracy"] == right / len(classes)


def test_digits_metrics_refuse_fewer_than_two_images(monkeypatch):
    q = _stand_in_digits_quality(monkeypatch)
    for n in (0, 1):
        with pytest.raises(ValueError, match=r"DigitsQuality.measure: images must hold at least 2 "
                                             r"images \(over all processes\) for a covariance, "
                                             rf"got shape \[{n}, 1, 4, 4\]"):
            q.measure(_images_of_classes([2] * n))


def test_only_the_built_in_digits_get_the_digits_measures(tmp_path, monkeypatch):
    # A folder or .npy is named after its path: --data photos/digits (colour images) or
    # digits.npy (points) got the digits classifier, a shape error at step 0 after training it.
    built = []
    monkeypatch.setattr(quality, "DigitsQuality", lambda size, log=print: built.append(size) or "digits")
    assert quality.for_dataset(data.digits()) == ("digits", quality.DIGITS_SAMPLES)
    assert quality.for_dataset(data.digits(12)) == ("digits", quality.DIGITS_SAMPLES)
    assert built == [data.DIGITS_SIZE, 12]
    ds = data.digits()
    folder = tmp_path / "photos" / "digits"
    folder.mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(folder / f"{i}.png")
    np.save(tmp_path / "digits.npy", np.random.default_rng(0).standard_normal((64, 2)))
    for other in (data.load(str(folder), log=lambda _: None), data.load(str(tmp_path / "digits.npy")),
                  data.Dataset("digits", ds.x, ds.labels, ds.class_names)):  # (not --data digits)
        assert other.name == "digits" and quality.for_dataset(other) == (None, 0)
    assert built == [data.DIGITS_SIZE, 12]


def test_digits_metrics_see_real_digits_and_mode_collapse(tmp_path, monkeypatch):
    monkeypatch.setenv("GANFAST_CACHE", str(tmp_path))
    said = []
    q = quality.DigitsQuality(data.DIGITS_SIZE, log=said.append)
    cached = tmp_path / f"digits_classifier_{data.DIGITS_SIZE}px.pt"
    assert cached.exists()
    # The seconds of training before the run starts are said (not a silent wait), once.
    assert said == [f"training the digits classifier of the quality metrics (once: cached as {cached})"]
    ds = data.digits()
    real = q.measure(ds.x[:1000], ds.labels[:1000])
    assert real["classes_covered"] == 10 and real["class_accuracy"] > 0.95 and real["class_kl"] < 0.05
    ones = ds.x[ds.labels == 1][:150]
    collapsed = q.measure(ones)
    assert collapsed["classes_covered"] <= 2 and collapsed["class_kl"] > 1.5
    assert collapsed["fd_digits"] > 5 * real["fd_digits"]
    again = quality.DigitsQuality(data.DIGITS_SIZE, log=said.append)  # from the cache: the same
    assert len(said) == 1  # network, and nothing to say
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
    net = fid_inception(weights)
    row = quality.InceptionFID(net, real, None, torch.device("cpu")).measure(fake)
    with torch.no_grad():
        stats = [FeatureStats(2048).update(net(((x + 1) / 2).expand(-1, 3, -1, -1)))
                 for x in (fake, real)]
    expected = frechet_distance(stats[0].mean, stats[0].covariance, stats[1].mean,
                                stats[1].covariance)
    assert row["fid_inception"] == pytest.approx(expected, rel=1e-9)


def test_inception_fid_of_rgba_images_is_that_of_their_rgb_channels():
    # A .npy of RGBA images trains with 4 channels; the FID network takes RGB, and pytorch-fid
    # reads an RGBA image as RGB by dropping the alpha (PIL's convert("RGB")). It was a
    # ValueError that the trainer reported as bad --inception-weights. A stand-in network
    # (random Inception weights give near-constant features, an FID of ~0 whatever the input).
    from ganfast.metrics import FeatureStats, frechet_distance
    from ganfast.train import quality

    class RGBFeatures(nn.Module):  # as FIDInceptionV3: [N, 3, H, W] in [0, 1] only
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(3 * 16 * 16, 2048)

        def forward(self, x):
            if x.shape[1] != 3 or x.min() < 0 or x.max() > 1:
                raise ValueError(f"FID Inception: images must be [N, 3, H, W] in [0, 1], got {list(x.shape)}")
            return self.proj(x.flatten(1))

    torch.manual_seed(0)
    net = RGBFeatures()
    real, fake = torch.rand(40, 4, 16, 16) * 2 - 1, torch.rand(30, 4, 16, 16) * 2 - 1
    fid = quality.InceptionFID(net, real, None, torch.device("cpu")).measure(fake)["fid_inception"]
    with torch.no_grad():
        stats = [FeatureStats(2048).update(net((x[:, :3] + 1) / 2)) for x in (fake, real)]
    expected = frechet_distance(stats[0].mean, stats[0].covariance, stats[1].mean, stats[1].covariance)
    assert expected > 1 and fid == pytest.approx(expected, rel=1e-9)


def _data_error(spec, **kwargs) -> str:
    """load(spec) must fail with a DataError that names the --data path; returns its message."""
    with pytest.raises(data.DataError) as info:
        data.load(str(spec), **kwargs)
    assert str(spec) in str(info.value)
    return str(info.value)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16, np.int32, np.int64, np.uint16])
def test_npy_0_255_floats_and_integer_images_scale_like_uint8(tmp_path, dtype):
    pixels = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3))
    pixels[0, 0, 0] = 255  # floats: the 0..255 rule keys on the maximum
    np.save(tmp_path / "u8.npy", pixels.astype(np.uint8))
    np.save(tmp_path / "other.npy", pixels.astype(dtype))
    expected = data.load(str(tmp_path / "u8.npy")).x
    got = data.load(str(tmp_path / "other.npy")).x
    assert got.shape == (4, 3, 8, 8) and torch.allclose(got, expected)
    assert got.min() >= -1 and got.max() <= 1


def test_npy_floats_in_0_1_are_mapped_and_in_minus_1_1_kept(tmp_path):
    x01 = np.random.default_rng(0).random((3, 8, 8), dtype=np.float32)
    np.save(tmp_path / "a.npy", x01)
    np.save(tmp_path / "b.npy", x01 * 2 - 1)
    assert torch.allclose(data.load(str(tmp_path / "a.npy")).x[:, 0], torch.from_numpy(x01 * 2 - 1))
    assert torch.allclose(data.load(str(tmp_path / "b.npy")).x[:, 0], torch.from_numpy(x01 * 2 - 1))


@pytest.mark.parametrize("array", [
    np.full((2, 8, 8), -3, np.int32),                 # negative integers
    np.full((2, 8, 8), 256, np.int64),                # integers beyond 255
    np.full((2, 8, 8), 300.0, np.float32),            # floats beyond 255
    np.linspace(-5, 5, 128).reshape(2, 8, 8),         # floats in no supported range
    np.full((2, 8, 8), np.nan, np.float32),           # not finite
    np.linspace(-0.01, 0.97, 128).reshape(2, 8, 8),   # [0, 1] overshooting: not a guess
    np.arange(128).reshape(2, 8, 8) % 2,              # 0/1 integers: 0..255 or [0, 1]?
])
def test_npy_images_out_of_the_supported_range_are_a_data_error(tmp_path, array):
    np.save(tmp_path / "bad.npy", array)
    message = _data_error(tmp_path / "bad.npy")
    assert "range" in message or "finite" in message or "clearly" in message


@pytest.mark.parametrize("shape", [(10, 1), (10, 3), (10, 64)])
def test_npy_points_must_be_n_by_2(tmp_path, shape):
    np.save(tmp_path / "p.npy", np.zeros(shape, np.float32))
    message = _data_error(tmp_path / "p.npy")
    assert "points must be [N, 2]" in message and "[N, C, H, W]" in message and str(shape) in message


def test_npy_with_five_or_more_dimensions_is_a_data_error(tmp_path):
    np.save(tmp_path / "v.npy", np.zeros((2, 3, 4, 4, 4), np.uint8))
    assert "5 dimensions" in _data_error(tmp_path / "v.npy")


def test_npy_suffix_is_case_insensitive(tmp_path):
    np.save(tmp_path / "points.npy", np.zeros((5, 2), np.float32))
    (tmp_path / "points.npy").rename(tmp_path / "points.NPY")
    assert data.load(str(tmp_path / "points.NPY")).x.shape == (5, 2)


def test_garbage_npy_is_not_a_numpy_array_file(tmp_path):
    (tmp_path / "text.npy").write_text("hello, not an array\n")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    for name in ("text.npy", "objects.npy"):
        message = _data_error(tmp_path / name)
        assert "not a numpy array file" in message
        assert "contains pickled" not in message and "allow_pickle" not in message


@pytest.mark.parametrize("mode,suffix", [("I;16", ".png"), ("I;16B", ".tif"), ("I;16", ".tif")])
def test_image_folder_scales_16_bit_grey_to_8_bits(tmp_path, mode, suffix):
    from PIL import Image

    values = np.array([[0, 257, 1000, 32768], [40000, 65280, 65534, 65535]] * 2, np.uint16)
    raw = values.astype(">u2" if mode.endswith("B") else "<u2").tobytes()
    Image.frombytes(mode, (4, 4), raw).save(tmp_path / f"deep{suffix}")
    ds = data.load(str(tmp_path))
    assert ds.x.shape == (1, 1, 4, 4)
    eight_bit = np.round(values.astype(np.float64) * 255 / 65535)
    assert torch.equal(((ds.x[0, 0] + 1) * 127.5).round().double(), torch.from_numpy(eight_bit))


def test_image_folder_reads_float_grey_from_zero_one_or_as_pixel_values(tmp_path):
    from PIL import Image

    values = np.array([[0.0, 0.25, 0.5, 1.0]] * 4, np.float32)  # a float TIFF opens as mode F
    eight_bit = torch.from_numpy(np.round(values.astype(np.float64) * 255))
    for scale in (1, 255):  # [0, 1], and 0..255 as in .npy data (floats above 1.5)
        Image.fromarray(values * scale, mode="F").save(tmp_path / "float.tif")
        ds = data.load(str(tmp_path))
        assert torch.equal(((ds.x[0, 0] + 1) * 127.5).round().double(), eight_bit)
    for bad, shown in [(values * 1.2, "0 to 1.2;"), (values - 0.5, "-0.5 to 0.5;"),
                       (values * 300, "0 to 300;")]:
        Image.fromarray(bad, mode="F").save(tmp_path / "float.tif")
        assert f"{shown} expected floats in [0, 1] or 0..255" in _data_error(tmp_path)


def test_float_grey_images_of_one_folder_are_read_on_one_scale(tmp_path):
    """The folder decides, not each image: a dark frame of a 0..255 set (values 0 and 1) read
    as [0, 1] was stretched to white."""
    from PIL import Image

    dark = np.array([[0.0, 1.0]] * 2, np.float32)
    Image.fromarray(dark * 200, mode="F").save(tmp_path / "a.tif")
    Image.fromarray(dark, mode="F").save(tmp_path / "b.tif")
    ds = data.load(str(tmp_path))
    assert ((ds.x[:, 0] + 1) * 127.5).round()[:, 0].tolist() == [[0, 200], [0, 1]]
    # Read in order: a [0, 1] reading before the first 0..255 image is refused, naming both.
    Image.fromarray(dark, mode="F").save(tmp_path / "a.tif")
    Image.fromarray(dark * 200, mode="F").save(tmp_path / "b.tif")
    message = _data_error(tmp_path)
    assert "b.tif: float grey values up to 200 (0..255), but" in message
    assert "a.tif was read as [0, 1]" in message


def test_image_folder_skips_hidden_files_and_folders(tmp_path):
    from PIL import Image

    for where in ("cat", "dog", "dog/.ipynb_checkpoints", ".trash"):
        (tmp_path / where).mkdir()
    Image.new("RGB", (8, 8), (10, 10, 10)).save(tmp_path / "cat" / "0.png")
    Image.new("RGB", (8, 8), (20, 20, 20)).save(tmp_path / "dog" / "0.png")
    for hidden in ("dog/.ipynb_checkpoints/0.png", ".trash/0.png", "cat/._0.png", "._top.png"):
        (tmp_path / hidden).write_bytes(b"not an image")  # read, these would be errors
    ds = data.load(str(tmp_path))
    assert ds.x.shape == (2, 3, 8, 8) and ds.class_names == ["cat", "dog"]
    # A folder of hidden images alone says why none was found.
    only_hidden = tmp_path / "only_hidden"
    only_hidden.mkdir()
    Image.new("RGB", (8, 8)).save(only_hidden / ".0.png")
    message = _data_error(only_hidden)
    assert "no images found" in message and "names starting with '.' are skipped" in message


@pytest.mark.parametrize("with_classes", [True, False], ids=["classes", "no-classes"])
def test_image_folder_leaves_out_the_pictures_of_ganfast_runs_inside_it(tmp_path, with_classes):
    # `cd photos && ganfast train --data .` writes runs/<name>/ inside the data (an --out inside
    # it does too): the next run (or --resume) read its sample grids as training images, as a
    # class of their own ("runs") or beside the photos.
    from PIL import Image

    folders = ["cat", "dog"] if with_classes else [""]
    for i, folder in enumerate(folders):
        (tmp_path / folder).mkdir(exist_ok=True)
        Image.new("RGB", (8, 8), (10 * i, 0, 0)).save(tmp_path / folder / f"{i}.png")
    run = tmp_path / "runs" / "data-20260101-000000"
    run.mkdir(parents=True)
    for name in ("checkpoint.pt", "metrics.jsonl"):
        (run / name).write_bytes(b"")
    for name in ("samples_0000000.png", "samples_final.png", "metrics.png"):
        Image.new("RGB", (64, 64)).save(run / name)
    said = []
    ds = data.load(str(tmp_path), log=said.append)
    assert ds.x.shape == (len(folders), 3, 8, 8)
    assert ds.class_names == (["cat", "dog"] if with_classes else [])
    assert said[0] == (f"--data {tmp_path}: leaving out the sample grids and plots of 1 ganfast "
                       "run folder(s) (runs/data-20260101-000000)")


def _mark_as_run(folder):
    for name in ("checkpoint.pt", "metrics.jsonl"):
        (folder / name).write_bytes(b"")


def test_image_folder_leaves_out_only_what_a_run_writes(tmp_path):
    # A run written into the data folder itself (--out equal to --data) loses its grids there;
    # a user's class folder that holds a checkpoint.pt and a metrics.jsonl of its own keeps its
    # images (only names a run writes are left out).
    from PIL import Image

    for i, folder in enumerate(["cat", "dog"]):
        (tmp_path / folder).mkdir()
        Image.new("RGB", (8, 8), (10 * i, 0, 0)).save(tmp_path / folder / f"{i}.png")
    _mark_as_run(tmp_path / "dog")
    _mark_as_run(tmp_path)
    for name in ("samples_0000000.png", "metrics.png"):
        Image.new("RGB", (64, 64)).save(tmp_path / name)  # not "images beside class subfolders"
    Image.new("RGB", (64, 64)).save(tmp_path / "dog" / "samples_0000001.png")
    ds = data.load(str(tmp_path), log=lambda text: None)
    assert ds.class_names == ["cat", "dog"] and ds.x.shape == (2, 3, 8, 8)


def test_image_folder_counts_grey_with_alpha_as_grey(tmp_path):
    from PIL import Image

    Image.new("L", (8, 8), 10).save(tmp_path / "a.png")
    Image.new("LA", (8, 8), (200, 128)).save(tmp_path / "b.png")
    ds = data.load(str(tmp_path))
    assert ds.x.shape == (2, 1, 8, 8)
    assert torch.allclose(ds.x[:, 0, 0, 0], torch.tensor([10, 200]) / 127.5 - 1)


def test_image_folder_with_top_level_images_and_class_subfolders_is_an_error(tmp_path):
    from PIL import Image

    (tmp_path / "cat").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "cat" / "0.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "stray.png")
    message = _data_error(tmp_path)
    assert "stray.png" in message and "cat" in message and "class subfolder" in message


def test_image_folder_skips_and_logs_empty_subfolders(tmp_path):
    from PIL import Image

    for name in ("cat", "dog"):
        (tmp_path / name).mkdir()
        Image.new("RGB", (8, 8)).save(tmp_path / name / "0.png")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    said = []
    ds = data.load(str(tmp_path), log=said.append)
    assert ds.class_names == ["cat", "dog"] and ds.labels.tolist() == [0, 1]
    assert any("empty" in line for line in said)
    # empty subfolders beside top-level images: the images are one unlabelled set
    (tmp_path / "cat" / "0.png").rename(tmp_path / "a.png")
    (tmp_path / "dog" / "0.png").rename(tmp_path / "b.png")
    ds = data.load(str(tmp_path), log=said.append)
    assert ds.x.shape == (2, 3, 8, 8) and ds.labels is None and ds.class_names == []


def test_non_square_image_folder_suggests_image_size(tmp_path):
    from PIL import Image

    Image.new("RGB", (12, 8)).save(tmp_path / "wide.png")
    assert "--image-size" in _data_error(tmp_path)
    assert data.load(str(tmp_path), image_size=8, log=lambda _: None).x.shape == (1, 3, 8, 8)


def test_image_size_message_reads_naturally_for_one_size(tmp_path):
    from PIL import Image

    for i in range(2):
        Image.new("RGB", (12, 12)).save(tmp_path / f"{i}.png")
    said = []
    data.load(str(tmp_path), image_size=8, log=said.append)
    assert len(said) == 1 and "1 different sizes" not in said[0]
    assert "12x12" in said[0] and "8x8" in said[0]


def test_missing_data_path_says_no_such_file_or_folder(tmp_path):
    for missing in (tmp_path / "nope", tmp_path / "nope.npy", tmp_path / "nope" / "x.npy"):
        assert "no such file or folder" in _data_error(missing)


def test_an_empty_data_path_is_refused_not_read_as_the_working_folder(tmp_path, monkeypatch):
    # Path("") is "."; an empty --data must not train on the images below the working folder.
    from PIL import Image

    Image.new("L", (8, 8)).save(tmp_path / "stray.png")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(data.DataError, match="--data '' is empty: expected digits, ring8"):
        data.load("")


def test_image_size_resizes_digits_and_npy_images_and_is_refused_for_points(tmp_path):
    # digits: the 8x8 originals upscaled to the side asked for, as the default 16 is.
    assert data.load("digits", image_size=24).x.shape == (1797, 1, 24, 24)
    torch.testing.assert_close(data.load("digits", image_size=16).x, data.load("digits").x)
    # shrinking is antialiased, as for .npy images below and PIL's resize of image folders
    from sklearn.datasets import load_digits

    eight = torch.tensor(load_digits().images, dtype=torch.float32).unsqueeze(1) / 16.0
    expected = torch.nn.functional.interpolate(eight, size=(4, 4), mode="bilinear", antialias=True)
    torch.testing.assert_close(data.load("digits", image_size=4).x, expected.clamp(0, 1) * 2 - 1)
    # .npy images: bilinear with antialiasing, the reference being torch's own on the scaled data.
    images = np.random.default_rng(3).uniform(0, 1, (5, 3, 12, 12)).astype(np.float32)
    np.save(tmp_path / "im.npy", images)
    said = []
    ds = data.load(str(tmp_path / "im.npy"), image_size=5, log=said.append)
    expected = torch.nn.functional.interpolate(torch.from_numpy(images).double() * 2 - 1, size=(5, 5),
                                               mode="bilinear", antialias=True)
    torch.testing.assert_close(ds.x.double(), expected, atol=1e-6, rtol=0)
    assert said == [f"--data {tmp_path / 'im.npy'}: resizing the 5 images from 12x12 to 5x5 "
                    "(--image-size 5)"]
    np.save(tmp_path / "p.npy", np.zeros((10, 2), np.float32))
    for spec in ("ring8", "grid25", str(tmp_path / "p.npy")):
        with pytest.raises(data.DataError, match="--image-size 8: .*2-D points, not images"):
            data.load(spec, image_size=8)
    with pytest.raises(data.DataError, match="--image-size must be a positive number of pixels, got 0"):
        data.load("digits", image_size=0)


@pytest.mark.parametrize("shape,channels_last", [((10, 4, 4, 3), True), ((10, 4, 4, 1), True),
                                                 ((10, 3, 4, 4), False), ((10, 1, 4, 4), False)])
def test_npy_images_whose_first_and_last_axes_could_be_channels_are_read_square(
        tmp_path, shape, channels_last):
    # (10, 4, 4, 3) is 4x4 RGB, channels last; read channels first it would be 4-channel 4x3
    # images, which --image-size would then "fix" into scrambled pixels.
    pixels = np.random.default_rng(0).integers(0, 256, shape).astype(np.uint8)
    np.save(tmp_path / "im.npy", pixels)
    expected = torch.from_numpy(pixels.transpose(0, 3, 1, 2) if channels_last else pixels)
    torch.testing.assert_close(data.load(str(tmp_path / "im.npy")).x,
                               expected.float() / 127.5 - 1)


def test_npy_images_of_an_ambiguous_layout_are_a_data_error(tmp_path):
    np.save(tmp_path / "im.npy", np.zeros((10, 4, 4, 4), np.uint8) + 7)
    message = _data_error(tmp_path / "im.npy")
    assert "shape (10, 4, 4, 4) is ambiguous" in message and "both square" in message


def test_npy_images_square_neither_way_are_channels_first_for_image_size(tmp_path):
    # (10, 3, 12, 4): 3-channel 12x4 images or 4-channel 3x12 ones; as before either axis was
    # looked at, channels first, and --image-size makes them square.
    pixels = np.random.default_rng(0).integers(0, 256, (10, 3, 12, 4)).astype(np.uint8)
    np.save(tmp_path / "im.npy", pixels)
    assert data.load(str(tmp_path / "im.npy"), image_size=4).x.shape == (10, 3, 4, 4)


def test_metrics_plot_shows_a_single_loss_row_and_distances_on_a_log_scale(tmp_path, monkeypatch):
    # With one loss row (--steps 1, or --log-every past --steps) the losses panel was a line of
    # one point, drawn as nothing; fid_inception falls by orders of magnitude as fd_digits does.
    import matplotlib.pyplot as plt

    from ganfast.train import monitor

    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    rows = [{"step": 0, "fid_inception": 300.0, "fd_digits": 900.0},
            {"step": 1, "loss_d": 1.2, "loss_g": 0.7, "fid_inception": 40.0, "fd_digits": 30.0}]
    monitor.plot_metrics(rows, tmp_path / "metrics.png")
    (fig,) = figures
    losses, *panels = fig.axes
    assert [line.get_marker() for line in losses.lines] == ["o", "o"]
    assert {ax.get_title(): ax.get_yscale() for ax in panels} == {"fid_inception": "log",
                                                                  "fd_digits": "log"}
    assert (tmp_path / "metrics.png").stat().st_size > 0


# -- what a run draws: sample grids, scatter plots, metrics.png, the progress bar --------------

def _grid_oracle(images: torch.Tensor, rows: int, cols: int, border: int) -> np.ndarray:
    """The grid built cell by cell in numpy: 1-pixel borders of `border` (opaque alpha), the
    images' pixels ((x + 1) * 127.5 rounded), cells past the last image border-coloured."""
    x = np.rint((images.double().clamp(-1, 1).numpy() + 1) * 127.5).astype(np.uint8)
    n, c, h, w = x.shape
    grid = np.full((rows * (h + 1) + 1, cols * (w + 1) + 1, c), border, np.uint8)
    if c in (2, 4):
        grid[..., -1] = 255
    for i in range(n):
        top, left = 1 + (i // cols) * (h + 1), 1 + (i % cols) * (w + 1)
        grid[top:top + h, left:left + w] = x[i].transpose(1, 2, 0)
    return grid


@pytest.mark.parametrize("background,border", [(-1.0, 255), (1.0, 0)])
def test_grid_borders_stand_out_against_the_images_backgrounds(background, border):
    # The borders were black (zeros): invisible against the black backgrounds of digits, the
    # samples running into each other. Now white on dark images, black on light ones; cells
    # left over in the last row take the border's colour, not black (a black sample).
    from ganfast.train import monitor

    images = torch.full((5, 1, 6, 6), background)
    images[:, :, 2:4, 2:4] = -background  # a stroke in the middle, as digits
    grid = monitor.image_grid(images, rows=2)
    assert grid.shape == (2 * 7 + 1, 3 * 7 + 1, 1)
    np.testing.assert_array_equal(grid, _grid_oracle(images, 2, 3, border))
    assert (grid[0] == border).all() and (grid[:, 7] == border).all()


def test_the_digits_get_white_borders_and_light_images_black_ones():
    # Decided by the 1-pixel frame of the images (the background they sit on), in luma for
    # colour: the digits' frame is black; a white frame around a dark centre is light.
    from ganfast.train import monitor

    assert monitor.border_level(data.digits().x) == 255
    light = -torch.ones(4, 3, 8, 8)
    light[:, :, [0, -1], :] = 1
    light[:, :, :, [0, -1]] = 1
    assert monitor.border_level(light) == 0
    # an alpha channel does not count: dark colour, opaque or not
    dark_rgba = torch.cat([-torch.ones(2, 3, 8, 8), torch.ones(2, 1, 8, 8)], 1)
    assert monitor.border_level(dark_rgba) == 255


@pytest.mark.parametrize("channels,mode", [(1, "L"), (2, "LA"), (3, "RGB"), (4, "RGBA")])
def test_sample_grids_keep_every_channel_the_data_has(tmp_path, channels, mode):
    # A .npy of RGBA images ([N, 4, H, W]) trains with 4 channels; its grids were saved as RGB,
    # the generated alpha dropped. The borders are opaque.
    from ganfast.train import monitor

    torch.manual_seed(0)
    images = torch.rand(7, channels, 5, 5) * 2 - 1
    monitor.save_image_grid(images, 2, tmp_path / "grid.png", border=255)
    with Image.open(tmp_path / "grid.png") as picture:
        assert picture.mode == mode
        pixels = np.asarray(picture)
    pixels = pixels[..., None] if channels == 1 else pixels
    np.testing.assert_array_equal(pixels, _grid_oracle(images, 2, 4, 255))


def test_a_grid_of_five_channels_is_refused_by_name(tmp_path):
    from ganfast.train import monitor

    with pytest.raises(ValueError, match=r"^save_image_grid: images must be \[N, C, H, W\] with "
                                         r"C = 1, 2, 3 or 4, got shape \[2, 5, 4, 4\]$"):
        monitor.save_image_grid(torch.zeros(2, 5, 4, 4), 1, tmp_path / "grid.png")


@pytest.mark.parametrize("classes", [2, 3, 10, 11, 15, 20, 30, 37, 50, 100, 999, 1024])
def test_a_conditional_grid_is_a_row_per_class_up_to_ten_and_about_square_beyond(classes):
    # One row of 10 per class made a 30-class folder's grid 300 samples, 30 rows by 10, and a
    # 100-class one 1,000 samples ten times taller than wide.
    from ganfast.train import monitor

    labels, rows, cols = monitor.class_grid(classes)
    per_class = len(labels) // classes
    assert torch.equal(labels, torch.arange(classes).repeat_interleave(per_class))  # in order
    assert rows * cols >= len(labels) > (rows - 1) * cols  # no empty row
    if classes <= 10:
        assert (rows, cols, per_class) == (classes, 10, 10)
    else:
        assert per_class == max(1, 100 // classes) and len(labels) <= max(100, classes)
        assert cols % per_class == 0  # a class's samples never split over two rows
        assert max(rows, cols) <= 2 * min(rows, cols)  # about square
    assert rows <= 32 and cols <= 32


def test_a_conditional_grid_of_very_many_classes_draws_the_first_1024():
    from ganfast.train import monitor

    labels, rows, cols = monitor.class_grid(5000)
    assert torch.equal(labels, torch.arange(1024)) and (rows, cols) == (32, 32)
    with pytest.raises(ValueError, match=r"^class_grid: num_classes must be >= 1, got 0$"):
        monitor.class_grid(0)


def _capture_figure(monkeypatch) -> list:
    import matplotlib.pyplot as plt

    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    return figures


def test_a_points_scatter_shows_the_data_beneath_and_says_which_is_which(tmp_path, monkeypatch):
    # A run on a .npy of points drew its samples alone, nothing to compare them with; the
    # crosses of the modes had a label but no legend.
    from ganfast.train import monitor

    figures = _capture_figure(monkeypatch)
    samples, reference = torch.randn(50, 2), torch.randn(80, 2) * 3
    monitor.save_points(samples, torch.zeros(1, 2), tmp_path / "p.png", "step 3", data=reference)
    (fig,) = figures
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["data", "samples", "modes"]
    drawn = {c.get_label(): c.get_offsets() for c in ax.collections}
    np.testing.assert_array_equal(drawn["data"], reference.numpy())
    np.testing.assert_array_equal(drawn["samples"], samples.numpy())
    assert (tmp_path / "p.png").stat().st_size > 0


def test_metrics_plot_steps_and_counts_on_integer_ticks_and_wraps_many_panels(tmp_path,
                                                                              monkeypatch):
    # A 2-step run's axes read "step 0.5, 1.5" and "classes_covered 6.5"; a conditional digits
    # run with the FID drew six panels in one row, 24 inches wide; the losses panel started at
    # step 1, the measures at 0, each axis its own.
    from ganfast.train import monitor

    figures = _capture_figure(monkeypatch)
    rows = [{"step": 0, "fd_digits": 900.0, "classes_covered": 6, "class_kl": 1.0,
             "class_accuracy": 0.1, "fid_inception": 300.0},
            {"step": 1, "loss_d": 1.2, "loss_g": 0.7},
            {"step": 2, "loss_d": 1.1, "loss_g": 0.8, "fd_digits": 800.0, "classes_covered": 8,
             "class_kl": 0.5, "class_accuracy": 0.2, "fid_inception": 200.0}]
    monitor.plot_metrics(rows, tmp_path / "metrics.png")
    (fig,) = figures
    fig.canvas.draw()
    assert [ax.get_title() for ax in fig.axes] == ["losses", "fd_digits", "classes_covered",
                                                   "class_kl", "class_accuracy", "fid_inception"]
    assert {ax.get_subplotspec().get_geometry()[:2] for ax in fig.axes} == {(2, 3)}
    for ax in fig.axes:
        lo, hi = ax.get_xlim()
        assert lo <= 0 and hi >= 2, ax.get_title()  # every panel over the same steps
        shown = [t for t in ax.get_xticks() if lo <= t <= hi]
        assert shown and all(float(t).is_integer() for t in shown), (ax.get_title(), shown)
    counts = fig.axes[2]
    lo, hi = counts.get_ylim()
    assert all(float(t).is_integer() for t in counts.get_yticks() if lo <= t <= hi)
    four = [{"step": 0, "a": 1.0, "b": 2.0, "c": 3.0}]
    monitor.plot_metrics(four, tmp_path / "metrics.png")
    assert {ax.get_subplotspec().get_geometry()[:2] for ax in figures[1].axes} == {(1, 4)}


def test_a_row_of_nothing_but_its_step_is_not_logged(tmp_path):
    # Data with nothing to measure (an image folder or .npy without --inception-weights)
    # logged {"step": 0}: a row of no figures, read as an evaluation that measured nothing.
    # metrics.jsonl is there from the start all the same: with checkpoint.pt it marks a run
    # folder, whose pictures an image folder around it leaves out.
    from ganfast.train import checkpoint, monitor

    (tmp_path / "checkpoint.pt").write_bytes(b"")
    m = monitor.Monitor(tmp_path, 4, 0, True, False)
    try:
        m.log({"step": 0})
        assert (tmp_path / "metrics.jsonl").read_text() == ""
        assert checkpoint.is_run_folder(tmp_path)
        m.log({"step": 1, "loss_d": 0.5, "loss_g": 1.0})
        assert monitor.read_metrics(tmp_path / "metrics.jsonl") == [
            {"step": 1, "loss_d": 0.5, "loss_g": 1.0}]
    finally:
        m.close()


def test_the_progress_bar_keeps_the_last_measures_until_the_next_evaluation(tmp_path):
    # An evaluation's figures were replaced by the losses of the next row: on screen for one
    # log interval of the many between two evaluations.
    from ganfast.train import monitor

    m = monitor.Monitor(tmp_path, 10, 0, True, False)
    try:
        m.advance(1, {"fd_digits": 900.0, "classes_covered": 6})
        m.advance(1, {"loss_d": 0.5, "loss_g": 1.25})
        assert m.bar.postfix == "loss_d=0.5, loss_g=1.25, fd_digits=900, classes_covered=6"
        m.advance(1, {"loss_d": 0.25, "loss_g": 1.5, "fd_digits": 80.0, "classes_covered": 9})
        assert m.bar.postfix == "loss_d=0.25, loss_g=1.5, fd_digits=80, classes_covered=9"
    finally:
        m.close()
