"""Upsample + 3x3 conv on CPU as tap products: 4x fewer multiply-adds, no upsampled tensor.

Nearest 2x upsampling repeats each source pixel on a 2x2 block, so tap (ky, kx) of the 3x3 conv
multiplies, at every output pixel, some source pixel by the same weight slice w[:, :, ky, kx].
Those products are therefore computed once per source pixel, not once per output pixel:

    P[b, ky, kx, :, i, j] = w[:, :, ky, kx] @ x[b, :, i, j]      (one GEMM, 9*Cout columns)

and each output pixel is the sum of 9 of them, shifted. Along one axis (the module doc of
ops/upsample_conv.py has the derivation), output row 2i + d adds
    d = 0:  P[ky=0] at source row i-1,  P[ky=1] and P[ky=2] at row i
    d = 1:  P[ky=0] and P[ky=1] at row i,  P[ky=2] at row i+1
(zero outside the image), and the same along columns with kx. Cost: 9 * H*W * Cin*Cout
multiply-adds against 36 for the unfused block and 16 for the folded transposed conv, plus
additions on [B, 9*Cout, H, W]. The product is one GEMM of x's channels_last rows, [B*H*W, Cin],
with the taps' weight, [Cin, 9*Cout] (torch.mm, where oneDNN's transposed conv is slow on small
maps; oneDNN's own 1x1 conv of the same product measured 1.3x slower forward and 2.7x slower
backward than the GEMMs on an AVX-512 CPU): this is the form the torch backend runs on CPU
(benchmarks/NOTES.md has the figures).

The backward is the adjoint: the gradient of P gathers the output gradient the same way
(P[ky=1] at row i receives output rows 2i and 2i+1, P[ky=0] rows 2i+1 and 2i+2, P[ky=2] rows
2i-1 and 2i), then two GEMMs give the input's gradient (grad P @ W) and the weight's
(grad P^T @ x). Nothing but x and the weight is needed, so autograd saves nothing upsampled.

Tiles. The products are 2.25x the output; made whole for a BigGAN block they were 75 MB, which
glibc's malloc maps fresh from the kernel on every call (above its 32 MB mmap threshold) and
which no cache holds, so the additions ran from memory and page faults cost as much as the GEMM
(forward 1.5x the unfused block at 64x64). Both passes therefore run tile by tile: samples, or
bands of source rows of one sample, whose products take about TILE_BYTES. A band's products
include one source row above and below it (the halo: out rows 2*r0 and 2*r1 - 1 read them), so
banding recomputes 2 rows of products per band; the backward reads the output gradient's halo
rows instead and computes each band's product gradient exactly once. A tile's temporaries live
in per-thread scratch memory kept between calls (_scratch): made fresh, even tile-sized ones
were new, page-faulted memory on most calls.

The products are laid out channels_last whatever x's layout (the GEMM's rows and the shifted
additions are fastest so: measured 2.1-2.4x the unfused block against 1.7-2.0x keeping NCHW at
16x16 and 64x64 maps; with a single input channel x and the products count as contiguous too,
which gives the same values). The output follows x's layout: an NCHW output receives the
column sums through a channels_last tile and one copy, and an NCHW output gradient is copied to
channels_last per tile before the gather (across the products' order both ran 2-4x slower).

Half precision (fp16, bf16): the GEMMs run in the input's dtype, as conv2d's, and everything
between them in float32 (accumulate_dtype): the products are copied to float32 before their
sums, the output's gradient gathered in float32 and rounded once for the GEMMs. Each product,
the output and the input's gradient are rounded once (the weight's gradient once per tile, its
partials summed in float32); the tiles' budget counts float32 bytes, and a tile's products also
have their half-precision copy (half as large) in scratch.
"""

import math
import threading

import torch
import torch.nn.functional as F

from .layout import image_format

CHANNELS_LAST = torch.channels_last
# Products per tile: cache-sized (32 MB L3 on the 2-core machines: the products and the row sums
# of a tile stay in it). 8 MB measured best among 2, 4, 8, 16 and 24 MB, and again among 1, 2, 4
# and 8 MB once the temporaries were scratch (benchmarks/NOTES.md).
TILE_BYTES = 8 << 20
# Temporaries from SCRATCH_MIN_BYTES to SCRATCH_MAX_BYTES live in per-thread scratch memory
# kept between calls (_scratch). Smaller ones come back from malloc's free lists without page
# faults, and a fresh tensor costs less host time than a view of scratch (1.3 against 3.3 us).
SCRATCH_MIN_BYTES = 64 << 10
SCRATCH_MAX_BYTES = 2 * TILE_BYTES


class _Scratch(threading.local):
    def __init__(self):
        self.buffers = {}  # name -> uint8 tensor, grown on demand


_SCRATCH = _Scratch()


def _scratch(name: str, shape, dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised contiguous CPU tensor of `shape` and `dtype`, in memory this thread
    keeps between calls. Why: a fresh tile temporary of a few MB is new memory on most
    calls (glibc returns the heap's freed top to the kernel and maps large blocks fresh), and
    the page faults of a small block's temporaries took about a tenth of its forward+backward
    (benchmarks/NOTES.md). One buffer per name (each name one temporary alive at a time),
    shared by every dtype (bytes, viewed); outside [SCRATCH_MIN_BYTES, SCRATCH_MAX_BYTES] a
    fresh tensor, so a huge call leaves nothing large behind. The result must not outlive the
    call."""
    nbytes = math.prod(shape) * dtype.itemsize
    # Under a dispatch mode (make_fx's fake or symbolic tracing, FakeTensorMode) a buffer made
    # here would be a fake tensor, kept, and handed to the next eager call: a fresh one instead.
    if not SCRATCH_MIN_BYTES <= nbytes <= SCRATCH_MAX_BYTES or torch._C._len_torch_dispatch_stack():
        return torch.empty(shape, dtype=dtype)
    buffer = _SCRATCH.buffers.get(name)
    if buffer is None or buffer.numel() < nbytes:
        # A normal tensor even when made under inference_mode: in-place writes into an
        # inference tensor raise outside that mode.
        with torch.inference_mode(False):
            buffer = _SCRATCH.buffers[name] = torch.empty(nbytes, dtype=torch.uint8)
    return buffer[:nbytes].view(dtype).view(shape)


def tap_weight(weight: torch.Tensor) -> torch.Tensor:
    """Conv2d weight [Cout, Cin, 3, 3] -> the taps' [9*Cout, Cin], tap-major: a weight-sized
    permuted copy (no view of a Conv2d weight's layouts serves as the GEMM's operand), made
    once per forward and kept for the backward (_UpsampleConv)."""
    c_out, c_in = weight.shape[:2]
    return weight.permute(2, 3, 0, 1).reshape(9 * c_out, c_in)


def _rows(x_tile: torch.Tensor) -> torch.Tensor:
    """A channels_last [b, C, rows, W] tile as the GEMM's [b*rows*W, C] rows: a view (whole
    samples, or a band of one sample's rows, are contiguous in channels_last order)."""
    return x_tile.permute(0, 2, 3, 1).reshape(-1, x_tile.shape[1])


def _tap_bias(bias: torch.Tensor | None, c_out: int) -> torch.Tensor | None:
    """The bias on the centre tap's channels (index 4 of 9), zero elsewhere: every output pixel
    adds exactly one centre product (ky = kx = 1 in both phases of both axes), so the GEMM
    (addmm) adds the bias, not a pass over the output."""
    return None if bias is None else F.pad(bias, (4 * c_out, 4 * c_out))


def tiles(batch: int, height: int, row_bytes: int):
    """(b0, b1, r0, r1): samples b0:b1, source rows r0:r1, whose products (row_bytes per source
    row) take at most TILE_BYTES (unless one row and its halo alone exceed it); whole samples
    where one fits, else bands of one sample's rows, whose 2 halo rows count against the
    budget. The split is even (sizes differ by at most one) rather than leaving a small tile.
    An empty batch is one empty tile: the ops run once and give empty and zero gradients."""
    sample_bytes = height * row_bytes
    if sample_bytes <= TILE_BYTES or batch == 0:
        for b0, b1 in _even_split(batch, max(1, TILE_BYTES // max(1, sample_bytes))):
            yield b0, b1, 0, height
        return
    bands = list(_even_split(height, max(1, TILE_BYTES // row_bytes - 2)))
    for b0 in range(batch):
        for r0, r1 in bands:
            yield b0, b0 + 1, r0, r1


def _even_split(n: int, most: int):
    """[start, stop) ranges covering range(n) in ceil(n / most) parts of near-equal size (one
    empty range for n = 0)."""
    parts = max(1, math.ceil(n / most))
    return ((i * n // parts, (i + 1) * n // parts) for i in range(parts))


def _channels_last_scratch(name, dtype, b, taps, c, h, w) -> torch.Tensor:
    """A [B, taps, C, H, W] scratch view whose memory is [B, H, W, taps, C] (channels_last)."""
    return _scratch(name, (b, h, w, taps, c), dtype).permute(0, 3, 4, 1, 2)


def _sum_taps_along_rows(p, out, first=0):
    """out[..., i, d, :] (row 2i + d) from the 3 row taps p[:, k] ([..., rows, W] each).

    p is [B, 3, ..., rows, W] with the taps in dim 1; out is [B, ..., n, 2, W]. out's row i is
    p's row first + i; p's rows before first (a halo row above, first = 1) and after
    first + n - 1 (a halo row below) only feed the neighbouring phases; without them, zero."""
    n = out.shape[-3]
    core = p[..., first:first + n, :]
    torch.add(core[:, 1], core[:, 2], out=out[..., 0, :])
    top = 1 - first  # the first out row with a row above it in p
    out[..., top:, 0, :].add_(p[:, 0, ..., first - 1 + top:first - 1 + n, :])
    torch.add(core[:, 0], core[:, 1], out=out[..., 1, :])
    below = min(n, p.shape[-2] - first - 1)  # how many out rows have a row below them in p
    out[..., :below, 1, :].add_(p[:, 2, ..., first + 1:first + 1 + below, :])


def _gather_rows(grad, out, first=0):
    """The adjoint of _sum_taps_along_rows: out[:, k] ([..., n, W]) from grad's rows
    (grad[..., i, d, :], out's row i at grad's row first + i, halo rows as there)."""
    n = out.shape[-2]
    even, odd = grad[..., 0, :], grad[..., 1, :]
    core_even, core_odd = even[..., first:first + n, :], odd[..., first:first + n, :]
    torch.add(core_even, core_odd, out=out[:, 1])
    out[:, 0].copy_(core_odd)
    below = min(n, grad.shape[-3] - first - 1)
    out[:, 0, ..., :below, :].add_(even[..., first + 1:first + 1 + below, :])
    out[:, 2].copy_(core_even)
    top = 1 - first
    out[:, 2, ..., top:, :].add_(odd[..., first - 1 + top:first - 1 + n, :])


def _column_pairs(t: torch.Tensor, w: int) -> torch.Tensor:
    """[B, C, 2H, 2W] -> a [B, C, W, 2, 2H] view: columns 2j + d as rows, for the row helpers."""
    return t.unflatten(3, (w, 2)).permute(0, 1, 3, 4, 2)


def accumulate_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype sums are taken in: float32 for half precision (fp16, bf16), else the dtype."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def taps_forward(x: torch.Tensor, taps: torch.Tensor, bias: torch.Tensor | None,
                 epilogue=None) -> torch.Tensor:
    """conv2d(upsample_nearest_2x(x), weight, bias, padding=1) from taps = tap_weight(weight),
    output in x's layout; epilogue(tile), if given, runs in place on each finished output tile
    while it is in cache."""
    b, _, h, w = x.shape
    c_out = taps.shape[0] // 9
    tap_bias = _tap_bias(bias, c_out)
    out = torch.empty(b, c_out, 2 * h, 2 * w, dtype=x.dtype, device=x.device,
                      memory_format=image_format(x))
    # Half precision: the GEMM in the input's dtype, as conv2d's (a CPU's half-precision matrix
    # units: in float32 the bf16 forward ran 3x slower with AMX), each product rounded once;
    # their sums in float32, rounded once into the output (summed in the input's dtype they
    # erred up to 1.9x the stock pair against float64; docs/ops.md).
    sum_dtype = accumulate_dtype(x.dtype)
    x = x.contiguous(memory_format=CHANNELS_LAST)
    for b0, b1, r0, r1 in tiles(b, h, 9 * c_out * w * sum_dtype.itemsize):
        lo, hi = max(r0 - 1, 0), min(r1 + 1, h)  # the band and its halo rows
        rows_of_x = _rows(x[b0:b1, :, lo:hi])
        # (named so that "products" is the buffer summed, in every dtype: float32's as before)
        p = _scratch("products" if sum_dtype == x.dtype else "GEMM products",
                     (rows_of_x.shape[0], 9 * c_out), x.dtype)  # [b*rows*W, 9*Cout]
        if tap_bias is None:
            torch.mm(rows_of_x, taps.t(), out=p)
        else:
            torch.addmm(tap_bias, rows_of_x, taps.t(), out=p)
        if sum_dtype != x.dtype:  # the copy that is summed
            p = _scratch("products", p.shape, sum_dtype).copy_(p)
        p = p.view(b1 - b0, hi - lo, w, 3, 3, c_out)
        p = p.permute(0, 3, 4, 5, 1, 2)  # [b, ky, kx, Cout, rows, W]
        # Rows first, into [b, kx, Cout, 2n, W]; then columns, into the output tile.
        rows = _channels_last_scratch("rows", sum_dtype, b1 - b0, 3, c_out, 2 * (r1 - r0), w)
        _sum_taps_along_rows(p, rows.unflatten(3, (r1 - r0, 2)), first=r0 - lo)
        # The column sums go out in channels_last order, the products': written across that
        # order (an NCHW output) they ran 2-4x slower than into a buffer and one copy per tile.
        out_tile = out[b0:b1, :, 2 * r0:2 * r1]
        direct = out_tile.is_contiguous(memory_format=CHANNELS_LAST) and out.dtype == sum_dtype
        sums = out_tile if direct else \
            _channels_last_scratch("image", sum_dtype, b1 - b0, 1, c_out, 2 * (r1 - r0), 2 * w)[:, 0]
        _sum_taps_along_rows(rows.transpose(-1, -2), _column_pairs(sums, w))
        if epilogue is not None:
            epilogue(sums)
        if sums is not out_tile:
            out_tile.copy_(sums)
    return out


def taps_backward(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, needs,
                  taps: torch.Tensor | None):
    """(grad of x, grad of weight) of taps_forward without its bias; needs: which are wanted
    (at least one of the two: _UpsampleConv returns before calling it otherwise); taps: the
    forward's tap_weight(weight), which only the input's gradient reads (None when needs[0]
    is False: the forward keeps it only then)."""
    b, c_in, h, w = x.shape
    c_out = weight.shape[0]
    layout = image_format(x)
    # Half precision as in the forward: the gathers in float32, the GEMMs in the input's dtype.
    sum_dtype = accumulate_dtype(x.dtype)
    x = x.contiguous(memory_format=CHANNELS_LAST)
    # The input's gradient in channels_last order, each tile's GEMM writing its rows in place.
    grad_x = torch.empty_like(x) if needs[0] else None
    # The taps' gradient [9*Cout, Cin] is a sum over tiles: in float32 at least (a
    # half-precision GEMM's partial is rounded once, the running sum not at each tile), in
    # scratch, rounded to the weight's dtype once at the end, in the weight's layout.
    grad_taps = _scratch("weight", (9 * c_out, c_in), sum_dtype) if needs[1] else None
    for tile, (b0, b1, r0, r1) in enumerate(tiles(b, h, 9 * c_out * w * sum_dtype.itemsize)):
        lo, hi = max(r0 - 1, 0), min(r1 + 1, h)  # the band and its halo rows of the gradient
        # Columns first (the forward's last step) into [b, kx, Cout, 2*rows, W], then rows into
        # [b, ky, kx, Cout, n, W], stored as the GEMM's output rows [b, n, W, 9*Cout].
        # Gathered in channels_last order (an NCHW gradient is copied so, tile by tile: read
        # across its order the gather ran 2x slower than the copy and the gather together).
        grad_tile = grad[b0:b1, :, 2 * lo:2 * hi]
        if not (grad_tile.is_contiguous(memory_format=CHANNELS_LAST) and grad.dtype == sum_dtype):
            grad_tile = _channels_last_scratch("image", sum_dtype, b1 - b0, 1, c_out,
                                               2 * (hi - lo), 2 * w)[:, 0].copy_(grad_tile)
        rows = _channels_last_scratch("rows", sum_dtype, b1 - b0, 3, c_out, 2 * (hi - lo), w)
        _gather_rows(_column_pairs(grad_tile, w), rows.transpose(-1, -2))
        grad_p = _scratch("products", (b1 - b0, r1 - r0, w, 3, 3, c_out), sum_dtype)
        _gather_rows(rows.unflatten(3, (hi - lo, 2)), grad_p.permute(0, 3, 4, 5, 1, 2),
                     first=r0 - lo)
        grad_p = grad_p.view(-1, 9 * c_out)
        if sum_dtype != x.dtype:  # rounded once, for the GEMMs
            grad_p = _scratch("GEMM products", grad_p.shape, x.dtype).copy_(grad_p)
        if needs[0]:  # view(): a tile (whole samples or a band of rows) is one block of rows
            torch.mm(grad_p, taps, out=grad_x[b0:b1, :, r0:r1].permute(0, 2, 3, 1).view(-1, c_in))
        if needs[1]:
            rows_of_x = _rows(x[b0:b1, :, r0:r1])
            if grad_p.dtype != sum_dtype:
                partial = grad_p.t() @ rows_of_x
                if tile == 0:
                    grad_taps.copy_(partial)
                else:
                    grad_taps.add_(partial)
            elif tile == 0:
                torch.mm(grad_p.t(), rows_of_x, out=grad_taps)
            else:
                grad_taps.addmm_(grad_p.t(), rows_of_x)  # the GEMM adds the partial itself
    grad_weight = None
    if needs[1]:
        # In the weight's own layout and dtype, one copy out of scratch: AccumulateGrad takes a
        # gradient laid out like its parameter as is, and copies any other.
        grad_weight = torch.empty_like(weight).copy_(
            grad_taps.view(3, 3, c_out, c_in).permute(2, 3, 0, 1))
    if needs[0]:
        grad_x = grad_x.contiguous(memory_format=layout)
    return grad_x, grad_weight
