"""Each config key is declared once, in its schema field: every numeric key has a range, every
closed set of choices is an Enum, and one validator names the key, the value and what is allowed."""

import copy
import dataclasses
import re
import typing
from enum import Enum
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from frcnn.bench.config import BenchmarkConfig
from frcnn.config import (
    CheckDatasetConfig,
    ConvertDatasetConfig,
    EvaluateConfig,
    ExportConfig,
    PredictConfig,
    TrainConfig,
)
from frcnn.models.config import ModelConfig
from frcnn.utils.settings import check_settings, numeric_keys_without_range, typed

ROOTS = (TrainConfig, EvaluateConfig, PredictConfig, ExportConfig, BenchmarkConfig, CheckDatasetConfig,
         ConvertDatasetConfig)  # fmt: skip
PACKAGE = Path(__file__).resolve().parents[2] / "frcnn"

# String keys whose values are open (names, paths, patterns): every other str key would be a closed
# set of choices, which must be an Enum.
OPEN_STRING_KEYS = {
    "dataset.name", "dataset.root", "dataset.classes", "dataset.train_sets", "dataset.test_sets",
    "dataset.train.images", "dataset.train.annotations", "dataset.test.images", "dataset.test.annotations",
    "dataset.split_file",
    "model.backbone.weights", "model.weights", "train.resume", "train.best_metric",
    "checkpoint", "predictions", "exported_model", "voc_results_dir", "tensorboard_dir", "input", "output",
    "zoo.models", "accuracy.experiment", "accuracy.overrides", "accuracy.variants",
}  # fmt: skip


def _leaves(schema: type, prefix: str = ""):
    """(dotted key, annotation, field) of every key of ``schema``."""
    hints = typing.get_type_hints(schema)
    for field in dataclasses.fields(schema):
        kind = hints[field.name]
        if dataclasses.is_dataclass(kind):
            yield from _leaves(kind, f"{prefix}{field.name}.")
        else:
            yield prefix + field.name, kind, field


def _holds_text(kind) -> bool:
    return kind is str or any(_holds_text(arg) for arg in typing.get_args(kind))


@pytest.mark.parametrize("schema", ROOTS, ids=lambda s: s.__name__)
def test_every_numeric_key_has_a_range(schema):
    assert numeric_keys_without_range(schema) == []


@pytest.mark.parametrize("schema", ROOTS, ids=lambda s: s.__name__)
def test_every_key_has_a_doc_and_every_closed_choice_is_an_enum(schema):
    for key, kind, field in _leaves(schema):
        assert field.metadata.get("doc"), f"{schema.__name__}: {key} has no doc"
        if _holds_text(kind):
            assert key in OPEN_STRING_KEYS, (
                f"{schema.__name__}: {key} is a str: a closed set of choices must be an Enum"
            )


def test_a_numeric_key_without_a_range_is_found():
    @dataclasses.dataclass
    class Node:
        size: int = 3
        scales: list[float] = dataclasses.field(default_factory=list)
        name: str = "x"

    assert numeric_keys_without_range(Node, "node.") == ["node.size", "node.scales"]


def _outside(allowed, is_int: bool):
    candidates = [-1, 0, 5, 7, 10**9] if is_int else [-1.0, -0.5, 0.0, 1.0, 1.5, 2.0, 1e9]
    for value in candidates:
        if not allowed.test(value):
            return value
    raise AssertionError(f"no value outside {allowed.text}")


def _set(node, key: str, value) -> None:
    *parents, leaf = key.split(".")
    for name in parents:
        node = getattr(node, name)
    setattr(node, leaf, value)


def test_each_range_rejects_a_value_outside_it_naming_the_key(tiny_cfg):
    cfg = typed(tiny_cfg())  # the defaults are inside every range
    checked = 0
    for key, _, field in _leaves(TrainConfig):
        allowed = field.metadata.get("range")
        if allowed is None:
            continue
        default = OmegaConf.select(OmegaConf.structured(cfg), key)
        sample = default[0] if allowed.each else default
        is_int = isinstance(sample, int) and not isinstance(sample, bool)
        bad_values = [_outside(allowed, is_int)]
        if allowed.each:
            bad_values = [[bad_values[0]] * (allowed.length or 1), []]
        for bad in bad_values:
            broken = copy.deepcopy(cfg)
            _set(broken, key, bad)
            with pytest.raises(ValueError) as info:
                check_settings(broken)
            assert str(info.value).startswith(f"{key} "), (key, bad, str(info.value))
            checked += 1
    assert checked > 80
    broken = copy.deepcopy(cfg)
    broken.model.rpn.neg_iou_thresh = 0.8
    with pytest.raises(ValueError, match=r"model.rpn.neg_iou_thresh=0.8 exceeds model.rpn.pos_iou_thresh=0.7"):
        check_settings(broken)


def test_a_choice_outside_its_enum_names_the_key_and_the_choices():
    cfg = ModelConfig()
    cfg.roi_head.pooler = "roi_warp"
    with pytest.raises(
        ValueError, match=r"model.roi_head.pooler must be one of \['roi_pool', 'roi_align'\], got 'roi_warp'"
    ):
        check_settings(cfg, "model.")


def test_typed_builds_plain_values_into_the_schema():
    cfg = typed({"architecture": "fpn", "backbone": {"depth": 18}}, ModelConfig, "model.")
    assert isinstance(cfg, ModelConfig) and cfg.architecture is type(cfg.architecture).fpn
    assert cfg.backbone.depth == 18 and cfg.rpn.nms_thresh == 0.7  # the rest: the schema's defaults
    with pytest.raises(ValueError, match=r"^model.backbone.colour is not a config key"):
        typed({"backbone": {"colour": "red"}}, ModelConfig, "model.")
    with pytest.raises(ValueError, match=r"^model.backbone.depth must be one of \[18, 34, 50, 101\], got 19"):
        typed(OmegaConf.create({"backbone": {"depth": 19}}), ModelConfig, "model.")


def test_typed_names_a_required_value():
    with pytest.raises(ValueError, match=r"^output is required: add output=VALUE"):
        typed(OmegaConf.merge(ExportConfig, {"checkpoint": "last.pt"}))
    cfg = typed(OmegaConf.merge(ExportConfig, {"checkpoint": "last.pt", "output": "out"}))
    assert isinstance(cfg, ExportConfig) and cfg.opset == 17


def test_enums_read_as_their_names():
    cfg = typed(OmegaConf.structured(TrainConfig))
    for key, kind, _ in _leaves(TrainConfig):
        if isinstance(kind, type) and issubclass(kind, Enum):
            value = OmegaConf.select(OmegaConf.structured(cfg), key)
            assert f"{value}" == str(value) == value.value, key  # f-strings and str() give the YAML name


def test_no_config_fallbacks_or_enum_unwrapping_in_the_package():
    """Consumers read typed configs: no ``getattr(node, "key", default)`` and no ``getattr(x, "value", x)``."""
    pattern = re.compile(
        r'getattr\([^()]*, "value"|getattr\((cfg|[a-z_]*_cfg|anchors|rpn|backbone)\b[^()]*, "[a-z_]+", '
    )
    found = [
        f"{path.relative_to(PACKAGE)}:{n}"
        for path in PACKAGE.rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert found == []
