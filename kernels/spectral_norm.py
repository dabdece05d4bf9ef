"""Triton kernels for spectral normalization: every layer of a model in one launch.

One program normalizes one layer. W_mat is the [D, C] matrix of PyTorch's parametrization (the
weight with `dim` moved first, the rest flattened); u [D] and v [C] are its buffers. For a
contiguous weight, W_mat[r, c] lies at

    r * K + (c // K) * (D * K) + c % K,        K = product of the weight's sizes after `dim`

(dim = 0: K = C and the middle term is 0; a ConvTranspose weight, dim = 1, is read in place).

forward: n_iter steps of  u = normalize(W v), v = normalize(W^T u)  (PyTorch's order and its
         normalize: x / max(|x|, eps)), u and v written back in place, then
             sigma = u . W v,   y = W / sigma.
         After an update sigma needs no pass of its own: the last v is t / max(|t|, eps) with
         t = W^T u, so u . W v = |t|^2 / max(|t|, eps). With n_iter = 0 (eval) it is a pass.
backward: gW = (G - <G, y> u v^T) / sigma     (u, v constants, as in PyTorch's graph)

Math in fp32 (fp64 for fp64 weights) whatever the weight's dtype. The outputs y of all layers
are one flat buffer (the launcher hands out views), and so are the incoming gradients in the
backward, so that only the forward's inputs need a table of pointers.
"""

import triton
import triton.language as tl

from . import launch_on_input_device

BLOCK_R = 32    # rows of W_mat per tile in the matrix-vector passes
BLOCK_C = 128   # columns per tile
BLOCK = 1024    # elements per step in the elementwise passes
# One program streams a whole layer (forward and backward), so its threads are all the memory
# parallelism a layer gets: 16 warps, the 512 threads of the CUDA kernel's block
# (csrc/spectral_norm.cu). With Triton's default 4 the forward took 255 registers and spilled
# (half precision on sm_90, float64 on sm_80/89/90, every dtype on sm_120); 512 threads cap a
# thread at 128 registers, and the forward fits there without spilling but float64 on sm_120
# (scripts/triton_compile_check.py, triton 3.6; benchmarks/NOTES.md; not yet timed on a GPU).
NUM_WARPS = 16

# Per-layer integers, one row of the meta table each:
# D, C, K, offset of y in the flat output, offset of u (then v) in the fp32 work buffer, n_iter.
META_COLUMNS = tl.constexpr(6)


@triton.jit
def _layer_meta(meta_ptr, layer):
    meta = meta_ptr + layer * META_COLUMNS
    return (tl.load(meta), tl.load(meta + 1), tl.load(meta + 2), tl.load(meta + 3),
            tl.load(meta + 4), tl.load(meta + 5))


@triton.jit
def _matvec(weight, x_ptr, y_ptr, D, C, K, TRANSPOSED: tl.constexpr,
            STORE: tl.constexpr, BLOCK_OUT: tl.constexpr, BLOCK_IN: tl.constexpr):
    """y = W_mat x (W_mat^T x when TRANSPOSED), stored at y_ptr when STORE.
    Returns (|y|^2, y . the vector at y_ptr before the call), in y_ptr's dtype."""
    acc_ty = y_ptr.dtype.element_ty
    n_out = C if TRANSPOSED else D
    n_in = D if TRANSPOSED else C
    sum_sq = tl.zeros([1], dtype=acc_ty)
    dot = tl.zeros([1], dtype=acc_ty)
    for o0 in range(0, n_out, BLOCK_OUT):
        outs = o0 + tl.arange(0, BLOCK_OUT)
        acc = tl.zeros([BLOCK_OUT, BLOCK_IN], dtype=acc_ty)
        for i0 in range(0, n_in, BLOCK_IN):
            ins = i0 + tl.arange(0, BLOCK_IN)
            if TRANSPOSED:
                r = ins[None, :]
                c = outs[:, None]
            else:
                r = outs[:, None]
                c = ins[None, :]
            mask = (outs[:, None] < n_out) & (ins[None, :] < n_in)
            w = tl.load(weight + r * K + (c // K) * (D * K) + c % K, mask=mask, other=0.0)
            x = tl.load(x_ptr + ins, mask=ins < n_in, other=0.0)
            acc += w.to(acc_ty) * x[None, :]
        y = tl.sum(acc, axis=1)
        dot += tl.sum(y * tl.load(y_ptr + outs, mask=outs < n_out, other=0.0), axis=0)
        if STORE:
            tl.store(y_ptr + outs, y, mask=outs < n_out)
        sum_sq += tl.sum(y * y, axis=0)
    tl.debug_barrier()  # y is read back by other threads of the program
    return sum_sq, dot


@triton.jit
def _normalize_(work, buf, n, sum_sq, eps, BLOCK: tl.constexpr):
    """work[:n] /= max(sqrt(sum_sq), eps), also written to the buffer in its dtype; the norm."""
    norm = tl.maximum(tl.sqrt(sum_sq), eps)
    for i0 in range(0, n, BLOCK):
        i = i0 + tl.arange(0, BLOCK)
        x = tl.load(work + i, mask=i < n) / norm
        tl.store(work + i, x, mask=i < n)
        tl.store(buf + i, x.to(buf.dtype.element_ty), mask=i < n)
    tl.debug_barrier()
    return norm


@triton.jit
def _copy(src, dst, n, BLOCK: tl.constexpr):
    for i0 in range(0, n, BLOCK):
        i = i0 + tl.arange(0, BLOCK)
        tl.store(dst + i, tl.load(src + i, mask=i < n).to(dst.dtype.element_ty), mask=i < n)


@triton.jit
def _normalize_group_kernel(weight_table, u_table, v_table, typed_ptr, meta_ptr, out_ptr,
                            work_ptr, sigma_ptr, eps,
                            BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK: tl.constexpr):
    layer = tl.program_id(0)
    D, C, K, out_offset, work_offset, n_iter = _layer_meta(meta_ptr, layer)
    # The weight, u and v of this layer: addresses from the tables, typed like `typed_ptr`
    # (every layer of one launch has the weight dtype of the first).
    weight = tl.load(weight_table + layer).to(typed_ptr.dtype)
    u_buf = tl.load(u_table + layer).to(typed_ptr.dtype)
    v_buf = tl.load(v_table + layer).to(typed_ptr.dtype)
    work_u = work_ptr + work_offset
    work_v = work_u + D
    acc_ty = work_ptr.dtype.element_ty

    # u and v in the accumulation dtype, in the work buffer (they are also what the backward
    # saves: the values this forward used).
    _copy(u_buf, work_u, D, BLOCK)
    _copy(v_buf, work_v, C, BLOCK)
    tl.debug_barrier()

    sigma = tl.zeros([1], dtype=acc_ty)
    for _ in range(n_iter):
        sum_sq, _dot = _matvec(weight, work_v, work_u, D, C, K, False, True,
                               BLOCK_R, BLOCK_C)
        _normalize_(work_u, u_buf, D, sum_sq, eps, BLOCK)           # u = normalize(W v)
        sum_sq, _dot = _matvec(weight, work_u, work_v, D, C, K, True, True,
                               BLOCK_R, BLOCK_C)
        norm = _normalize_(work_v, v_buf, C, sum_sq, eps, BLOCK)    # v = normalize(W^T u)
        sigma = sum_sq / norm
    if n_iter == 0:  # eval: sigma = u . W v by a pass
        _sum_sq, sigma = _matvec(weight, work_v, work_u, D, C, K, False, False,
                                 BLOCK_R, BLOCK_C)
    tl.store(sigma_ptr + layer + tl.arange(0, 1), sigma)

    # y = W / sigma, in the weight's memory order (contiguous).
    n = D * C
    for f0 in range(0, n, BLOCK):
        f = f0 + tl.arange(0, BLOCK)
        w = tl.load(weight + f, mask=f < n).to(acc_ty)
        tl.store(out_ptr + out_offset + f, (w / sigma).to(out_ptr.dtype.element_ty), mask=f < n)


@triton.jit
def _normalize_group_backward_kernel(grad_ptr, out_ptr, work_ptr, sigma_ptr, meta_ptr,
                                     grad_weight_ptr, BLOCK: tl.constexpr):
    layer = tl.program_id(0)
    D, C, K, offset, work_offset, _n_iter = _layer_meta(meta_ptr, layer)
    work_u = work_ptr + work_offset
    work_v = work_u + D
    acc_ty = work_ptr.dtype.element_ty
    sigma = tl.load(sigma_ptr + layer)
    n = D * C
    # <G, y> over the layer
    dot = tl.zeros([BLOCK], dtype=acc_ty)
    for f0 in range(0, n, BLOCK):
        f = f0 + tl.arange(0, BLOCK)
        g = tl.load(grad_ptr + offset + f, mask=f < n, other=0.0).to(acc_ty)
        y = tl.load(out_ptr + offset + f, mask=f < n, other=0.0).to(acc_ty)
        dot += g * y
    dot_total = tl.sum(dot, axis=0)
    # gW = (G - <G, y> u[r] v[c]) / sigma, with (r, c) of flat index f in W_mat
    for f0 in range(0, n, BLOCK):
        f = f0 + tl.arange(0, BLOCK)
        mask = f < n
        r = (f // K) % D
        c = (f // (D * K)) * K + f % K
        g = tl.load(grad_ptr + offset + f, mask=mask, other=0.0).to(acc_ty)
        u = tl.load(work_u + r, mask=mask, other=0.0)
        v = tl.load(work_v + c, mask=mask, other=0.0)
        grad_weight = (g - dot_total * u * v) / sigma
        tl.store(grad_weight_ptr + offset + f, grad_weight.to(grad_weight_ptr.dtype.element_ty),
                 mask=mask)


# ---------------------------------------------------------------- launchers
# The plan (meta table, address tables) and the buffers come from ganfast/ops/spectral_norm.py,
# which the CUDA launchers of csrc/spectral_norm.cu share.

@launch_on_input_device
def normalize_group(tables, first_weight, meta, out, work, sigma, eps: float) -> None:
    """Fills out (y of every layer), work (u, v as used) and sigma; updates u, v in place."""
    _normalize_group_kernel[(meta.shape[0],)](
        tables[0], tables[1], tables[2], first_weight, meta, out, work, sigma, eps,
        BLOCK_R=BLOCK_R, BLOCK_C=BLOCK_C, BLOCK=BLOCK, num_warps=NUM_WARPS)


@launch_on_input_device
def normalize_group_backward(grad_flat, out, work, sigma, meta, grad_weight) -> None:
    """Fills grad_weight, the flat gradient of every weight, in the layout of `out`."""
    _normalize_group_backward_kernel[(meta.shape[0],)](
        grad_flat, out, work, sigma, meta, grad_weight, BLOCK=BLOCK, num_warps=NUM_WARPS)
