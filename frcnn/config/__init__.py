"""Configuration: the typed schemas of every command's config (``configs/*.yaml``), the value
ranges of their numeric keys, and :func:`compose`, the training config as ``scripts/train.py``
composes it, from any directory.

Importing this package registers the schemas with Hydra's ConfigStore (``train_schema``,
``evaluate_schema``, ``predict_schema``, ``export_schema``). The ``dataset`` and ``model`` nodes
are the data and model packages' own (:class:`frcnn.data.config.DatasetConfig`,
:class:`frcnn.models.config.ModelConfig`).
"""

from frcnn.config.commands import EvaluateConfig, PredictConfig
from frcnn.config.compose import check_train_config, compose, config_dir, preset_warning
from frcnn.config.export import ExportConfig
from frcnn.config.schema import (
    Device,
    EvaluationConfig,
    NonFinitePolicy,
    OptimizerConfig,
    ScheduleConfig,
    TrainConfig,
    TrainLoopConfig,
)

__all__ = [
    "Device",
    "EvaluateConfig",
    "EvaluationConfig",
    "ExportConfig",
    "NonFinitePolicy",
    "OptimizerConfig",
    "PredictConfig",
    "ScheduleConfig",
    "TrainConfig",
    "TrainLoopConfig",
    "check_train_config",
    "compose",
    "config_dir",
    "preset_warning",
]
