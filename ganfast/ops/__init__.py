"""ganfast's ops (torch.ops.ganfast.*, torch.ops.ganfast_C.*): one module per op, see
docs/ops.md."""

from .gradient_penalty import interpolate, norm_penalty, per_sample_norm

__all__ = ["interpolate", "norm_penalty", "per_sample_norm"]
