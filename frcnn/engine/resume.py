"""Resuming a run with the config it was started with.

``train.resume=auto hydra.run.dir=RUN`` reuses the overrides saved in ``RUN/.hydra/overrides.yaml``
(:func:`with_saved_overrides`), so the original command line need not be repeated; keys given
again on the new command line win. A resume whose config still differs from the checkpoint's in
what shapes the model, the data or the optimisation stops, naming the keys
(:func:`check_resume_config`), unless ``train.resume_allow_config_change=true``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

# Keys that may change between the interrupted run and its continuation: the run's length,
# reporting and bookkeeping, not what is trained or how.
RESUMABLE_CHANGES = (
    "train.max_iters", "train.eval_period", "train.eval_batch_size", "train.checkpoint_period",
    "train.keep_checkpoints", "train.resume", "train.resume_allow_config_change", "train.log_period",
    "train.vis_images", "train.eval_at_end", "dataset.num_workers", "device",
)  # fmt: skip


def override_key(override: str) -> str:
    """``+train.x=1`` -> ``train.x``; ``~experiment`` -> ``experiment``."""
    return override.split("=", 1)[0].lstrip("+~")


def with_saved_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
    """Command-line arguments with a resumed run's saved overrides put first.

    Only for ``train.resume=auto`` together with ``hydra.run.dir=RUN`` where
    ``RUN/.hydra/overrides.yaml`` exists; saved overrides whose key the command line gives again
    are dropped. Returns (new argv, the saved overrides reused).
    """
    given = {override_key(arg): arg.split("=", 1)[-1] for arg in argv if "=" in arg or arg.startswith("~")}
    run_dir = given.get("hydra.run.dir")
    if given.get("train.resume") != "auto" or run_dir is None or "-m" in argv or "--multirun" in argv:
        return argv, []
    saved_file = Path(run_dir) / ".hydra" / "overrides.yaml"
    if not saved_file.is_file():
        return argv, []
    reused = [o for o in OmegaConf.to_container(OmegaConf.load(saved_file)) if override_key(o) not in given]
    return reused + argv, reused


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        flat = {}
        for key, value in node.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat or {prefix.rstrip("."): {}}
    return {prefix.rstrip("."): node}


def config_differences(saved: dict, current: dict) -> list[str]:
    """``key: saved -> current`` for every leaf key that differs, RESUMABLE_CHANGES excepted."""
    old, new = _flatten(saved), _flatten(current)
    keys = sorted(set(old) | set(new))
    return [f"{key}: {old.get(key, '<absent>')} -> {new.get(key, '<absent>')}" for key in keys
            if old.get(key) != new.get(key) and key not in RESUMABLE_CHANGES]


def check_resume_config(saved: dict, cfg: DictConfig, path: Path) -> None:
    """Raise ValueError naming the differing keys when ``cfg`` differs from a checkpoint's config."""
    current = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    differences = config_differences(saved, current)
    if not differences:
        return
    if cfg.train.get("resume_allow_config_change", False):
        log.warning("resuming %s with a changed config: %s", path, "; ".join(differences))
        return
    raise ValueError(f"cannot resume {path}: the config differs from the checkpoint's in "
                     f"{'; '.join(differences)}. Resume with the run's own settings (drop these overrides), "
                     f"or pass train.resume_allow_config_change=true to resume with the new ones")
