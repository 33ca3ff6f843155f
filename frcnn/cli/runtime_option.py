"""The ``onnx=DIR/model.onnx`` option of scripts/predict.py and scripts/evaluate.py: run an
exported model with ONNX Runtime.

``onnx=PATH`` is short for ``runtime=onnxruntime model=PATH``, the older spelling, still accepted.
``model`` is a config group in ``configs/`` (``model=resnet50_c4`` in train.py), so Hydra would
read ``model=DIR/model.onnx`` as a group choice; :func:`route_model_argument` hands either
spelling to Hydra as ``exported_model=DIR/model.onnx`` (with ``runtime=onnxruntime`` for
``onnx=`` unless the command line names a runtime) before Hydra parses the command line.
"""

from __future__ import annotations

from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig

from frcnn.checkpoint.saved_config import checkpoint_run_config
from frcnn.export.runtime import OnnxDetector

RUNTIMES = ("torch", "onnxruntime")


def route_model_argument(argv: list[str]) -> list[str]:
    """``argv`` with ``onnx=PATH`` and ``model=PATH`` (not ``model.key=...``) renamed
    ``exported_model=PATH``; ``onnx=`` also selects ``runtime=onnxruntime`` unless a runtime is given."""
    routed = []
    for arg in argv:
        for name in ("onnx=", "model="):
            if arg.startswith(name):
                arg = f"exported_model={arg[len(name) :]}"
        routed.append(arg)
    if any(arg.startswith("onnx=") for arg in argv) and not any(arg.startswith("runtime=") for arg in argv):
        routed.append("runtime=onnxruntime")
    return routed


def check_runtime(cfg: DictConfig, overrides: list[str]) -> None:
    """Raise ValueError for a runtime and model source that do not go together."""
    if cfg.runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {list(RUNTIMES)}, got {cfg.runtime!r}")
    if cfg.runtime == "torch":
        if cfg.exported_model is not None:
            raise ValueError(f"{cfg.exported_model} is an exported model: give it as onnx={cfg.exported_model}")
        return
    if cfg.exported_model is None:
        raise ValueError("runtime=onnxruntime needs onnx=DIR/model.onnx (written by scripts/export.py)")
    if cfg.checkpoint is not None:
        raise ValueError("onnx=DIR/model.onnx runs an exported model; drop checkpoint=")
    if cfg.compile:
        raise ValueError("compile=true compiles a checkpoint's PyTorch model; ONNX Runtime optimises onnx= itself")
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
