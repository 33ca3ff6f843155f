"""``torch.compile`` of a detector: the ``compile=true`` option of train.py, evaluate.py and predict.py.

The model is compiled in place (:meth:`torch.nn.Module.compile`), so its ``state_dict`` keys, its
checkpoints and its ONNX export are those of the eager model. The detector's data-dependent steps
(NMS keeps a variable number of boxes; the RoIs are gathered by index) are captured in the graph
rather than breaking it (:func:`configure_dynamo`). Image sizes vary from batch to batch: the first
change of size recompiles the graph with symbolic heights and widths (PyTorch's automatic dynamic
shapes), after which every size runs the same compiled code.

Inductor keeps what it compiled on disk (:func:`cache_dir`), so a resumed run, a second evaluation
or the next prediction loads the kernels instead of compiling them again.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)

CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"


def cache_dir() -> Path:
    """Where compiled kernels are kept: ``$TORCHINDUCTOR_CACHE_DIR`` if set, else
    ``$XDG_CACHE_HOME/frcnn/inductor`` (``~/.cache/frcnn/inductor``), which outlives a reboot
    (Inductor's own default is under ``/tmp``)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "frcnn" / "inductor"


def configure_dynamo() -> None:
    """Let TorchDynamo capture operators whose output size depends on the data (``nonzero``, NMS)
    and tensor-to-scalar reads, instead of breaking the graph at each; point Inductor's cache at
    :func:`cache_dir`."""
    torch._dynamo.config.capture_dynamic_output_shape_ops = True
    torch._dynamo.config.capture_scalar_outputs = True
    os.environ.setdefault(CACHE_ENV, str(cache_dir()))


def compile_model(model: nn.Module, mode: str | None = None) -> nn.Module:
    """``model`` compiled in place with ``torch.compile`` (``mode``: None for the default, or
    ``"reduce-overhead"`` for CUDA graphs, ``"max-autotune"``); returns ``model``. Compilation
    happens at the first call of each mode (train / eval) and shape class."""
    configure_dynamo()
    model.compile(mode=mode)
    log.info("torch.compile: the model compiles at its first call (kernels cached in %s)", os.environ[CACHE_ENV])
    return model
