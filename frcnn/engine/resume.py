"""Resuming a run with the config it was started with.

A training that has started (its run folder locked and checked, its checkpoint restored) writes
its command line's overrides to ``RUN/run_overrides.yaml`` (:func:`save_run_overrides`). Then
``train.resume=auto hydra.run.dir=RUN`` reuses them (:func:`with_saved_overrides`), so the original
command line need not be repeated; keys given again on the new command line win. Hydra's own
``RUN/.hydra/overrides.yaml`` is not read: Hydra writes it before the job runs, so it also holds
the overrides of attempts that were refused.

The file is read as data, never as configuration that runs code: only keys of frcnn's schema
(``train.max_iters=...``, ``model.rpn.conv_channels=...``) and config-group choices
(``experiment=...``, ``dataset=...``) are taken; an override of ``hydra.*``, one with a ``+``/``~``
prefix, a ``@package``, a sweep, an interpolation (``${...}``) or a ``_target_``-like key is
refused, naming the file and the override (give it on the command line if it is meant).

``train.resume=PATH`` (a checkpoint file) trains with the checkpoint's own config, saved in it
(:func:`config_to_resume`): the command line's overrides are applied on top of it, so a resume
needs no more than ``train.resume=PATH`` and what is to change (``train.max_iters=...``). Once
the run folder holds a checkpoint, ``train.resume=auto`` takes that checkpoint's config the same
way (so a run started with ``train.resume=PATH`` resumes with the config it trained with); the
saved overrides matter before the first checkpoint. The
saved config is data too: it must fit the schema (no ``hydra`` node, no key frcnn does not know,
no interpolation) or the resume stops naming the file.

A resume whose config still differs from the checkpoint's in what shapes the model, the data or
the optimisation stops, naming the keys (:func:`check_resume_config`), unless
``train.resume_allow_config_change=true``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType
from omegaconf import DictConfig, OmegaConf

from frcnn.checkpoint.folder import CheckpointDir, load_resume_checkpoint
from frcnn.checkpoint.format import Checkpoint
from frcnn.checkpoint.saved_config import saved_train_config
from frcnn.config import config_dir
from frcnn.config.schema import TrainConfig
from frcnn.utils.settings import plain

log = logging.getLogger(__name__)

RUN_OVERRIDES = "run_overrides.yaml"
# One-off actions of a command line, not settings of the run: never replayed.
NOT_SAVED = ("train.resume", "train.overwrite")

# Keys that may change between the interrupted run and its continuation: the run's length,
# reporting and bookkeeping, not what is trained or how.
RESUMABLE_CHANGES = (
    "train.max_iters", "train.eval_period", "train.eval_batch_size", "train.checkpoint_period",
    "train.keep_checkpoints", "train.resume", "train.resume_allow_config_change", "train.log_period",
    "train.vis_images", "train.eval_at_end", "dataset.num_workers", "device", "compile",
)  # fmt: skip


def override_key(override: str) -> str:
    """``+train.x=1`` -> ``train.x``; ``~experiment`` -> ``experiment``."""
    return override.split("=", 1)[0].lstrip("+~")


def save_run_overrides(run_dir: str | os.PathLike, overrides: list[str]) -> None:
    """Write the overrides of a training that has started to ``run_dir/run_overrides.yaml``
    (atomically), less the one-off ``train.resume`` and ``train.overwrite``."""
    path = Path(run_dir) / RUN_OVERRIDES
    kept = [o for o in overrides if override_key(o) not in NOT_SAVED]
    tmp = path.with_name(f".{path.name}.tmp")
    OmegaConf.save(OmegaConf.create(kept), tmp)
    os.replace(tmp, path)


def with_saved_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
    """Command-line arguments with a resumed run's saved overrides put first.

    Only for ``train.resume=auto`` together with ``hydra.run.dir=RUN`` where
    ``RUN/run_overrides.yaml`` exists; saved overrides whose key the command line gives again
    are dropped. Returns (new argv, the saved overrides reused). Raises ValueError naming the file
    and the override for one that is not a setting of frcnn's schema (module docstring).
    """
    given = {override_key(arg): arg.split("=", 1)[-1] for arg in argv if "=" in arg or arg.startswith("~")}
    run_dir = given.get("hydra.run.dir")
    if given.get("train.resume") != "auto" or run_dir is None or "-m" in argv or "--multirun" in argv:
        return argv, []
    saved_file = Path(run_dir) / RUN_OVERRIDES
    if not saved_file.is_file():
        return argv, []
    saved = OmegaConf.to_container(OmegaConf.load(saved_file))
    if not isinstance(saved, list) or not all(isinstance(o, str) for o in saved):
        raise ValueError(
            f"{saved_file}: not a list of overrides; remove the file and give the run's overrides on the command line"
        )
    reused = [o for o in saved if override_key(o) not in given]
    for override in reused:
        reason = _not_a_setting(override)
        if reason is not None:
            raise ValueError(
                f"{saved_file}: refusing the saved override {override!r} ({reason}); give it on the "
                f"command line if it is meant, or remove it from the file"
            )
    return reused + argv, reused


_SCHEMA = OmegaConf.structured(TrainConfig)


def _not_a_setting(text: str) -> str | None:
    """Why the override ``text`` is not a setting of frcnn's train schema; None when it is one."""
    try:
        override = OverridesParser.create().parse_overrides([text])[0]
    except Exception:  # noqa: BLE001 (any parse error: the text is not an override)
        return "not an override"
    key = override.key_or_group
    if override.type is not OverrideType.CHANGE or override.package is not None or override.is_sweep_override():
        return "only plain key=value settings are replayed, no +/~ prefix, @package or sweep"
    if key.split(".")[0] == "hydra":
        return "Hydra's own settings are not replayed"
    if "${" in text:
        return "an interpolation"
    if _instantiation_key(key) or _has_instantiation_key(override.value()):
        return "a _target_-like key"
    if "." not in key:
        if key in _config_groups():
            return None if _plain_choice(override) else "a config-group choice must be a name"
        return None if key in _SCHEMA and not isinstance(_SCHEMA[key], DictConfig) else "not a key of the schema"
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(_SCHEMA, parent, default=None)
    return None if isinstance(node, DictConfig) and leaf in node else "not a key of the schema"


def _config_groups() -> set[str]:
    return {p.name for p in config_dir().iterdir() if p.is_dir()}


def _plain_choice(override: Override) -> bool:
    value = override.value()
    return isinstance(value, str) and all(c.isalnum() or c in "_-./" for c in value)


def _instantiation_key(key: Any) -> bool:
    """``_target_``, ``_args_``, ``_partial_``...: keys that make Hydra or OmegaConf run code."""
    return any(part.startswith("_") and part.endswith("_") for part in str(key).split("."))


def _has_instantiation_key(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_instantiation_key(k) or _has_instantiation_key(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_instantiation_key(v) for v in value)
    return False


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        flat = {}
        for key, value in node.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat or {prefix.rstrip("."): {}}
    return {prefix.rstrip("."): node}


# A key added to frcnn after a checkpoint was written is absent from its saved config: the run
# trained as with the key's default.
_DEFAULTS = _flatten(OmegaConf.to_container(_SCHEMA, enum_to_str=True))


def config_differences(saved: dict, current: dict) -> list[str]:
    """``key: saved -> current`` for every leaf key that differs, RESUMABLE_CHANGES excepted; a key
    the saved config lacks counts as the schema's default."""
    old, new = _flatten(saved), _flatten(current)
    keys = sorted(set(old) | set(new))
    return [
        f"{key}: {old.get(key, '<absent>')} -> {new.get(key, '<absent>')}"
        for key in keys
        if old.get(key, _DEFAULTS.get(key)) != new.get(key) and key not in RESUMABLE_CHANGES
    ]


def check_resume_config(saved: dict, cfg: TrainConfig, path: Path) -> None:
    """Raise ValueError naming the differing keys when ``cfg`` differs from a checkpoint's config."""
    differences = config_differences(saved, plain(cfg))
    if not differences:
        return
    if cfg.train.resume_allow_config_change:
        log.warning("resuming %s with a changed config: %s", path, "; ".join(differences))
        return
    raise ValueError(
        f"cannot resume {path}: the config differs from the checkpoint's in "
        f"{'; '.join(differences)}. Resume with the run's own settings (drop these overrides), "
        f"or pass train.resume_allow_config_change=true to resume with the new ones"
    )


def check_resumable(path: Path, checkpoint: Checkpoint) -> None:
    """Raise ValueError when ``checkpoint`` holds weights only (``best.pt``): nothing to resume."""
    if checkpoint.training is None:
        raise ValueError(
            f"train.resume={path}: it holds model weights only (as best.pt does); resume from "
            f"last.pt or a periodic checkpoint, or fine-tune with model.weights={path}"
        )


@dataclass
class ResumePoint:
    """The checkpoint ``train.resume=PATH`` names, read once before the run is set up."""

    path: Path
    checkpoint: Checkpoint


def config_to_resume(
    cfg: DictConfig, overrides: list[str], run_dir: Optional[Path] = None
) -> tuple[DictConfig, Optional[ResumePoint]]:
    """The config of a run and the checkpoint it resumes from.

    cfg: the composed train config (defaults and command line). overrides: the command line's
    (``HydraConfig.get().overrides.task``). For ``train.resume=PATH``, and for ``auto`` when
    ``run_dir/checkpoints`` holds a checkpoint (:func:`load_resume_checkpoint`'s choice), the
    result is the checkpoint's saved config (:func:`saved_train_config`) with the keys the
    overrides set taken from ``cfg`` (already parsed and typed by Hydra; :func:`overridden_keys`):
    a run started from another run's checkpoint resumes with that config too. Otherwise ``cfg``
    unchanged and no checkpoint (a fresh start). Raises FileNotFoundError, CheckpointError or
    ValueError, one line naming the file.
    """
    resume = cfg.train.resume
    if resume is None or (resume == "auto" and run_dir is None):
        return cfg, None
    path, checkpoint = load_resume_checkpoint(resume, CheckpointDir(Path(run_dir or ".") / "checkpoints", 0, False))
    if path is None:  # auto, and no checkpoint yet
        return cfg, None
    check_resumable(path, checkpoint)
    resumed = OmegaConf.structured(saved_train_config(checkpoint.config, path))
    for key in overridden_keys(overrides):
        OmegaConf.update(resumed, key, OmegaConf.select(cfg, key), merge=False)
    return resumed, ResumePoint(path, checkpoint)


def overridden_keys(overrides: list[str]) -> list[str]:
    """The config keys the command line's ``overrides`` set, in order: ``key=value`` sets ``key``;
    a config-group choice sets its node (``dataset=voc``: ``dataset``) or, for a ``_global_``
    preset (``debug=tiny``, ``experiment=...``), the keys its file sets and the groups it
    overrides. Hydra's own keys are not the run's. Raises ValueError for a deletion (``~key``):
    there is nothing to delete from a checkpoint's config."""
    keys = []
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        key = override.key_or_group
        if key.split(".")[0] == "hydra":
            continue
        if override.is_delete():
            raise ValueError(f"train.resume=PATH takes the checkpoint's config: ~{key} cannot apply to it")
        keys += _preset_keys(key, override.value()) if key in _config_groups() else [key]
    return keys


def _preset_keys(group: str, choice: str) -> list[str]:
    """The keys the ``group=choice`` file of configs/ sets (see :func:`overridden_keys`)."""
    text = (config_dir() / group / f"{choice}.yaml").read_text()
    if "# @package _global_" not in text.splitlines()[:1]:
        return [group]
    preset = OmegaConf.to_container(OmegaConf.create(text))
    defaults = preset.pop("defaults", None) or []
    overridden = [name.removeprefix("override /") for entry in defaults if isinstance(entry, dict) for name in entry]
    return overridden + list(_flatten(preset))
