"""Evaluation metrics: Frechet distance (FID), feature statistics, KID, IS, precision/recall."""

from .frechet import frechet_distance
from .reference import FrechetReference

__all__ = ["FrechetReference", "frechet_distance"]
