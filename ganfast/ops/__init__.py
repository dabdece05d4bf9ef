"""ganfast's custom ops (torch.ops.ganfast.*): one module per op, see DESIGN.md."""

from .gradient_penalty import interpolate, per_sample_norm

__all__ = ["interpolate", "per_sample_norm"]
