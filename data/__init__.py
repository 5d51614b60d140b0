"""Framework-neutral data layer: numpy in, numpy out, shared by both backends."""

from core.config import DINConfig
from data.schema import AttentionGroup, CategoricalFeature, FeatureSchema, SequenceFeature

__all__ = ["AttentionGroup", "CategoricalFeature", "DINConfig", "FeatureSchema", "SequenceFeature"]
