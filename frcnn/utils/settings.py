"""Config keys declared once: type, default, one-line doc and allowed values in the schema field.

Every command's config is a tree of dataclasses (the schemas of :mod:`frcnn.config`,
:mod:`frcnn.models.config`, :mod:`frcnn.data.config`, :mod:`frcnn.bench.config`). A key is one
field declared with :func:`setting`::

    max_iters: int = setting(90000, "iterations to train", POSITIVE)

Its annotation is the type (Hydra rejects ``train.max_iters=abc``), an ``Enum`` annotation is a
closed set of choices (string-valued, so YAML files and command lines hold the plain names), and
the :class:`Range` is what :func:`check_settings` enforces for values of the right type that would
train wrongly or fail deep inside a run: ``train.clip_grad_norm=-1`` (the gradient multiplied by a
negative factor), ``dataset.max_size=0`` (1x1 images), ``seed=-1`` (numpy refuses it minutes later).
A dataclass may also name pairs of its keys that must be ordered (``ORDERED``).

:func:`typed` turns a composed config (an OmegaConf ``DictConfig`` over a schema) into the schema's
dataclasses and checks it: each command does this once, so code below reads plain attributes.
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from functools import partial
from typing import Any, Optional, TypeVar

from omegaconf import OmegaConf
from omegaconf.errors import MissingMandatoryValue

T = TypeVar("T")


@dataclass(frozen=True)
class Range:
    """What a numeric key accepts: ``test(value)`` is true inside the range, described by ``text``.

    ``optional``: null is also accepted. ``each``: the value is a list whose every element is
    tested (non-empty; of ``length`` elements when given).
    """

    test: Callable[[float], bool]
    text: str
    optional: bool = False
    each: bool = False
    length: Optional[int] = None

    def problem(self, value: Any) -> Optional[str]:
        """Why ``value`` is outside the range, or None when it is inside."""
        if value is None:
            return None if self.optional else f"must be {self.text}, got null"
        if self.each:
            values = list(value)
            if not values or (self.length is not None and len(values) != self.length):
                count = f"{self.length}" if self.length is not None else "one or more"
                return f"must be a list of {count} numbers {self.text}, got {values}"
            if not all(self.test(v) for v in values):
                return f"every element must be {self.text}, got {values}"
            return None
        if not self.test(value):
            return f"must be {self.text}{' or null' if self.optional else ''}, got {value}"
        return None

    def or_null(self) -> Range:
        """The same range, null accepted too."""
        return dataclasses.replace(self, optional=True)

    def for_each(self, length: Optional[int] = None) -> Range:
        """The range of a list whose every element is in this one (``length`` elements when given)."""
        return dataclasses.replace(self, each=True, length=length)


def one_of(*values: Any) -> Range:
    """A numeric key with a closed set of values (e.g. a ResNet depth)."""
    return Range(lambda v: v in values, f"one of {list(values)}")


POSITIVE = Range(lambda v: v > 0, "positive")
NONNEGATIVE = Range(lambda v: v >= 0, ">= 0")
FRACTION = Range(lambda v: 0 <= v <= 1, "in [0, 1]")
POSITIVE_FRACTION = Range(lambda v: 0 < v <= 1, "in (0, 1]")
BELOW_ONE = Range(lambda v: 0 <= v < 1, "in [0, 1)")
OPEN_FRACTION = Range(lambda v: 0 < v < 1, "in (0, 1)")


def setting(default: Any, doc: str, range: Optional[Range] = None) -> Any:
    """A schema field: its ``default`` (a list or dict is copied for each instance), a one-line
    ``doc`` and, for a numeric key, its allowed ``range`` (:func:`check_settings`)."""
    metadata = {"doc": doc, "range": range}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=partial(copy.deepcopy, default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def check_settings(node: Any, prefix: str = "") -> None:
    """Raise ValueError naming the first key of the dataclass tree ``node`` whose value is outside
    its declared :class:`Range`, is not one of its Enum's choices, or breaks an ``ORDERED`` pair.

    ``prefix``: where ``node`` sits in its command's config (``"model."`` for a model node alone).
    """
    hints = typing.get_type_hints(type(node))
    for field in dataclasses.fields(node):
        key, value = prefix + field.name, getattr(node, field.name)
        if dataclasses.is_dataclass(value):
            check_settings(value, f"{key}.")
            continue
        choices = _enum_type(hints[field.name])
        if choices is not None and value is not None:
            _check_choice(key, value, choices)
        allowed = field.metadata.get("range")
        if allowed is not None and (problem := allowed.problem(value)):
            raise ValueError(f"{key} {problem}")
    for smaller, larger in getattr(type(node), "ORDERED", ()):
        low, high = getattr(node, smaller), getattr(node, larger)
        if low is not None and high is not None and low > high:
            raise ValueError(f"{prefix}{smaller}={low} exceeds {prefix}{larger}={high}")


def _enum_type(annotation: Any) -> Optional[type[Enum]]:
    """The Enum of an ``Enum``, ``Optional[Enum]`` or ``list[Enum]`` annotation, else None."""
    for kind in (annotation, *typing.get_args(annotation)):
        if isinstance(kind, type) and issubclass(kind, Enum):
            return kind
    return None


def _check_choice(key: str, value: Any, choices: type[Enum]) -> None:
    for item in value if isinstance(value, (list, tuple)) else [value]:
        if item not in choices.__members__.values() and item not in choices.__members__:
            raise ValueError(f"{key} must be one of {[str(c) for c in choices]}, got {item!r}")


def typed(cfg: Any, schema: Optional[type[T]] = None, prefix: str = "") -> T:
    """``cfg`` as its schema's dataclasses, checked by :func:`check_settings`.

    cfg: a composed config (a ``DictConfig`` over a schema: ``OmegaConf.to_object``), a dataclass
    (checked as it is), or plain values (a dict or an untyped ``DictConfig``) built into ``schema``,
    missing keys taking their defaults. ``prefix``: where ``cfg`` sits in its command's config
    (``"model."``), for the messages. Raises ValueError naming the key: a required value left unset
    (``???``), a key the schema does not have, a value outside its range or choices.
    """
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        node = cfg
    elif OmegaConf.is_config(cfg) and dataclasses.is_dataclass(OmegaConf.get_type(cfg)):
        try:
            node = OmegaConf.to_object(cfg)
        except MissingMandatoryValue as error:
            key = prefix + str(error.full_key)
            raise ValueError(f"{key} is required: add {key}=VALUE to the command line") from None
    elif schema is not None:
        values = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else cfg
        node = _build(schema, values, prefix)
    else:
        raise TypeError(f"typed() needs the schema of an untyped config ({type(cfg).__name__})")
    check_settings(node, prefix)
    return node


def _build(schema: type[T], values: Any, prefix: str) -> T:
    """The ``schema`` dataclass of plain ``values``; Enum keys become Enums where the value is one
    of their names (:func:`check_settings` names any other)."""
    if not isinstance(values, dict):
        raise ValueError(f"{prefix.rstrip('.') or 'the config'} must be a mapping of keys, got {values!r}")
    hints = typing.get_type_hints(schema)
    known = {field.name for field in dataclasses.fields(schema)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{prefix}{unknown[0]} is not a config key (known: {', '.join(sorted(known))})")
    built = {}
    for name, value in values.items():
        kind = hints[name]
        if dataclasses.is_dataclass(kind):
            built[name] = _build(kind, value, f"{prefix}{name}.")
        else:
            built[name] = _as_enum(_enum_type(kind), value)
    return schema(**built)


def _as_enum(choices: Optional[type[Enum]], value: Any) -> Any:
    if choices is None or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_as_enum(choices, item) for item in value]
    return choices(value) if value in choices.__members__ else value


def plain(cfg: Any) -> dict:
    """A config (dataclasses or a ``DictConfig``) as plain dicts and lists, Enums as their names:
    what a checkpoint, ``model.json`` or ``metrics.json`` stores."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True, enum_to_str=True)


def numeric_keys_without_range(schema: type, prefix: str = "") -> list[str]:
    """Dotted keys of ``schema``'s int and float fields (also Optional, or lists of them) that
    declare no :class:`Range`: every numeric key must have one."""
    missing = []
    hints = typing.get_type_hints(schema)
    for field in dataclasses.fields(schema):
        kind = hints[field.name]
        if dataclasses.is_dataclass(kind):
            missing += numeric_keys_without_range(kind, f"{prefix}{field.name}.")
        elif _is_numeric(kind) and field.metadata.get("range") is None:
            missing.append(prefix + field.name)
    return missing


def _is_numeric(kind: Any) -> bool:
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    if kind in (int, float):
        return True
    if typing.get_origin(kind) is list:
        return bool(args) and args[0] in (int, float)
    return bool(args) and all(_is_numeric(a) for a in args)
