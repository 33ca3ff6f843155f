"""The training config composed as ``scripts/train.py`` composes it, from any directory, and a
config group's option read as the schema reads it."""

from collections.abc import Sequence
from pathlib import Path
from typing import Optional

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from frcnn.utils.settings import typed


def preset_warning(experiment: Optional[str], dataset_name: str) -> Optional[str]:
    """A warning when the CPU shapes preset is combined with another dataset, else None.

    ``experiment`` is the selected option of the ``experiment`` group (None for ``~experiment``).
    """
    if experiment == "shapes_cpu" and dataset_name != "shapes":
        return (
            f"experiment=shapes_cpu is the small CPU preset for the shapes dataset (ResNet-18 "
            f"from scratch, tiny images), but dataset={dataset_name}: for your own data of a few hundred "
            f"images use experiment=custom_cpu; for VOC or COCO a full-scale experiment (e.g. "
            f"experiment=voc0712_r50_c4)"
        )
    return None


def config_dir() -> Path:
    """The folder of ``train.yaml`` and its groups.

    In a source checkout (or an editable install) that is ``configs/`` at the repository top
    level; an installed wheel ships the same files inside the package, as ``frcnn/configs``.
    """
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "configs", package.parent / "configs"):
        if (candidate / "train.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"no configs/train.yaml next to the frcnn package ({package})")


def compose(overrides: Sequence[str] = (), config_name: str = "train") -> DictConfig:
    """The training config (``configs/train.yaml``) with command-line style ``overrides``, as
    ``scripts/train.py`` would see it, from any working directory; type-checked by the schema
    and value-checked (:func:`frcnn.utils.settings.typed`). ``frcnn.config.typed(cfg)`` gives
    its dataclasses (:class:`frcnn.config.TrainConfig`).

        cfg = frcnn.config.compose(overrides=["experiment=custom_cpu", "dataset=coco"])
    """
    if GlobalHydra.instance().is_initialized():
        raise RuntimeError("frcnn.config.compose cannot run inside a Hydra application: use the config it was given")
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        cfg = hydra_compose(config_name, overrides=list(overrides))
    if config_name == "train":  # the other commands' required values (???) are set at their command line
        typed(cfg)
    return cfg


def group_option(group: str, option: str) -> DictConfig:
    """The values ``configs/<group>/<option>.yaml`` sets, on top of those of the base options its
    ``defaults`` list names (options of the same group; ``_self_``, where the file's own values
    go, is last when not listed, as in Hydra)."""
    node = OmegaConf.load(config_dir() / group / f"{option}.yaml")
    entries = list(node.pop("defaults", None) or [])
    if "_self_" not in entries:
        entries.append("_self_")
    merged = OmegaConf.create()
    for entry in entries:
        merged = OmegaConf.merge(merged, node if entry == "_self_" else group_option(group, entry))
    return merged
