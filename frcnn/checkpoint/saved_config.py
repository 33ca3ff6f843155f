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

import os
from collections.abc import Mapping
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from frcnn.config.schema import TrainConfig
from frcnn.data.config import DatasetConfig
from frcnn.models.config import ModelConfig
from frcnn.utils.settings import typed


def saved_model_config(config: Mapping[str, Any]) -> ModelConfig:
    """The ``model`` node of a saved train config (a checkpoint's or a ``model.json``'s), typed
    and checked; keys added to frcnn after it was saved take their defaults."""
    return typed(OmegaConf.merge(ModelConfig, config["model"]), "model.")


def saved_dataset_config(config: Mapping[str, Any]) -> DatasetConfig:
    """The ``dataset`` node of a saved train config, typed and checked (missing keys: defaults)."""
    return typed(OmegaConf.merge(DatasetConfig, config["dataset"]), "dataset.")


def checkpoint_run_config(
    cfg: Any, saved_config: Mapping[str, Any], overrides: list[str]
) -> tuple[DatasetConfig, ModelConfig]:
    """(dataset, model) nodes of a run on a checkpoint, typed and checked.

    cfg: the composed evaluate/predict config. saved_config: the checkpoint's resolved train
    config. overrides: the command line's task overrides (``HydraConfig.get().overrides.task``);
    the values of the ``model.*``/``dataset.*`` ones are taken from ``cfg``, already parsed and
    type-checked by Hydra.
    """
    given = OmegaConf.structured(cfg)
    parsed = OverridesParser.create().parse_overrides(list(overrides))
    dataset_group_chosen = any(o.key_or_group == "dataset" for o in parsed)
    model = OmegaConf.merge(ModelConfig, saved_config["model"])
    dataset = given.dataset if dataset_group_chosen else OmegaConf.merge(DatasetConfig, saved_config["dataset"])
    for override in parsed:
        key = override.key_or_group
        node_name, _, subkey = key.partition(".")
        if not subkey or (node_name == "dataset" and dataset_group_chosen):
            continue
        if node_name in ("model", "dataset"):
            target = model if node_name == "model" else dataset
            OmegaConf.update(target, subkey, OmegaConf.select(given, key), merge=False)
    return typed(dataset, "dataset."), typed(model, "model.")


def saved_train_config(saved: Mapping[str, Any], source: str | os.PathLike) -> TrainConfig:
    """A checkpoint's saved train config, typed and checked (keys added to frcnn after it was
    saved take their defaults). Raises ValueError, one line naming ``source``, for a key the schema
    does not know (a ``hydra`` node included), a value of the wrong type or range, or an
    interpolation: the file is data, never configuration that runs."""
    interpolated = _interpolations(saved)
    if interpolated:
        raise ValueError(f"{source}: its saved config holds an interpolation in {', '.join(interpolated)}: refused")
    try:
        return typed(OmegaConf.merge(TrainConfig, saved))
    except (OmegaConfBaseException, ValueError) as error:
        reason = " ".join(str(error).splitlines()[0].split())
        raise ValueError(
            f"{source}: its saved config is not an frcnn train config ({reason}): refused; resume from "
            f"a checkpoint that training wrote"
        ) from None


def _interpolations(node: Any, key: str = "") -> list[str]:
    """The keys (``a.b``, ``a.0``) of every string in ``node`` that OmegaConf would resolve (``${...}``)."""
    if isinstance(node, Mapping):
        return [found for k, value in node.items() for found in _interpolations(value, f"{key}{k}.")]
    if isinstance(node, (list, tuple)):
        return [found for i, value in enumerate(node) for found in _interpolations(value, f"{key}{i}.")]
    return [key.rstrip(".")] if isinstance(node, str) and "${" in node else []
