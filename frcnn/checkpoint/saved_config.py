"""A checkpoint's saved config, typed again, and the command line's overrides on top of it.

A checkpoint stores its train config as plain dicts (:attr:`Checkpoint.config`); its ``model``
and ``dataset`` nodes become typed configs here, and only here, so that a key the schema does not
know fails by name and enum keys are enums again. An exported model's ``model.json`` keeps the
same config and goes through the same functions.

A command run on a checkpoint (evaluate, predict) uses the checkpoint's ``model`` and ``dataset``
nodes (the config it was trained with); the user's ``model.*`` and ``dataset.*`` overrides are
applied on top, e.g. ``model.roi_head.score_thresh=0.01`` or ``dataset.test_sets=[2007-test]``.
Choosing a dataset group (``dataset=voc ...``) replaces the checkpoint's dataset node altogether.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from frcnn.config.ranges import check_ranges
from frcnn.data.config import DatasetConfig
from frcnn.models.config import ModelConfig


def saved_model_config(config: Mapping[str, Any]) -> DictConfig:
    """The ``model`` node of a saved train config (a checkpoint's or a ``model.json``'s) as a
    :class:`ModelConfig`."""
    return OmegaConf.merge(OmegaConf.structured(ModelConfig), config["model"])


def saved_dataset_config(config: Mapping[str, Any]) -> DictConfig:
    """The ``dataset`` node of a saved train config as a :class:`DatasetConfig`."""
    return OmegaConf.merge(OmegaConf.structured(DatasetConfig), config["dataset"])


def checkpoint_run_config(
    cfg: DictConfig, saved_config: Mapping[str, Any], overrides: list[str]
) -> tuple[DictConfig, DictConfig]:
    """(dataset, model) nodes of a run on a checkpoint, value-checked.

    cfg: the composed evaluate/predict config. saved_config: the checkpoint's resolved train
    config. overrides: the command line's task overrides (``HydraConfig.get().overrides.task``);
    the values of the ``model.*``/``dataset.*`` ones are taken from ``cfg``, already parsed and
    type-checked by Hydra.
    """
    parsed = OverridesParser.create().parse_overrides(list(overrides))
    dataset_group_chosen = any(o.key_or_group == "dataset" for o in parsed)
    model = saved_model_config(saved_config)
    dataset = cfg.dataset if dataset_group_chosen else saved_dataset_config(saved_config)
    for override in parsed:
        key = override.key_or_group
        node_name, _, subkey = key.partition(".")
        if not subkey or (node_name == "dataset" and dataset_group_chosen):
            continue
        if node_name in ("model", "dataset"):
            target = model if node_name == "model" else dataset
            OmegaConf.update(target, subkey, OmegaConf.select(cfg, key), merge=False)
    check_ranges(dataset, "dataset")
    check_ranges(model, "model")
    return dataset, model
