"""Evaluation metrics: Frechet distance (FID), feature statistics, KID, IS, precision/recall."""

from .frechet import frechet_distance
from .inception import fid_inception
from .inception_score import inception_score
from .kid import kid
from .precision_recall import precision_recall
from .reference import FrechetReference
from .stats import FeatureStats

__all__ = [
    "FeatureStats",
    "FrechetReference",
    "fid_inception",
    "frechet_distance",
    "inception_score",
    "kid",
    "precision_recall",
]
