"""Configs and helpers shared by tasks: backbones, metrics, logging, seeding."""

from autotimm.core.backbone import (
    FeatureBackboneConfig,
    create_feature_backbone,
    get_feature_channels,
    get_feature_info,
    get_feature_strides,
)
from autotimm.core.logging_config import LoggingConfig
from autotimm.core.metrics import MetricConfig, MetricManager
from autotimm.core.utils import seed_everything

__all__ = [
    "FeatureBackboneConfig",
    "LoggingConfig",
    "MetricConfig",
    "MetricManager",
    "create_feature_backbone",
    "get_feature_channels",
    "get_feature_info",
    "get_feature_strides",
    "seed_everything",
]
