"""The FID Inception network against pytorch-fid's, given the same (random) weights."""

import pytest
import torch

from ganfast.metrics import fid_inception
from ganfast.metrics.inception import WEIGHTS_ENV, FIDInceptionV3


def _random_state(seed=0):
    torch.manual_seed(seed)
    state = FIDInceptionV3().state_dict()
    for key, value in state.items():  # BN statistics off their defaults, so they are checked too
        if key.endswith("running_var"):
            value.uniform_(0.5, 2)
        elif key.endswith("running_mean"):
            value.normal_(0, 0.1)
    return state


def test_features_equal_pytorch_fid_given_the_same_weights(monkeypatch, tmp_path):
    pfi = pytest.importorskip("pytorch_fid.inception")
    state = _random_state()
    # pytorch-fid's builder downloads its weights: hand it these instead (strict load, so the
    # state_dict keys are the same as the weight file's).
    monkeypatch.setattr(pfi, "load_state_dict_from_url", lambda *args, **kwargs: state)
    theirs = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
    path = tmp_path / "weights.pth"
    torch.save(state, path)
    ours = fid_inception(path)
    images = torch.rand(2, 3, 37, 50)  # odd size: resized to 299 as pytorch-fid does
    with torch.no_grad():
        expected = theirs(images)[0].flatten(1)
        torch.testing.assert_close(ours(images), expected, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(ours.logits(images), ours.fc(expected), atol=1e-5, rtol=1e-4)
    assert ours.logits(images).shape == (2, 1008)


def test_weights_from_safetensors_and_the_environment(monkeypatch, tmp_path):
    safetensors = pytest.importorskip("safetensors.torch")
    state = _random_state(1)
    path = tmp_path / "weights.safetensors"
    safetensors.save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    monkeypatch.setenv(WEIGHTS_ENV, str(path))
    net = fid_inception()
    torch.testing.assert_close(net.fc.weight, state["fc.weight"])
    assert not any(p.requires_grad for p in net.parameters()) and not net.training


def test_missing_weights_say_how_to_get_them(monkeypatch, tmp_path):
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    with pytest.raises(FileNotFoundError, match=WEIGHTS_ENV):
        fid_inception()
    with pytest.raises(FileNotFoundError, match="nope.pth does not exist.*pt_inception-2015-12-05"):
        fid_inception(tmp_path / "nope.pth")


def test_images_must_be_rgb_batches():
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        FIDInceptionV3()(torch.rand(3, 32, 32))
