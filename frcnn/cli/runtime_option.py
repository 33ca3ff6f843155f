"""The model scripts/predict.py, evaluate.py and analyze.py run, by ``runtime``
(:func:`inference_model`): a checkpoint's detector in PyTorch, or an exported model with ONNX
Runtime (the ``onnx=DIR/model.onnx`` option) or OpenVINO (``runtime=openvino model=DIR/model.xml``).

``onnx=PATH`` is short for ``runtime=onnxruntime model=PATH``, the older spelling, still accepted;
``model=DIR/model.xml`` (OpenVINO IR) selects ``runtime=openvino`` unless a runtime is given.
``model`` is a config group in ``configs/`` (``model=resnet50_c4`` in train.py), so Hydra would
read ``model=DIR/model.onnx`` as a group choice; :func:`route_model_argument` hands either
spelling to Hydra as ``exported_model=DIR/model.onnx`` (with ``runtime=onnxruntime`` for
``onnx=`` unless the command line names a runtime) before Hydra parses the command line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from hydra.core.override_parser.overrides_parser import OverridesParser

from frcnn.checkpoint.restore import open_for_inference
from frcnn.checkpoint.saved_config import checkpoint_run_config, saved_train_config
from frcnn.config.commands import EvaluateConfig, PredictConfig, Runtime
from frcnn.config.schema import TrainConfig
from frcnn.data.config import DatasetConfig
from frcnn.export.runtime import load_exported
from frcnn.models.config import ModelConfig
from frcnn.utils.compile import compile_model
from frcnn.utils.device import resolve_device


def route_model_argument(argv: list[str]) -> list[str]:
    """``argv`` with ``onnx=PATH`` and ``model=PATH`` (not ``model.key=...``) renamed
    ``exported_model=PATH``; unless a runtime is given, ``onnx=`` also selects ``runtime=onnxruntime``
    and a ``.xml`` model ``runtime=openvino``."""
    routed = []
    runtime = None
    for arg in argv:
        for name in ("onnx=", "model="):
            if arg.startswith(name):
                path = arg[len(name) :]
                runtime = "openvino" if path.endswith(".xml") else "onnxruntime" if name == "onnx=" else runtime
                arg = f"exported_model={path}"
        routed.append(arg)
    if runtime is not None and not any(arg.startswith("runtime=") for arg in argv):
        routed.append(f"runtime={runtime}")
    return routed


def check_runtime(cfg: EvaluateConfig | PredictConfig, overrides: list[str]) -> None:
    """Raise ValueError for a runtime and model source that do not go together."""
    if cfg.runtime == Runtime.torch:
        if cfg.exported_model is not None:
            raise ValueError(f"{cfg.exported_model} is an exported model: give it as onnx={cfg.exported_model}")
        return
    if cfg.exported_model is None:
        raise ValueError(
            f"runtime={cfg.runtime} needs onnx=DIR/model.onnx or model=DIR/model.xml (written by scripts/export.py)"
        )
    if cfg.checkpoint is not None:
        raise ValueError(f"{cfg.exported_model} is an exported model; drop checkpoint=")
    if cfg.compile:
        raise ValueError(f"compile=true compiles a checkpoint's PyTorch model; runtime={cfg.runtime} optimises its own")
    if cfg.runtime == Runtime.onnxruntime and Path(cfg.exported_model).suffix == ".xml":
        raise ValueError(f"{cfg.exported_model} is OpenVINO IR: run it with runtime=openvino")
    baked = [o.input_line for o in OverridesParser.create().parse_overrides(list(overrides))
             if o.key_or_group.startswith("model.")]  # fmt: skip
    if baked:
        raise ValueError(
            f"{', '.join(baked)}: an exported model's settings are fixed in the graph; export again to change them"
        )


@dataclass
class InferenceModel:
    """What evaluate and predict run, whichever the runtime: ``model(images, image_sizes)``
    returns per-image detections, on ``device``."""

    model: Any  # a FasterRCNN (runtime=torch) or an ExportedDetector (onnxruntime, openvino)
    dataset_cfg: DatasetConfig  # the checkpoint's dataset node, the command's overrides applied
    class_names: list[str]
    category_ids: list[int]
    iteration: int  # the checkpoint's (the exported one's)
    device: torch.device
    trained: Optional[TrainConfig] = None  # runtime=torch: the checkpoint's train config


def inference_model(cfg: EvaluateConfig | PredictConfig, overrides: list[str]) -> InferenceModel:
    """The model of ``cfg.runtime``: the checkpoint's detector on ``cfg.device`` (compiled with
    ``compile=true``), or ``cfg.exported_model`` in ONNX Runtime or OpenVINO on the CPU; either with the
    dataset config of the run it comes from, the command line's ``dataset.*`` overrides applied
    (and, for a checkpoint, its ``model.*`` ones); ``cfg.threads`` sets the CPU threads of the
    runtime (PyTorch's intra-op threads for a checkpoint). ``overrides``: the command line's task
    overrides. Raises ValueError for a runtime and model source that do not go together."""
    check_runtime(cfg, overrides)

    def configs(saved: Mapping[str, Any]) -> tuple[DatasetConfig, ModelConfig]:
        return checkpoint_run_config(cfg, saved, overrides)

    if cfg.runtime != Runtime.torch:
        exported = load_exported(Path(cfg.exported_model), cfg.threads, runtime=str(cfg.runtime))
        dataset_cfg, _ = configs(exported.metadata.config)
        iteration = exported.metadata.checkpoint.get("iteration") or 0
        cpu = torch.device("cpu")
        return InferenceModel(exported, dataset_cfg, exported.class_names, exported.category_ids, iteration, cpu)
    if cfg.checkpoint is None:
        raise ValueError("give checkpoint=PATH, or onnx=DIR/model.onnx")
    opened = open_for_inference(cfg.checkpoint, configs)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    model = opened.model.to(device)
    if cfg.compile:
        compile_model(model, inference=True)
    checkpoint = opened.checkpoint
    return InferenceModel(
        model,
        opened.dataset_cfg,
        list(checkpoint.class_names),
        list(checkpoint.category_ids),
        checkpoint.iteration,
        device,
        saved_train_config(checkpoint.config, cfg.checkpoint),
    )
