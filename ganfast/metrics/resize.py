"""Resizing images to the Inception network's 299x299: pytorch-fid's way and TensorFlow 1's.

pytorch-fid resizes with `F.interpolate(mode="bilinear", align_corners=False)`, which samples
the source at half-pixel centres: src = (dst + 0.5) * in / out - 0.5. The original FID code
(TensorFlow 1's `tf.image.resize_bilinear`, align_corners=False) has no half-pixel offset:
src = dst * in / out, so its output is shifted by up to half a source pixel and its last rows
and columns repeat the edge. FIDs computed the two ways differ slightly; torch-fidelity uses
TensorFlow 1's (its `interpolate_bilinear_2d_like_tensorflow1x`, which this equals).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

RESIZE_CHOICES = ("pytorch", "tf1")


def _tf1_source(in_size: int, out_size: int, device):
    """(lo, hi, frac) of each output index: src = dst * in / out, clamped at the far edge."""
    # The scale is rounded to float32 and multiplied in float32, as TensorFlow 1 does.
    src = torch.arange(out_size, dtype=torch.float32, device=device) * torch.tensor(
        in_size / out_size, dtype=torch.float32)
    lo = src.long()  # src >= 0, so truncation is floor
    hi = (lo + 1).clamp_max(in_size - 1)
    return lo, hi, src - lo.float()


def resize_bilinear_tf1(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of [N, C, H, W] to `size` as TensorFlow 1 (align_corners=False) does."""
    y_lo, y_hi, dy = _tf1_source(images.shape[2], size[0], images.device)
    x_lo, x_hi, dx = _tf1_source(images.shape[3], size[1], images.device)
    rows_lo, rows_hi = images[:, :, y_lo], images[:, :, y_hi]
    dx = dx.to(images.dtype)
    # Columns first, then rows, each a lerp a + (b - a) t: TensorFlow's order of operations.
    top = rows_lo[..., x_lo] + (rows_lo[..., x_hi] - rows_lo[..., x_lo]) * dx
    bottom = rows_hi[..., x_lo] + (rows_hi[..., x_hi] - rows_hi[..., x_lo]) * dx
    return top + (bottom - top) * dy.to(images.dtype)[:, None]


def resize_299(images: torch.Tensor, resize: str) -> torch.Tensor:
    if resize == "tf1":
        return resize_bilinear_tf1(images, (299, 299))
    return F.interpolate(images, size=(299, 299), mode="bilinear", align_corners=False)
