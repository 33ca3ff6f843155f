"""Section ``model``: a training step and inference of this model against torchvision's
``FasterRCNN`` composed as the same model, on identical weights and inputs, in one process.

The contenders, built from one seeded initialisation:

- ``ours``: the ``model`` config (the benchmark's uses RoIAlign, like-for-like with the
  reference); ``ours_roi_pool``: the same weights pooling with RoIPool;
- ``torchvision``: :func:`frcnn.bench.reference.torchvision_detector` of ``ours`` (the same
  trunk and layer4 weights, anchors, RPN head, proposal counts, RoI sampling sizes, RoI pooling
  and predictor), behind frcnn's call contract (:class:`frcnn.bench.reference.ReferenceDetector`);
- ``fpn`` and ``fpn_torchvision``: the same pair for a ResNet-FPN ``model`` config (optional);
- ``ours_compiled`` and ``fpn_compiled`` (``compare.compiled``): copies of ``ours`` and ``fpn``
  under ``torch.compile`` (:func:`frcnn.utils.compile.compile_model`): one trains, one infers
  compiled for inference (frozen weights) as evaluate.py and predict.py compile it; each is
  called once before the rounds, to compile (``compile_seconds``).

All of them take one synthetic batch whose images have one size, so torchvision's transform
resizes nothing. A training step is the engine's own (:func:`frcnn.engine.trainer.train_step`:
forward under autocast, backward, SGD update, and the per-step finite checks training runs),
alike for every contender. Rounds interleave every contender's step, then every contender's
inference (:mod:`frcnn.bench.timing`); the result holds the medians and
``<pair>_ratio = ours / torchvision's`` (below 1: ours is faster), and under ``compiled`` the
compiled models' ratios to torchvision's eager model, their speedups over ours eager
(``train_speedup = ours eager / ours compiled``, above 1: compiling is faster) and the compile
times.
"""

import copy
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from frcnn.bench.reference import ReferenceDetector, torchvision_detector
from frcnn.bench.timing import interleaved_times, medians
from frcnn.data.batching import Batch
from frcnn.engine.trainer import train_step
from frcnn.models import build_model
from frcnn.models.faster_rcnn import model_inputs
from frcnn.utils.compile import compile_model
from frcnn.utils.device import autocast, autocast_dtype
from frcnn.utils.settings import plain

log = logging.getLogger(__name__)

PHASES = ("train", "infer")
# benchmark.json's ratios: key -> (phase, our contender, torchvision's)
RATIOS = {
    "train_ratio": ("train", "ours", "torchvision"),
    "infer_ratio": ("infer", "ours", "torchvision"),
    "train_ratio_roi_pool": ("train", "ours_roi_pool", "torchvision"),
    "infer_ratio_roi_pool": ("infer", "ours_roi_pool", "torchvision"),
    "fpn_train_ratio": ("train", "fpn", "fpn_torchvision"),
    "fpn_infer_ratio": ("infer", "fpn", "fpn_torchvision"),
}
# benchmark.json's "compiled" ratios: key -> (phase, numerator, denominator)
COMPILED_RATIOS = {
    "train_ratio": ("train", "ours_compiled", "torchvision"),
    "infer_ratio": ("infer", "ours_compiled", "torchvision"),
    "fpn_train_ratio": ("train", "fpn_compiled", "fpn_torchvision"),
    "fpn_infer_ratio": ("infer", "fpn_compiled", "fpn_torchvision"),
    "train_speedup": ("train", "ours", "ours_compiled"),
    "infer_speedup": ("infer", "ours", "ours_compiled"),
    "fpn_train_speedup": ("train", "fpn", "fpn_compiled"),
    "fpn_infer_speedup": ("infer", "fpn", "fpn_compiled"),
}


def synthetic_batch(compare, device: torch.device, generator: torch.Generator) -> Batch:
    """``compare.batch_size`` normalised images ``[B, 3, H, W]`` at ``compare.image_size`` (h, w),
    unpadded, each with ``compare.boxes_per_image`` random boxes (x1, y1, x2, y2) in pixels, inside
    the image, sides 32..min(H, W)/2, and labels in 1..``compare.num_classes``."""
    height, width = compare.image_size
    count, n = compare.batch_size, compare.boxes_per_image
    images = torch.randn(count, 3, height, width, generator=generator)
    targets = []
    for _ in range(count):
        size = 32 + torch.rand(n, 2, generator=generator) * (min(height, width) / 2 - 32)  # (n, 2) as (w, h)
        corner = torch.rand(n, 2, generator=generator) * (torch.tensor([width, height]) - size)
        labels = torch.randint(1, compare.num_classes + 1, (n,), generator=generator)
        targets.append({"boxes": torch.cat([corner, corner + size], dim=1).to(device), "labels": labels.to(device)})
    sizes = [(height, width)] * count
    return Batch(images=images.to(device), image_sizes=sizes, targets=targets, image_ids=list(range(count)),
                 indices=list(range(count)), orig_sizes=sizes, scales=torch.ones(count, 2, device=device))  # fmt: skip


def build_contenders(model_cfg, num_classes: int, device: torch.device, fpn_model_cfg=None) -> dict[str, nn.Module]:
    """``ours``, ``ours_roi_pool`` and ``torchvision`` (and with ``fpn_model_cfg`` ``fpn`` and
    ``fpn_torchvision``), in this order from the current RNG state; see the module docstring."""
    ours = build_model(model_cfg, num_classes).to(device)
    roi_pool = copy.deepcopy(ours)
    roi_pool.roi_head.box_pooler.kind = "roi_pool"
    reference = ReferenceDetector(torchvision_detector(ours, model_cfg))
    models = {"ours": ours, "ours_roi_pool": roi_pool, "torchvision": reference}
    if fpn_model_cfg is not None:
        fpn = build_model(fpn_model_cfg, num_classes).to(device)
        models["fpn"] = fpn
        models["fpn_torchvision"] = ReferenceDetector(torchvision_detector(fpn, fpn_model_cfg))
    return models


@dataclass
class Contender:
    """A model with what its training step needs: SGD (momentum 0.9) over its trainable
    parameters and a GradScaler, enabled under float16 autocast only."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    iterations: int = 0
    inference_model: Optional[nn.Module] = None  # what infer() runs, when not ``model``

    @classmethod
    def of(cls, model: nn.Module, lr: float, amp: Optional[torch.dtype]) -> "Contender":
        params = [p for p in model.parameters() if p.requires_grad]
        device = next(model.parameters()).device
        scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
        return cls(model, torch.optim.SGD(params, lr=lr, momentum=0.9), scaler)

    def step(self, batch: Batch, amp: Optional[torch.dtype]) -> None:
        """One training step, as training takes it (no gradient clipping)."""
        self.model.train()
        self.iterations += 1
        train_step(self.model, batch, self.optimizer, self.scaler, amp, clip_grad_norm=None,
                   iteration=self.iterations)  # fmt: skip

    def infer(self, batch: Batch, amp: Optional[torch.dtype]) -> list[dict]:
        """Detections of ``batch`` in eval mode: per image ``boxes`` [N, 4] (x1, y1, x2, y2), ``scores``, ``labels``."""
        model = self.inference_model or self.model
        model.eval()
        with torch.inference_mode(), autocast(batch.images.device, amp):
            return model(batch.images, model_inputs(model, batch.image_sizes, None, batch.images.device)[0])


def compile_contenders(contenders: dict[str, Contender], batch: Batch, amp: Optional[torch.dtype], lr: float) -> dict:
    """Add ``<name>_compiled`` for ``ours`` and ``fpn`` (when present): a compiled copy that
    trains, and one compiled for inference (frozen weights) as evaluate.py and predict.py compile
    it, each called once to compile. Returns ``compile_seconds``: ``{"<name>_<phase>": seconds}`` of
    those first calls (compilation included)."""
    seconds = {}
    for name in [n for n in ("ours", "fpn") if n in contenders]:
        eager = contenders[name].model
        compiled = Contender.of(compile_model(copy.deepcopy(eager)), lr, amp)
        compiled.inference_model = compile_model(copy.deepcopy(eager), inference=True)
        for phase in PHASES:
            start = time.perf_counter()
            (compiled.step if phase == "train" else compiled.infer)(batch, amp)
            seconds[f"{name}_{phase}"] = time.perf_counter() - start
            log.info("compiled %s for %s in %.1f s", name, phase, seconds[f"{name}_{phase}"])
        contenders[f"{name}_compiled"] = compiled
    return seconds


def _runs(contenders: Mapping[str, Contender], batch: Batch, amp: Optional[torch.dtype]) -> dict:
    """``runs[phase][name]``: a call of that contender's step or inference on ``batch``."""

    def run(contender: Contender, phase: str):
        return lambda: (contender.step if phase == "train" else contender.infer)(batch, amp)

    return {phase: {name: run(c, phase) for name, c in contenders.items()} for phase in PHASES}


def write_profiles(contenders: Mapping[str, Contender], batch: Batch, amp: Optional[torch.dtype],
                   run_dir: Path) -> dict:  # fmt: skip
    """One training step and one inference of each contender under ``torch.profiler``; each
    table (25 rows by self CPU time) goes to ``run_dir/profile_<name>_<phase>.txt``.
    Returns ``{"<name>_<phase>": file name}``."""
    files = {}
    for phase, runs in _runs(contenders, batch, amp).items():
        for name, run in runs.items():
            with torch.profiler.profile() as profiler:
                run()
            path = run_dir / f"profile_{name}_{phase}.txt"
            path.write_text(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
            files[f"{name}_{phase}"] = path.name
    return files


def speed_report(compare, device: torch.device, amp: Optional[torch.dtype], times: dict) -> dict:
    """``benchmark.json``'s model section from ``times[phase][name]`` (seconds): the settings,
    the device, ``median_seconds``, ``train_ratio``/``infer_ratio`` (ours / torchvision's),
    the same ``_roi_pool`` and, when the FPN pair was timed, ``fpn_train_ratio``/``fpn_infer_ratio``."""
    median = medians(times)
    result = {
        "settings": plain(compare),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "amp": str(amp).removeprefix("torch.") if amp is not None else "off",
        "threads": torch.get_num_threads(),
        "median_seconds": median,
    }
    result.update(_ratios(RATIOS, median))  # the FPN pair is optional
    compiled = _ratios(COMPILED_RATIOS, median)
    if compiled:
        result["compiled"] = compiled
    result["times"] = times
    return result


def _ratios(table: Mapping[str, tuple[str, str, str]], median: dict) -> dict[str, float]:
    """``{key: median[phase][a] / median[phase][b]}`` for the ``(phase, a, b)`` of ``table`` whose
    two contenders were timed."""
    return {key: median[phase][a] / median[phase][b] for key, (phase, a, b) in table.items()
            if a in median[phase] and b in median[phase]}  # fmt: skip


def benchmark_models(model_cfg, compare, device: torch.device, run_dir: Path, seed: int = 0,
                     fpn_model_cfg=None) -> dict:  # fmt: skip
    """Time the contenders of ``model_cfg`` (and ``fpn_model_cfg``) with the ``compare`` settings
    (:class:`frcnn.bench.config.CompareConfig`) on ``device``; :func:`speed_report`'s dict, plus
    ``profiles`` (files in ``run_dir``) with ``compare.profile``."""
    torch.manual_seed(seed)
    amp = autocast_dtype(compare.amp, device, key="compare.amp")
    models = build_contenders(model_cfg, compare.num_classes, device, fpn_model_cfg)
    contenders = {name: Contender.of(model, compare.lr, amp) for name, model in models.items()}
    batch = synthetic_batch(compare, device, torch.Generator().manual_seed(seed))
    compile_seconds = compile_contenders(contenders, batch, amp, compare.lr) if compare.compiled else None
    times = interleaved_times(_runs(contenders, batch, amp), compare.warmup_iters, compare.timed_iters, device)
    result = speed_report(compare, device, amp, times)
    if compile_seconds is not None:
        result["compiled"]["compile_seconds"] = compile_seconds
    if compare.profile:
        result["profiles"] = write_profiles(contenders, batch, amp, run_dir)
    _log_summary(result)
    return result


def _log_summary(result: dict) -> None:
    median = result["median_seconds"]
    for phase, title in (("train", "train step"), ("infer", "inference")):
        log.info("%s: ours %.3fs (RoIPool %.3fs), torchvision %.3fs -> ratio %.3f", title, median[phase]["ours"],
                 median[phase]["ours_roi_pool"], median[phase]["torchvision"], result[f"{phase}_ratio"])  # fmt: skip
    if "fpn_train_ratio" in result:
        log.info("FPN: train ratio %.3f, inference ratio %.3f", result["fpn_train_ratio"], result["fpn_infer_ratio"])
    if "compiled" in result:
        log.info("compiled: %s", {k: round(v, 3) for k, v in result["compiled"].items() if k != "compile_seconds"})
