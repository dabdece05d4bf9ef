"""pytest-benchmark: `ganfast fid`'s image pipeline with decoding threads (--workers) and
without, the network replaced by a stand-in for a GPU's (0.3 ms per image, the GIL released as
a CUDA sync releases it), so the figure is the pipeline's, not a CPU network's. Run: make bench."""

import time

import numpy as np
import pytest
import torch
from PIL import Image

from ganfast.metrics import cli as fid_cli

IMAGES = 400


def gpu_like_network(images: torch.Tensor) -> torch.Tensor:
    time.sleep(0.0003 * len(images))
    return torch.randn(len(images), 16)


@pytest.fixture(scope="module", params=[(64, "png"), (256, "png"), (256, "jpg")],
                ids=lambda p: f"{p[0]}x{p[0]}-{p[1]}")
def folder(request, tmp_path_factory):
    size, suffix = request.param
    path = tmp_path_factory.mktemp(f"{size}{suffix}")
    rng = np.random.default_rng(0)
    for i in range(IMAGES):  # smooth images compress about as photographs do
        coarse = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
        Image.fromarray(coarse).resize((size, size), Image.BILINEAR).save(path / f"{i:04d}.{suffix}")
    return path


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_fid_image_pipeline(benchmark, folder, workers):
    files = fid_cli._image_files(folder)
    benchmark.group = f"ganfast fid's pipeline, {IMAGES} images of {folder.name} (--workers)"
    benchmark.pedantic(lambda: fid_cli._features_of_folder(
        folder, files, (gpu_like_network, None), 50, torch.device("cpu"), False, keep=False,
        workers=workers), rounds=3, warmup_rounds=1)
