"""Every numeric config key has a range; a value outside it is refused, naming the key."""

import copy

import pytest
from omegaconf import OmegaConf


def _numeric_keys(schema, prefix: str = "") -> list[str]:
    """Dotted keys of every int/float field (or list of them, or Optional) of a dataclass schema."""
    import dataclasses
    import typing

    keys = []
    for field in dataclasses.fields(schema):
        kind = typing.get_type_hints(schema)[field.name]
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if dataclasses.is_dataclass(kind):
            keys += _numeric_keys(kind, f"{prefix}{field.name}.")
        elif (
            kind in (int, float)
            or (args and all(a in (int, float) for a in args))
            or (typing.get_origin(kind) is list and typing.get_args(kind)[0] in (int, float))
        ):
            keys.append(prefix + field.name)
    return keys


def test_every_numeric_key_has_a_range():
    from frcnn.config import TrainConfig
    from frcnn.config.commands import EvaluateConfig, PredictConfig
    from frcnn.config.ranges import EVALUATE_RANGES, PREDICT_RANGES, RANGES

    assert sorted(_numeric_keys(TrainConfig)) == sorted(RANGES)
    nodes = [k for k in RANGES if k.startswith(("dataset.", "model."))]
    assert sorted(_numeric_keys(EvaluateConfig)) == sorted(nodes + list(EVALUATE_RANGES))
    assert sorted(_numeric_keys(PredictConfig)) == sorted(nodes + list(PREDICT_RANGES))


def _outside(allowed, is_int: bool):
    candidates = [-1, 0, 5, 10**9] if is_int else [-1.0, -0.5, 0.0, 1.0, 1.5, 2.0, 1e9]
    for value in candidates:
        if not allowed.test(value):
            return value
    raise AssertionError(f"no value outside {allowed.text}")


def test_each_range_rejects_a_value_outside_it_naming_the_key(tiny_cfg):
    from frcnn.config.ranges import RANGES, check_ranges

    cfg = tiny_cfg()
    check_ranges(cfg)  # the defaults are inside every range
    for key, allowed in RANGES.items():
        default = OmegaConf.select(cfg, key)
        sample = default[0] if allowed.each else default
        is_int = isinstance(sample, int) and not isinstance(sample, bool)
        bad_values = [_outside(allowed, is_int)]
        if allowed.each:
            bad_values = [[bad_values[0]] * (allowed.length or 1), []]
        for bad in bad_values:
            broken = copy.deepcopy(cfg)
            OmegaConf.update(broken, key, bad, merge=False)
            with pytest.raises(ValueError) as info:
                check_ranges(broken)
            assert str(info.value).startswith(f"{key} "), (key, bad, str(info.value))
    broken = copy.deepcopy(cfg)
    broken.model.rpn.neg_iou_thresh = 0.8
    with pytest.raises(ValueError, match=r"model.rpn.neg_iou_thresh=0.8 exceeds model.rpn.pos_iou_thresh=0.7"):
        check_ranges(broken)
