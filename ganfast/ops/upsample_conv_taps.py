"""Upsample + 3x3 conv on CPU as tap products: 4x fewer multiply-adds, no upsampled tensor.

Nearest 2x upsampling repeats each source pixel on a 2x2 block, so tap (ky, kx) of the 3x3 conv
multiplies, at every output pixel, some source pixel by the same weight slice w[:, :, ky, kx].
Those products are therefore computed once per source pixel, not once per output pixel:

    P[b, ky, kx, :, i, j] = w[:, :, ky, kx] @ x[b, :, i, j]      (one 1x1 conv, 9*Cout channels)

and each output pixel is the sum of 9 of them, shifted. Along one axis (the module doc of
ops/upsample_conv.py has the derivation), output row 2i + d adds
    d = 0:  P[ky=0] at source row i-1,  P[ky=1] and P[ky=2] at row i
    d = 1:  P[ky=0] and P[ky=1] at row i,  P[ky=2] at row i+1
(zero outside the image), and the same along columns with kx. Cost: 9 * H*W * Cin*Cout
multiply-adds against 36 for the unfused block and 16 for the folded transposed conv, plus
additions on [B, 9*Cout, H, W]. oneDNN runs the 1x1 conv near the machine's matrix throughput
at every map size, where its transposed conv is slow on small maps: this is the form the torch
backend runs on CPU (benchmarks/NOTES.md has the figures).

The backward is the adjoint: the gradient of P gathers the output gradient the same way
(P[ky=1] at row i receives output rows 2i and 2i+1, P[ky=0] rows 2i+1 and 2i+2, P[ky=2] rows
2i-1 and 2i), then one aten.convolution_backward of the 1x1 conv gives the input's and the
weight's gradients. Nothing but x and the weight is needed, so autograd saves nothing upsampled.

The products are laid out channels_last whatever x's layout (oneDNN's 1x1 conv and the shifted
additions are fastest so: measured 2.1-2.4x the unfused block against 1.7-2.0x keeping NCHW at
16x16 and 64x64 maps); the output follows x's layout.
"""

import torch
import torch.nn.functional as F

from .layout import image_format

CHANNELS_LAST = torch.channels_last


def _tap_weight(weight: torch.Tensor) -> torch.Tensor:
    """Conv2d weight [Cout, Cin, 3, 3] -> the 1x1 conv's [9*Cout, Cin, 1, 1], tap-major."""
    c_out, c_in = weight.shape[:2]
    taps = weight.permute(2, 3, 0, 1).reshape(9 * c_out, c_in, 1, 1)
    return taps.contiguous(memory_format=CHANNELS_LAST)


def _products(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """P as a [B, 3 (ky), 3 (kx), Cout, H, W] view of a channels_last 1x1 conv's output.

    The bias rides on the centre tap's channels: every output pixel adds exactly one centre
    product (ky = kx = 1 in both phases of both axes), so the conv adds it, not a pass over
    the output."""
    b, _, h, w = x.shape
    c_out = weight.shape[0]
    if bias is not None:
        bias = F.pad(bias, (4 * c_out, 4 * c_out))  # zero but on tap (1, 1), index 4 of 9
    p = F.conv2d(x.contiguous(memory_format=CHANNELS_LAST), _tap_weight(weight), bias)
    return p.permute(0, 2, 3, 1).view(b, h, w, 3, 3, c_out).permute(0, 3, 4, 5, 1, 2)


def _empty_channels_last(like: torch.Tensor, b, taps, c, h, w) -> torch.Tensor:
    """A [B, taps, C, H, W] view whose memory is [B, H, W, taps, C] (channels_last order)."""
    return like.new_empty(b, h, w, taps, c).permute(0, 3, 4, 1, 2)


def _sum_taps_along_rows(p, out):
    """out[..., i, d, :] (row 2i + d) from the 3 row taps p[:, k] ([..., H, W] each).

    p is [B, 3, ..., H, W] with the taps in dim 1; out is [B, ..., H, 2, W]."""
    torch.add(p[:, 1], p[:, 2], out=out[..., 0, :])
    out[..., 1:, 0, :].add_(p[:, 0, ..., :-1, :])
    torch.add(p[:, 0], p[:, 1], out=out[..., 1, :])
    out[..., :-1, 1, :].add_(p[:, 2, ..., 1:, :])


def _gather_rows(grad, out):
    """The adjoint of _sum_taps_along_rows: out[:, k] from grad's rows (grad[..., i, d, :])."""
    even, odd = grad[..., 0, :], grad[..., 1, :]
    torch.add(even, odd, out=out[:, 1])
    out[:, 0].copy_(odd)
    out[:, 0, ..., :-1, :].add_(even[..., 1:, :])
    out[:, 2].copy_(even)
    out[:, 2, ..., 1:, :].add_(odd[..., :-1, :])


def _column_pairs(t: torch.Tensor, w: int) -> torch.Tensor:
    """[B, C, 2H, 2W] -> a [B, C, W, 2, 2H] view: columns 2j + d as rows, for the row helpers."""
    return t.unflatten(3, (w, 2)).permute(0, 1, 3, 4, 2)


def taps_forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """conv2d(upsample_nearest_2x(x), weight, bias, padding=1), output in x's layout."""
    b, _, h, w = x.shape
    c_out = weight.shape[0]
    p = _products(x, weight, bias)  # [B, ky, kx, Cout, H, W]
    # Rows first, into [B, kx, Cout, 2H, W]; then columns, written straight into the output.
    rows = _empty_channels_last(p, b, 3, c_out, 2 * h, w)
    _sum_taps_along_rows(p, rows.unflatten(3, (h, 2)))
    del p  # 2.25x the output: freed before the output is allocated
    out = torch.empty(b, c_out, 2 * h, 2 * w, dtype=rows.dtype, device=rows.device,
                      memory_format=image_format(x))
    _sum_taps_along_rows(rows.transpose(-1, -2), _column_pairs(out, w))
    return out


def taps_backward(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, needs):
    """(grad of x, grad of weight) of taps_forward without its bias; needs: which are wanted."""
    if not (needs[0] or needs[1]):
        return None, None
    b, _, h, w = x.shape
    c_out = weight.shape[0]
    # Columns first (the forward's last step) into [B, kx, Cout, 2H, W], then rows into
    # [B, ky, kx, Cout, H, W], stored as the 1x1 conv's channels_last output [B, H, W, 9*Cout].
    rows = _empty_channels_last(grad, b, 3, c_out, 2 * h, w)
    _gather_rows(_column_pairs(grad, w), rows.transpose(-1, -2))
    grad_p = grad.new_empty(b, h, w, 3, 3, c_out)
    _gather_rows(rows.unflatten(3, (h, 2)), grad_p.permute(0, 3, 4, 5, 1, 2))
    grad_p = grad_p.view(b, h, w, 9 * c_out).permute(0, 3, 1, 2)
    grad_x, grad_taps, _ = torch.ops.aten.convolution_backward(
        grad_p, x.contiguous(memory_format=CHANNELS_LAST), _tap_weight(weight), None,
        [1, 1], [0, 0], [1, 1], False, [0, 0], 1, [needs[0], needs[1], False])
    grad_weight = None
    if needs[1]:
        grad_weight = grad_taps.view(3, 3, c_out, weight.shape[1]).permute(2, 3, 0, 1)
    if grad_x is not None:
        grad_x = grad_x.contiguous(memory_format=image_format(x))
    return grad_x, grad_weight
