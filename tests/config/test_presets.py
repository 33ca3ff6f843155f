"""Every preset resolves as recorded, and the YAML files set only what differs.

``resolved_presets.json`` holds the resolved config (``OmegaConf.to_container(cfg, resolve=False,
enum_to_str=True)``) of every preset: each experiment, alone and with ``debug=tiny``; each model,
dataset, optimizer and schedule option under ``~experiment``; the default training config; and the
evaluate, predict, export, benchmark and check_dataset configs. A change of a YAML file or of a
schema default that changes any of them fails :func:`test_preset_resolves_as_recorded`, naming the
dotted keys that differ. When the change is meant, record the configs again and review the diff::

    python -m tests.config.test_presets --update
    git diff tests/config/resolved_presets.json

(``python -m tests.config.test_presets`` alone prints the differences without writing.)

:func:`test_no_redundant_value` keeps the files to what differs. A file's value is redundant when
every composition the file is meant for is the same without it; the compositions ("contexts"):

- a dataset, model, optimizer or schedule option: ``~experiment <group>=<option>`` (its values
  merge onto the schema's node, or onto the base option its defaults list names);
- an experiment: ``experiment=<option>``, and with each option of every group the experiment does
  not choose itself in its defaults list (``custom_cpu`` is meant for ``dataset=voc`` too);
- a debug preset: over every experiment, and over ``~experiment`` with each option of every group;
- a root file (``train.yaml``, ``benchmark.yaml``, ...): its own config, and with each option of
  every group its defaults list names.

"Without it" is the file with its body removed (its ``defaults`` list, ``# @package`` line and
``hydra`` node kept): Hydra merges a file's values key by key, so the value at a key without the
whole body is the value without that one line. Lists are values (not compared item by item), and
``hydra`` settings are Hydra's own, not checked. :data:`STATED` lists the few values kept on
purpose, with the reason.
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import frcnn.bench.config  # registers benchmark_schema
import frcnn.cli.check_dataset  # registers check_dataset_schema
import frcnn.config  # registers the train, evaluate, predict and export schemas

SNAPSHOT = Path(__file__).with_name("resolved_presets.json")
CONFIGS = frcnn.config.config_dir()
GROUPS = ("dataset", "model", "optimizer", "schedule")
COMMANDS = ("evaluate", "predict", "export", "benchmark", "check_dataset", "convert_dataset")
UPDATE = "if the change is meant: python -m tests.config.test_presets --update, and review the diff"

# Values equal to what the config has without them, stated on purpose: code reads these files by
# themselves, without the schema or Hydra's composition.
STATED = {
    # Every optimizer group states its rate and decay: the small presets keep the group's own
    # (tests/config/test_schema.py reads them from the files).
    "optimizer/sgd.yaml": {"optimizer.base_lr", "optimizer.reference_batch_size", "optimizer.weight_decay"},
    "optimizer/adamw.yaml": {"optimizer.reference_batch_size"},
}

_ABSENT = object()


def _options(group: str, configs: Path = CONFIGS) -> list[str]:
    return sorted(p.stem for p in (configs / group).glob("*.yaml"))


def preset_cases(configs: Path = CONFIGS) -> dict[str, tuple[str, list[str]]]:
    """Case name -> (config name, overrides): the presets of ``resolved_presets.json``."""
    cases = {}
    for experiment in _options("experiment", configs):
        cases[f"train experiment={experiment}"] = ("train", [f"experiment={experiment}"])
        cases[f"train experiment={experiment} debug=tiny"] = ("train", [f"experiment={experiment}", "debug=tiny"])
    for group in ("model", "dataset", "optimizer", "schedule"):
        for option in _options(group, configs):
            cases[f"train ~experiment {group}={option}"] = ("train", ["~experiment", f"{group}={option}"])
    cases["train"] = ("train", [])
    for name in COMMANDS:
        cases[name] = (name, [])
    return cases


def _resolved(cfg) -> Any:
    """``cfg`` as the snapshot stores it (JSON types)."""
    return json.loads(json.dumps(OmegaConf.to_container(cfg, resolve=False, enum_to_str=True)))


def compose_cases(cases: dict[str, tuple[str, list[str]]], configs: Path = CONFIGS) -> dict[str, Any]:
    """Every case composed, in one Hydra context."""
    with initialize_config_dir(config_dir=str(configs), version_base=None):
        return {case: _resolved(compose(name, overrides=list(overrides))) for case, (name, overrides) in cases.items()}


def differences(recorded: Any, current: Any, key: str = "") -> list[str]:
    """The dotted keys where ``current`` differs from ``recorded``, each with both values."""
    if isinstance(recorded, dict) and isinstance(current, dict):
        found = []
        for name in sorted(recorded.keys() | current.keys()):
            sub = f"{key}.{name}" if key else name
            if name not in current:
                found.append(f"{sub} (recorded {recorded[name]!r}, now absent)")
            elif name not in recorded:
                found.append(f"{sub} (not recorded, now {current[name]!r})")
            else:
                found += differences(recorded[name], current[name], sub)
        return found
    if recorded != current or type(recorded) is not type(current):
        return [f"{key or '<root>'} (recorded {recorded!r}, now {current!r})"]
    return []


CASES = preset_cases()


@pytest.fixture(scope="module")
def recorded() -> dict[str, Any]:
    return json.loads(SNAPSHOT.read_text())


@pytest.fixture(scope="module")
def resolved() -> dict[str, Any]:
    return compose_cases(CASES)


@pytest.mark.parametrize("case", sorted(CASES.keys() | json.loads(SNAPSHOT.read_text()).keys()))
def test_preset_resolves_as_recorded(case, recorded, resolved):
    assert case in recorded, f"{case}: a preset that {SNAPSHOT.name} does not hold; {UPDATE}"
    assert case in resolved, f"{case}: recorded in {SNAPSHOT.name}, but no longer a preset; {UPDATE}"
    found = differences(recorded[case], resolved[case])
    assert not found, f"{case}: differs from {SNAPSHOT.name} at {'; '.join(found)}; {UPDATE}"


# --- redundant values ---------------------------------------------------------------------------


def config_files(configs: Path = CONFIGS) -> list[str]:
    """Every YAML file of the config folder, relative to it: the root files and each group's options."""
    return sorted(str(p.relative_to(configs)) for p in configs.rglob("*.yaml"))


def _chosen_groups(node: dict) -> set[str]:
    """The groups a defaults list chooses: ``- override /dataset: coco``, ``- dataset: shapes``."""
    chosen = set()
    for entry in node.get("defaults") or []:
        if isinstance(entry, dict):
            for name in entry:
                group = name.removeprefix("override ").strip().lstrip("/")
                if group in GROUPS:
                    chosen.add(group)
    return chosen


def contexts(path: str, node: dict, configs: Path) -> tuple[str, list[tuple[str, list[str]]]]:
    """(the package prefix of the file's keys, the compositions the file is meant for): see the
    module docstring."""
    parts = Path(path).with_suffix("").parts
    if len(parts) == 1:  # a root file
        name = parts[0]
        others = [(name, [f"{g}={o}"]) for g in sorted(_chosen_groups(node)) for o in _options(g, configs)]
        return "", [(name, []), *others]
    group, option = parts
    if group in GROUPS:
        return group, [("train", ["~experiment", f"{group}={option}"])]
    if group == "experiment":
        unchosen = [g for g in GROUPS if g not in _chosen_groups(node)]
        others = [("train", [f"experiment={option}", f"{g}={o}"]) for g in unchosen for o in _options(g, configs)]
        return "", [("train", [f"experiment={option}"]), *others]
    if group == "debug":
        over_experiments = [("train", [f"experiment={e}", f"debug={option}"]) for e in _options("experiment", configs)]
        over_groups = [
            ("train", ["~experiment", f"{g}={o}", f"debug={option}"]) for g in GROUPS for o in _options(g, configs)
        ]
        return "", over_experiments + over_groups
    raise AssertionError(f"{path}: a config group this test does not know; add its contexts")


def _leaves(node: Any, key: str = ""):
    """(dotted key, value) of every value in ``node``: dicts are walked, lists are values."""
    if isinstance(node, dict) and node:
        for name, value in node.items():
            yield from _leaves(value, f"{key}.{name}" if key else str(name))
    else:
        yield key, node


def _select(container: Any, key: str) -> Any:
    for name in key.split("."):
        if not isinstance(container, dict) or name not in container:
            return _ABSENT
        container = container[name]
    return container


def _without_body(text: str, node: dict) -> str:
    """The file with its values removed: its ``# @package`` line, defaults list and hydra node stay."""
    header = [line for line in text.splitlines() if line.startswith("# @package")]
    kept = {key: node[key] for key in ("defaults", "hydra") if key in node}
    return "\n".join(header) + "\n" + (OmegaConf.to_yaml(OmegaConf.create(kept)) if kept else "")


@functools.cache
def _composed(configs: Path, name: str, overrides: tuple[str, ...]) -> Any:
    """``name`` with ``overrides`` composed from the unedited ``configs`` (in a Hydra context),
    once: the files meant for the same compositions share them."""
    return _resolved(compose(name, overrides=list(overrides)))


def redundant_values(path: str, configs: Path) -> list[str]:
    """The dotted keys of ``path`` (relative to ``configs``, a copy that this function edits and
    restores) whose value changes none of the file's compositions."""
    file = configs / path
    text = file.read_text()
    node = OmegaConf.to_container(OmegaConf.load(file), resolve=False) or {}
    prefix, meant_for = contexts(path, node, configs)
    values = {key: value for key, value in node.items() if key not in ("defaults", "hydra")}
    keys = [f"{prefix}.{key}" if prefix else key for key, _ in _leaves(values)] if values else []
    if not keys:
        return []
    with initialize_config_dir(config_dir=str(configs), version_base=None):
        with_file = [_composed(configs, name, tuple(overrides)) for name, overrides in meant_for]
        file.write_text(_without_body(text, node))
        try:
            without = [_resolved(compose(name, overrides=overrides)) for name, overrides in meant_for]
        finally:
            file.write_text(text)
    same = [[not differences(_select(a, key), _select(b, key)) for key in keys] for a, b in zip(with_file, without)]
    return [key for i, key in enumerate(keys) if all(row[i] for row in same)]


@pytest.fixture(scope="module")
def config_copy(tmp_path_factory) -> Path:
    """A copy of the config folder, whose files :func:`redundant_values` edits one at a time."""
    copy = tmp_path_factory.mktemp("configs") / "configs"
    shutil.copytree(CONFIGS, copy)
    return copy


@pytest.mark.parametrize("path", config_files())
def test_no_redundant_value(path, config_copy):
    """A value that changes none of the compositions the file is meant for (module docstring) is
    left to the schema, the file's base or its groups; :data:`STATED` lists the exceptions."""
    stated = STATED.get(path, set())
    found = [key for key in redundant_values(path, config_copy) if key not in stated]
    assert not found, (
        f"configs/{path} sets {', '.join(found)} to the value the config has without it "
        f"(from the schema, its base or its groups): remove it"
    )
    node = OmegaConf.to_container(OmegaConf.load(CONFIGS / path), resolve=False) or {}
    prefix = contexts(path, node, CONFIGS)[0]
    keys = {f"{prefix}.{key}" if prefix else key for key, _ in _leaves(node)}
    assert stated <= keys, f"STATED names {sorted(stated - keys)}, which configs/{path} no longer sets"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--update", action="store_true", help=f"write the presets' resolved configs to {SNAPSHOT}")
    args = parser.parse_args(argv)
    resolved = compose_cases(preset_cases())
    if args.update:
        SNAPSHOT.write_text(json.dumps(resolved, indent=1, sort_keys=True))
        print(f"recorded {len(resolved)} presets in {SNAPSHOT}")
        return 0
    recorded = json.loads(SNAPSHOT.read_text())
    found = [f"{case}: not recorded" for case in sorted(resolved.keys() - recorded.keys())]
    found += [f"{case}: recorded, no longer a preset" for case in sorted(recorded.keys() - resolved.keys())]
    for case in sorted(recorded.keys() & resolved.keys()):
        found += [f"{case}: {key}" for key in differences(recorded[case], resolved[case])]
    print("\n".join(found) or f"every preset resolves as {SNAPSHOT.name} records it")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
