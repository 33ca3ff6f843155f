"""``torch.compile`` of a detector: the ``compile=true`` option of train.py, evaluate.py and predict.py.

The model is compiled in place (:meth:`torch.nn.Module.compile`), so its ``state_dict`` keys, its
checkpoints and its ONNX export are those of the eager model. The detector's data-dependent steps
(NMS keeps a variable number of boxes; the RoIs are gathered by index) are captured in the graph
rather than breaking it (:func:`configure_dynamo`). Each input shape met is compiled once, with
static shapes (a recompilation with symbolic heights and widths, PyTorch's automatic dynamic
shapes, took over ten minutes for the training graph on a 2-core CPU), so the callers keep the
shapes few: batches are padded to a handful of sizes (:func:`frcnn.data.batching.size_buckets`),
and :func:`frcnn.models.faster_rcnn.model_inputs` hands the model its image sizes as a tensor
and its targets padded to a bucketed width (a list's ints and lengths would each be a value to
compile for). Up to :data:`RECOMPILE_LIMIT` shapes are compiled before the rest run eagerly.

Inductor keeps what it compiled on disk (:func:`cache_dir`), so a resumed run, a second evaluation
or the next prediction loads the kernels instead of compiling them again.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from torch import nn

from frcnn.utils.cache import frcnn_cache_dir

log = logging.getLogger(__name__)

CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"
RECOMPILE_LIMIT = 32  # batch sizes compiled per mode (PyTorch's default: 8)


def cache_dir() -> Path:
    """Where compiled kernels are kept: ``$TORCHINDUCTOR_CACHE_DIR`` if the user set it, else
    ``$XDG_CACHE_HOME/frcnn/inductor`` (``~/.cache/frcnn/inductor``), which outlives a reboot
    (Inductor's own default is under ``/tmp``, and Inductor writes it into the environment
    variable once it has looked it up: that value is not a choice of the user's)."""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    chosen = os.environ.get(CACHE_ENV)
    if chosen and os.path.abspath(chosen) != os.path.abspath(default_cache_dir()):
        return Path(chosen)
    return Path(frcnn_cache_dir("inductor"))


def configure_dynamo() -> None:
    """Let TorchDynamo capture operators whose output size depends on the data (``nonzero``, NMS)
    and tensor-to-scalar reads, instead of breaking the graph at each; compile each batch size
    statically (up to :data:`RECOMPILE_LIMIT`); point Inductor's cache at :func:`cache_dir`."""
    torch._dynamo.config.capture_dynamic_output_shape_ops = True
    torch._dynamo.config.capture_scalar_outputs = True
    torch._dynamo.config.automatic_dynamic_shapes = False
    torch._dynamo.config.recompile_limit = RECOMPILE_LIMIT
    _register_nms_shape()
    os.environ[CACHE_ENV] = str(cache_dir())


def _nms_shape(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """The output of ``torchvision::nms`` for the compiler: 0 to N kept indices. torchvision's own
    shape function declares at least 2 (``create_unbacked_symint``'s default minimum), so a
    compiled graph would fail on an image whose NMS keeps one box or none."""
    torch._check(boxes.dim() == 2 and boxes.size(1) == 4, lambda: f"boxes must be [N, 4], got {list(boxes.shape)}")
    torch._check(scores.dim() == 1 and scores.size(0) == boxes.size(0), lambda: "one score per box")
    kept = torch.library.get_ctx().new_dynamic_size(min=0)
    torch._check(kept <= boxes.size(0))
    return boxes.new_empty(kept, dtype=torch.long)


def _register_nms_shape() -> None:
    import torchvision  # noqa: F401  (registers torchvision::nms, whose shape function is replaced)

    torch.library.register_fake("torchvision::nms", _nms_shape, allow_override=True)


def is_compiled(model: nn.Module) -> bool:
    """Whether ``model`` (or the module a DDP wrapper holds) was compiled in place by
    :func:`compile_model` (``nn.Module.compile`` keeps the compiled callable on the module)."""
    model = getattr(model, "module", model)
    return getattr(model, "_compiled_call_impl", None) is not None


def compile_model(model: nn.Module, mode: str | None = None, inference: bool = False) -> nn.Module:
    """``model`` compiled in place with ``torch.compile`` (``mode``: None for the default, or
    ``"reduce-overhead"`` for CUDA graphs, ``"max-autotune"``); returns ``model``. Compilation
    happens at the first call of each mode (train / eval) and shape class.

    ``inference``: for a model whose weights no longer change (evaluate.py, predict.py), compile
    with Inductor's freezing: the weights become constants of the graph, so frozen BatchNorm folds
    into the convolutions and the CPU's oneDNN convolutions take pre-packed weights (what a
    2-core CPU gains by compiling is in docs/benchmarks.md). Never for a
    model that trains on: its compiled inference would keep the weights it was compiled with.
    """
    configure_dynamo()
    if inference:
        model.compile(options={"freezing": True})
    else:
        model.compile(mode=mode)
    log.info("torch.compile: the model compiles at its first call (kernels cached in %s)", os.environ[CACHE_ENV])
    return model
