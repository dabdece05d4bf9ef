"""Spectral-normalization ops: the power iteration and W / sigma with sigma = u^T W_mat v.

W_mat is the weight with dimension `dim` moved to the front and the rest flattened ([h, w]);
u [h] and v [w] are the current estimates of its first singular vectors.

Public functions:
    power_iteration_(weight_mat, u, v, n_power_iterations, eps)
        u <- normalize(W_mat v), v <- normalize(W_mat^T u), n times, in place, no grad
        (the exact expressions of torch.nn.utils.parametrizations.spectral_norm).
    normalize_by_sigma(weight, u, v, dim)
        W / sigma with sigma = vdot(u, W_mat v): u and v are constants for autograd.
    normalize_group(plan, weights, us, vs, eps, backend)
        every layer of a GroupPlan at once, power iteration included: one launch of the Triton
        (kernels/spectral_norm.py) or CUDA (csrc/spectral_norm.cu) kernel, for
        SpectralNormGroup and the per-access fused route (a group of one).

Backward of y = W / sigma (u, v constant, G = dL/dy, <.,.> the Frobenius product):
    dsigma/dW = u v^T (in W_mat's layout), so
    gW = G / sigma - (<G, W> / sigma^2) u v^T = (G - <G, y> u v^T) / sigma.
The torch backend runs this in a torch.autograd.Function that saves u and v, the two small
copies being the only clones: PyTorch's parametrization clones u and v before every forward and
lets autograd record mv, vdot, the division and a view (four backward nodes and an
accumulation).
When the weight needs no gradient there is no Function and no copy at all.
A backward asked to build a graph (create_graph=True) differentiates the reference instead.
"""

import math

import torch
from torch.compiler import is_compiling

from ._library import transformed
from .layout import acc_dtype

OP = "spectral_norm"


# ---------------------------------------------------------------- references (CPU and oracle)

def weight_to_matrix(weight: torch.Tensor, dim: int) -> torch.Tensor:
    """[h, w] view (or copy) of the weight with `dim` first, as PyTorch's parametrization."""
    if dim != 0:
        weight = weight.permute(dim, *(d for d in range(weight.dim()) if d != dim))
    return weight.flatten(1)


def power_iteration_(weight_mat, u, v, n_power_iterations: int, eps: float) -> None:
    # In place (out=): DataParallel replicas share the buffers' storage, see PyTorch's note in
    # torch/nn/utils/spectral_norm.py. Same ATen ops as PyTorch, so the same rounding.
    # Runs without torch.no_grad() when nothing needs it (its decorator cost 17 us per call on
    # the 2-core machine, a twelfth of a small layer's weight access): with the matrix detached
    # and buffers that do not require grad, no op here can record a graph. Otherwise (a live
    # matrix, buffers set to require grad, as functional_call or DataParallel's replicas may
    # pass) in a no_grad block, as PyTorch's _power_method runs.
    if weight_mat.requires_grad or u.requires_grad or v.requires_grad:
        with torch.no_grad():
            return _power_iteration(weight_mat, u, v, n_power_iterations, eps)
    _power_iteration(weight_mat, u, v, n_power_iterations, eps)


def _power_iteration(weight_mat, u, v, n_power_iterations: int, eps: float) -> None:
    # Under torch.compile the products are matrix-matrix: inductor decomposes mv into pointwise
    # work that its partitioner would rather recompute in the backward, from the u/v buffers as
    # they were, which the next call of the same module has updated in place by then (D(real),
    # D(fake), one backward fails that way, as PyTorch's spectral norm does). A matmul is saved.
    mv = _mv_as_mm if is_compiling() else torch.mv
    for _ in range(n_power_iterations):
        normalize_into(mv(weight_mat, v), eps, u)
        normalize_into(mv(weight_mat.H, u), eps, v)


def normalize_into(vector, eps: float, out) -> None:
    """F.normalize(vector, dim=0, eps=eps, out=out), bit for bit: the same three ATen ops
    (vector_norm, clamp_min_, div; F.normalize's expand_as of the norm is a view with the
    stride-0 broadcast that div applies here). F.normalize reaches vector_norm through
    Tensor.norm's Python wrapper, which builds the tensor's device object and costs more than
    the ops themselves on CPU (33 against 17 us on the 2-core machine)."""
    denom = torch.linalg.vector_norm(vector, 2.0, [0], True).clamp_min_(eps)
    torch.div(vector, denom, out=out)


def _mv_as_mm(matrix, vector):
    return (matrix @ vector.unsqueeze(1)).squeeze(1)


def sigma_reference(weight_mat, u, v):
    return torch.vdot(u, torch.mv(weight_mat, v))


def normalize_by_sigma_reference(weight, u, v, dim: int):
    """W / sigma, differentiable in W (u and v detached): the oracle of the Function."""
    return weight / sigma_reference(weight_to_matrix(weight, dim), u.detach(), v.detach())


# ---------------------------------------------------------------- autograd

class _NormalizeBySigma(torch.autograd.Function):
    @staticmethod
    def forward(ctx, weight, u, v, dim):
        sigma = sigma_reference(weight_to_matrix(weight, dim), u, v)
        out = weight / sigma
        # u and v are buffers that the next training forward updates in place: keep copies.
        ctx.save_for_backward(weight, out, sigma, u.clone(), v.clone())
        ctx.dim = dim
        return out

    @staticmethod
    def backward(ctx, grad):
        weight, out, sigma, u, v = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: let autograd differentiate the reference
            y = normalize_by_sigma_reference(weight, u, v, ctx.dim)
            (gw,) = torch.autograd.grad(y, weight, grad, create_graph=True)
            return gw, None, None, None
        # gW = G / sigma - <G / sigma, y> u v^T: the division first, into a dense tensor in y's
        # layout (the gradient of a sum is an expanded one, which vdot would copy), so that the
        # product reads both flat in memory order; the scalar goes into the small vector u, and
        # u v^T is subtracted in place by broadcasting, never materialized. No copy in any
        # layout; four ATen ops when G and y are contiguous.
        if grad.is_contiguous() and out.is_contiguous():
            grad_weight = grad / sigma
            flat_grad, flat_out = grad_weight.view(-1), out.view(-1)
        else:  # channels_last weights, expanded or permuted gradients
            grad_weight = torch.div(grad, sigma, out=torch.empty_like(out))
            flat = ((out.numel(),), (1,))  # y and grad_weight: the same strides, dense
            flat_grad, flat_out = grad_weight.as_strided(*flat), out.as_strided(*flat)
        u_scaled = u * torch.vdot(flat_grad, flat_out)
        grad_weight.addcmul_(*_outer_factors(u_scaled, v, weight, ctx.dim), value=-1)
        return grad_weight, None, None, None


def _outer_factors(u, v, weight, dim: int):
    """u and v viewed so that their broadcast product is u v^T in the weight's shape: u along
    `dim`, v over the other dimensions in order (weight_to_matrix's column order)."""
    u_shape = [1] * weight.dim()
    u_shape[dim] = weight.shape[dim]
    v_shape = list(weight.shape)
    v_shape[dim] = 1
    return u.view(u_shape), v.view(v_shape)


def takes_reference(weight) -> bool:
    """Whether W / sigma must run as the reference, with autograd's gradient: under torch.func
    transforms and forward-mode AD, which cannot run a Function, and for complex weights (which
    PyTorch's spectral norm takes), for which the Function's backward and the kernels, derived
    for real ones, would be wrong."""
    return transformed(weight) or weight.is_complex()


def normalize_by_sigma(weight, u, v, dim: int):
    """W / sigma(W, u, v); the gradient flows to W only."""
    if takes_reference(weight):
        # On copies of u and v, as PyTorch's parametrization takes: a second call of the
        # module updates the buffers before the backward reads them.
        return normalize_by_sigma_reference(weight, u.clone(), v.clone(), dim)
    if not (torch.is_grad_enabled() and weight.requires_grad):
        with torch.no_grad():  # no graph: no Function, no copies of u and v
            return weight / sigma_reference(weight_to_matrix(weight, dim), u, v)
    return _NormalizeBySigma.apply(weight, u, v, dim)


# ---------------------------------------------------------------- all layers at once (grouped)
# One launch normalizes every layer of a group: Triton (kernels/spectral_norm.py) or CUDA
# (csrc/spectral_norm.cu), the same tables and buffers for both.

def _kernels():
    from ganfast.kernels import spectral_norm as kernels  # needs triton: imported on first use
    return kernels


class GroupPlan:
    """What a launch needs that does not change from call to call: the meta table (one row per
    layer: D, C, K, offset of y in the flat output, offset of u (then v) in the work buffer,
    n_iter) and the address tables of weights, u and v (rebuilt only when an address changes;
    the meta table then follows the weights to their device)."""

    def __init__(self, weights, dims, n_iters):
        device = weights[0].device
        rows, out_offset, work_offset = [], 0, 0
        self.uv_sizes = []  # D, C of each layer: the work buffer's parts
        for weight, dim, n_iter in zip(weights, dims, n_iters, strict=True):
            D = weight.shape[dim]
            C = weight.numel() // D
            K = math.prod(weight.shape[dim + 1:])
            rows.append([D, C, K, out_offset, work_offset, n_iter])
            self.uv_sizes += [D, C]
            out_offset += D * C
            work_offset += D + C
        self.rows = rows
        self.meta = torch.tensor(rows, dtype=torch.int64, device=device)
        self.numel = out_offset
        self.work_numel = work_offset
        self.dims = list(dims)
        self.shapes = [w.shape for w in weights]
        self.sizes = [w.numel() for w in weights]
        self.addresses = None
        self.tables = None
        self.copies = {}  # layer -> a buffer kept for its weight's contiguous copy

    def contiguous(self, i: int, weight: torch.Tensor) -> torch.Tensor:
        """Layer i's weight, contiguous: a channels_last conv weight (model.to(memory_format=
        torch.channels_last)) copied into a buffer kept from call to call, so that its address,
        and so the address tables, stay the same (a fresh copy may land elsewhere each call,
        and every new address costs a rebuild and a host-to-device copy of the tables). The
        buffer is read by the launch alone, in stream order: the next call may overwrite it."""
        if weight.is_contiguous():
            return weight
        buffer = self.copies.get(i)
        if buffer is None or buffer.shape != weight.shape or buffer.dtype != weight.dtype \
                or buffer.device != weight.device:
            buffer = self.copies[i] = torch.empty(weight.shape, dtype=weight.dtype,
                                                  device=weight.device)
        return buffer.copy_(weight)

    def pointer_tables(self, weights, us, vs):
        """(address tables, meta table) for these tensors, on their device: read together, as
        a pair, so that a call never pairs one rebuild's tables with another's meta."""
        addresses = tuple(t.data_ptr() for t in (*weights, *us, *vs))
        if addresses != self.addresses:
            # The kernels read every address with the first weight's dtype: check once per
            # change of tensors, not per call.
            first = weights[0]
            if first.is_complex():  # (SpectralNormGroup sends them to each layer's torch route)
                raise ValueError(
                    "spectral norm group: the fused kernels take real weights, got "
                    f"{first.dtype}; normalize complex layers with backend='torch'")
            if first.device != self.meta.device:  # the layers moved (model.to("cuda:1"))
                self.meta = torch.tensor(self.rows, dtype=torch.int64, device=first.device)
            for t in (*weights, *us, *vs):
                if t.dtype != first.dtype or t.device != first.device or not t.is_contiguous():
                    raise ValueError(
                        "spectral norm group: weights, u and v must be contiguous and share one "
                        f"dtype and device ({first.dtype} on {first.device}); got a "
                        f"{tuple(t.shape)} {t.dtype} tensor on {t.device}")
            table = torch.tensor(addresses, dtype=torch.int64).view(3, -1)
            self.tables = table.to(weights[0].device), self.meta
            self.addresses = addresses
        return self.tables


def split(flat: torch.Tensor, plan: GroupPlan) -> list:
    """Views of a flat buffer in the layers' shapes."""
    return [part.view(shape) for part, shape in zip(flat.split(plan.sizes), plan.shapes, strict=True)]


def _launch(backend: str, plan: GroupPlan, weights, us, vs, eps: float):
    """y of every layer (flat), the work buffer (u, v as used), sigma and the meta table the
    launch read (the backward's); u, v updated."""
    weights = [plan.contiguous(i, w) for i, w in enumerate(weights)]
    first = weights[0]
    tables, meta = plan.pointer_tables(weights, us, vs)
    out = torch.empty(plan.numel, dtype=first.dtype, device=first.device)
    work = torch.empty(plan.work_numel, dtype=acc_dtype(first.dtype), device=first.device)
    sigma = torch.empty(len(weights), dtype=work.dtype, device=first.device)
    if backend == "cuda":
        torch.ops.ganfast_C.spectral_norm_group(tables[0], tables[1], tables[2], meta, out,
                                                work, sigma, eps)
    else:
        _kernels().normalize_group(tables, first, meta, out, work, sigma, eps)
    return out, work, sigma, meta


def _launch_backward(backend: str, meta, grad_flat, out, work, sigma):
    grad_weight = torch.empty_like(out)
    if backend == "cuda":
        torch.ops.ganfast_C.spectral_norm_group_backward(grad_flat, out, work, sigma, meta,
                                                         grad_weight)
    else:
        _kernels().normalize_group_backward(grad_flat, out, work, sigma, meta, grad_weight)
    return grad_weight


class _NormalizeGroup(torch.autograd.Function):
    """W / sigma for every layer of a plan, after each layer's power-iteration steps: one
    forward launch, one backward launch (plus the concatenation of the incoming gradients when
    there are several layers)."""

    @staticmethod
    def forward(ctx, plan, backend, us, vs, eps, *weights):
        out, work, sigma, meta = _launch(backend, plan, weights, us, vs, eps)
        ctx.plan, ctx.meta, ctx.backend = plan, meta, backend
        ctx.save_for_backward(out, work, sigma, *weights)  # work: u, v as this forward used them
        return tuple(split(out, plan))

    @staticmethod
    def backward(ctx, *grads):
        out, work, sigma, *weights = ctx.saved_tensors
        plan = ctx.plan
        if torch.is_grad_enabled():  # create_graph: differentiate the reference, layer by layer
            grad_weights = []
            layers = zip(weights, grads, _split_uv(work, plan), plan.dims, strict=True)
            for weight, grad, (u, v), dim in layers:
                y = normalize_by_sigma_reference(weight, u.to(weight.dtype), v.to(weight.dtype), dim)
                (gw,) = torch.autograd.grad(y, weight, grad, create_graph=True)
                grad_weights.append(gw)
            return (None, None, None, None, None, *grad_weights)
        # One layer (the per-access route): its gradient is the flat buffer, no cat launch.
        grad_flat = (grads[0].contiguous().view(-1) if len(grads) == 1
                     else torch.cat([grad.reshape(-1) for grad in grads]))
        grad_weight = _launch_backward(ctx.backend, ctx.meta, grad_flat, out, work, sigma)
        return (None, None, None, None, None, *split(grad_weight, plan))


def _split_uv(work, plan):
    """(u, v) of each layer from the kernel's work buffer."""
    parts = work.split(plan.uv_sizes)
    return list(zip(parts[0::2], parts[1::2], strict=True))


def normalize_group(plan: GroupPlan, weights, us, vs, eps: float, backend: str = "triton") -> list:
    """W_i / sigma_i for every layer of `plan` after n_iters[i] power-iteration steps on
    (us[i], vs[i]) in place, in one launch for all layers: backend "triton" (CUDA tensors, or
    CPU tensors under TRITON_INTERPRET=1) or "cuda" (ganfast._C). Weights, u and v share one
    dtype; the gradient flows to the weights only."""
    if torch.is_grad_enabled() and any(w.requires_grad for w in weights):
        return list(_NormalizeGroup.apply(plan, backend, us, vs, eps, *weights))
    with torch.no_grad():
        out = _launch(backend, plan, weights, us, vs, eps)[0]
    return split(out, plan)
