"""Evaluation metrics: Frechet distance (FID), feature statistics, KID, IS, precision/recall."""

from .frechet import frechet_distance
from .reference import FrechetReference
from .stats import FeatureStats

__all__ = ["FeatureStats", "FrechetReference", "frechet_distance"]
