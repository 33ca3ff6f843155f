"""Configuration: the typed schemas of every command's config (``configs/*.yaml``), each key
declared once with its default, doc and allowed values (:mod:`frcnn.utils.settings`), and
:func:`compose`, the training config as ``scripts/train.py`` composes it, from any directory.

Importing this package registers the schemas with Hydra's ConfigStore (``train_schema``,
``evaluate_schema``, ``analyze_schema``, ``predict_schema``, ``export_schema``, ``check_dataset_schema``,
``convert_dataset_schema``). The
``dataset`` and ``model`` nodes are the data and model packages' own
(:class:`frcnn.data.config.DatasetConfig`, :class:`frcnn.models.config.ModelConfig`).
:func:`typed` turns a composed config into these dataclasses, checked: each command does it once.
"""

from frcnn.config.commands import (
    AnalyzeConfig,
    CheckDatasetConfig,
    ConvertDatasetConfig,
    EvaluateConfig,
    PredictConfig,
)
from frcnn.config.compose import compose, config_dir, group_option, preset_warning
from frcnn.config.export import ExportConfig
from frcnn.config.schema import (
    AnalysisConfig,
    EvaluationConfig,
    NonFinitePolicy,
    OptimizerConfig,
    ScheduleConfig,
    TrainConfig,
    TrainLoopConfig,
)
from frcnn.utils.device import Device
from frcnn.utils.settings import plain, typed

__all__ = [
    "AnalysisConfig",
    "AnalyzeConfig",
    "CheckDatasetConfig",
    "ConvertDatasetConfig",
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
    "compose",
    "config_dir",
    "group_option",
    "plain",
    "preset_warning",
    "typed",
]
