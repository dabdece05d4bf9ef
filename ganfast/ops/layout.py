"""Per-sample memory layout: when a [B, ...] tensor can be read as B rows without a copy.

Per-sample ops (interpolation, per-sample norms, per-sample scaling) do not care about the
order of elements inside a sample, only that each sample is one block of memory. Contiguous
and channels_last tensors (any dense tensor with the batch outermost) qualify as they are;
anything else (a slice, a tensor with the batch not outermost) is copied once. Outputs take
`torch.empty_like` of the rows tensor, so they keep the input's layout, and the fake impls
promise exactly that. csrc/launch_utils.cuh holds the same rule in C++.
"""

import torch


def samples_are_blocks(t: torch.Tensor) -> bool:
    """Whether each sample of `t` fills one block of memory with nothing in between."""
    if t.is_contiguous():
        return True
    batch = t.shape[0]
    if batch > 1 and t.stride(0) != t.numel() // batch:
        return False
    # The other dims, innermost first, must tile their block exactly: each stride is the
    # product of the sizes inside it (size-1 dims take any stride).
    expected = 1
    for stride, size in sorted((t.stride(d), t.shape[d]) for d in range(1, t.dim())
                               if t.shape[d] != 1):
        if stride != expected:
            return False
        expected *= size
    return True


def as_rows(t: torch.Tensor) -> torch.Tensor:
    """`t` itself when its samples are blocks of memory, else a contiguous copy."""
    return t if samples_are_blocks(t) else t.contiguous()


def matching_layout(t: torch.Tensor, like: torch.Tensor, dtype: torch.dtype | None = None):
    """`t` with the strides of `like` (a dense tensor of t's shape) in `dtype` (default: t's),
    copied, in one pass that also casts, only when either differs."""
    dtype = dtype or t.dtype
    if t.stride() == like.stride() and t.dtype == dtype:
        return t
    return torch.empty_like(like, dtype=dtype).copy_(t)


def per_sample(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A [B] tensor shaped to broadcast against `like` ([B, 1, 1, ...])."""
    return v.view(-1, *([1] * (like.dim() - 1)))


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype ganfast accumulates in: fp64 for fp64 inputs, fp32 for everything else."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def image_format(x: torch.Tensor) -> torch.memory_format:
    """The memory format an image op's output takes from its input x [B, C, H, W]:
    channels_last when x is channels_last (and not also contiguous), else contiguous."""
    if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format
