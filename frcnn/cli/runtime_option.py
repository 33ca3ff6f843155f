"""The ``runtime=onnxruntime model=DIR/model.onnx`` option of scripts/predict.py and
scripts/evaluate.py.

``model`` is a config group in ``configs/`` (``model=resnet50_c4``), so Hydra would read
``model=DIR/model.onnx`` as a group choice; :func:`route_model_argument` hands it to Hydra as
``exported_model=DIR/model.onnx`` instead, before Hydra parses the command line.
"""

from __future__ import annotations

from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig

from frcnn.checkpoint.saved_config import checkpoint_run_config
from frcnn.export.runtime import OnnxDetector

RUNTIMES = ("torch", "onnxruntime")


def route_model_argument(argv: list[str]) -> list[str]:
    """``argv`` with ``model=PATH`` (not ``model.key=...``) renamed ``exported_model=PATH``."""
    return [f"exported_model={arg[len('model=') :]}" if arg.startswith("model=") else arg for arg in argv]


def check_runtime(cfg: DictConfig, overrides: list[str]) -> None:
    """Raise ValueError for a runtime and model source that do not go together."""
    if cfg.runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {list(RUNTIMES)}, got {cfg.runtime!r}")
    if cfg.runtime == "torch":
        if cfg.exported_model is not None:
            raise ValueError(f"model={cfg.exported_model} is an exported model: add runtime=onnxruntime")
        return
    if cfg.exported_model is None:
        raise ValueError("runtime=onnxruntime needs model=DIR/model.onnx (written by scripts/export.py)")
    if cfg.checkpoint is not None:
        raise ValueError("runtime=onnxruntime runs model=DIR/model.onnx; drop checkpoint=")
    baked = [o.input_line for o in OverridesParser.create().parse_overrides(list(overrides))
             if o.key_or_group.startswith("model.")]  # fmt: skip
    if baked:
        raise ValueError(
            f"{', '.join(baked)}: an exported model's settings are fixed in the graph; export again to change them"
        )


def exported_detector(cfg: DictConfig, overrides: list[str]) -> tuple[OnnxDetector, DictConfig]:
    """The ONNX Runtime detector of ``cfg.exported_model`` and the dataset config of the
    checkpoint it was exported from (``dataset.*`` overrides applied, as for a checkpoint)."""
    detector = OnnxDetector(Path(cfg.exported_model))
    dataset_cfg, _ = checkpoint_run_config(cfg, detector.metadata.config, overrides)
    return detector, dataset_cfg
