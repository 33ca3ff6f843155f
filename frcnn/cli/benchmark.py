"""Benchmark this Faster R-CNN against torchvision's, plus the data and evaluation pipelines.

    python scripts/benchmark.py                                   # CPU-sized defaults, a few minutes
    python scripts/benchmark.py sections=[model] compare.image_size=[600,800] compare.timed_iters=20
    python scripts/benchmark.py device=cuda compare.batch_size=4 model.rpn.pre_nms_top_n_train=12000
    python scripts/benchmark.py device=cuda sections=[model] compare.amp=bf16      # both models under autocast
    python scripts/benchmark.py sections=[accuracy]               # training parity, ~1 h per seed pair on a CPU
    python scripts/benchmark.py sections=[accuracy] accuracy.seeds=[0,1] accuracy.reference=false \
        '+accuracy.variants.offset_half=["model.anchors.offset=0.5"]'       # an ablation beside "ours"

Section ``model`` times, in one process and interleaved, a training step (forward, backward,
optimiser step) and inference of this model and of torchvision's ``FasterRCNN`` composed as
the same R50-C4: the same trunk (conv1..layer3) and layer4 weights, the same 9 anchors, RPN
head, proposal counts, RoI sampling sizes, 14x14 RoIAlign and predictor weights, on identical
inputs of one size (so torchvision's transform does not resize). Ours runs with RoIAlign
(``model.roi_head.pooler``) for the like-for-like ratio and is also timed with RoIPool.
Sections ``data``, ``eval`` and ``export`` (CPU latency of the ONNX export; writes
``onnx_infer_ratio``) call ``frcnn.bench.data_speed``, ``frcnn.bench.eval_speed`` and
``frcnn.bench.export_speed``. Section ``accuracy`` (not in the default list: it trains) trains
frcnn and the torchvision composition with identical data, initial weights, optimiser and
schedule for each seed (``frcnn.bench.accuracy``) and reports their mAP; ``map_ratio`` =
ours / torchvision's. Running the same command with ``hydra.run.dir=`` of an interrupted run
reuses finished runs.
Everything is written to ``benchmark.json`` in the run directory; ratios are
``our median time / torchvision's median time`` (below 1: ours is faster).
"""

import copy
import json
import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import hydra
import torch
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from frcnn.cli.errors import run_command
from frcnn.config import config_dir
from frcnn.data.config import DatasetConfig
from frcnn.bench.accuracy import benchmark_training_parity
from frcnn.utils.device import autocast_dtype, resolve_device
from frcnn.models import ModelConfig, build_model
from frcnn.bench.reference import torchvision_detector

log = logging.getLogger("benchmark")
SECTIONS = ("model", "data", "eval", "val_loss", "export", "accuracy")


@dataclass
class CompareConfig:
    batch_size: int = 2
    image_size: list[int] = field(default_factory=lambda: [384, 480])  # (h, w)
    num_classes: int = 20
    boxes_per_image: int = 4
    warmup_iters: int = 2
    timed_iters: int = 5
    lr: float = 1e-4
    profile: bool = False
    fpn: bool = True  # also time the ResNet-FPN pair (fpn_train_ratio, fpn_infer_ratio)
    amp: str = "off"  # off | bf16 | fp16: autocast around both models' forward passes (CUDA only, as train.amp)


@dataclass
class DataBenchConfig:
    batch_size: int = 8  # the shapes_cpu training batch
    num_workers: Optional[int] = None  # null: the dataset's own default (dataset.num_workers)
    num_batches: int = 30


@dataclass
class EvalBenchConfig:
    num_images: int = 4952
    dets_per_image: int = 100
    num_classes: int = 20


@dataclass
class AccuracyBenchConfig:
    experiment: str = "shapes_cpu"  # the training preset both detectors are trained with
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    overrides: list[str] = field(default_factory=list)  # training overrides for every run
    # frcnn runs: name -> extra overrides (ablations); "ours" is the one map_ratio compares.
    variants: dict[str, list[str]] = field(default_factory=lambda: {"ours": []})
    reference: bool = True  # also train torchvision's detector composed as the same model
    device: str = "cpu"


@dataclass
class ExportBenchConfig:
    image_size: Optional[list[int]] = None  # (h, w); null: a 4:3 image at the dataset's test size
    batch_size: int = 4
    num_classes: int = 20
    threads: Optional[int] = None  # ONNX Runtime intra-op threads; null: PyTorch's thread count
    optimization: str = "all"  # ONNX Runtime graph optimisation level of the headline ratio
    warmup_iters: int = 2
    timed_iters: int = 10


@dataclass
class ValLossBenchConfig:  # section val_loss: the evaluation forward with and without the losses
    batch_size: int = 4
    num_batches: int = 5
    repeats: int = 3


@dataclass
class BenchmarkConfig:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    sections: list[str] = field(default_factory=lambda: [s for s in SECTIONS if s != "accuracy"])
    device: str = "auto"
    seed: int = 0
    threads: Optional[int] = None
    compare: CompareConfig = field(default_factory=CompareConfig)
    data: DataBenchConfig = field(default_factory=DataBenchConfig)
    eval: EvalBenchConfig = field(default_factory=EvalBenchConfig)
    accuracy: AccuracyBenchConfig = field(default_factory=AccuracyBenchConfig)
    export: ExportBenchConfig = field(default_factory=ExportBenchConfig)
    val_loss: ValLossBenchConfig = field(default_factory=ValLossBenchConfig)


ConfigStore.instance().store(name="benchmark_schema", node=BenchmarkConfig)


def synthetic_batch(cfg: CompareConfig, device: torch.device, generator: torch.Generator):
    """Normalised images ``[B, 3, H, W]`` and targets with random boxes 32..H/2 px and labels."""
    height, width = cfg.image_size
    images = torch.randn(cfg.batch_size, 3, height, width, generator=generator)
    n = cfg.boxes_per_image
    targets = []
    for _ in range(cfg.batch_size):
        size = 32 + torch.rand(n, 2, generator=generator) * (min(height, width) / 2 - 32)
        corner = torch.rand(n, 2, generator=generator) * (torch.tensor([width, height]) - size)
        targets.append(
            {
                "boxes": torch.cat([corner, corner + size], dim=1).to(device),
                "labels": torch.randint(1, cfg.num_classes + 1, (n,), generator=generator).to(device),
            }
        )
    return images.to(device), targets


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _train_step(name, model, optimizer, images, sizes, targets, amp: Optional[torch.dtype] = None, scaler=None):
    """One SGD step; under ``amp`` the forward pass is autocast and ``scaler`` (fp16) scales the loss."""
    with torch.autocast(images.device.type, dtype=amp, enabled=amp is not None):
        if name.endswith("torchvision"):
            losses = model(list(images), targets)
        else:
            losses = model(images, sizes, targets)
    optimizer.zero_grad(set_to_none=True)
    loss = sum(losses.values())
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()


def _infer(name, model, images, sizes, amp: Optional[torch.dtype] = None):
    with torch.inference_mode(), torch.autocast(images.device.type, dtype=amp, enabled=amp is not None):
        return model(list(images)) if name.endswith("torchvision") else model(images, sizes)


def compare_with_torchvision(cfg, device: torch.device, run_dir: Path, fpn_model_cfg=None) -> dict:
    """Interleaved median timings of a training step and of inference; see the module docstring.
    With ``fpn_model_cfg`` (a ResNet-FPN ``model`` node) the FPN pair is timed in the same loop."""
    compare = cfg.compare
    torch.manual_seed(cfg.seed)
    ours = build_model(cfg.model, compare.num_classes).to(device)
    models = {
        "ours": ours,
        "ours_roi_pool": copy.deepcopy(ours),
        "torchvision": torchvision_detector(ours, cfg.model),
    }
    models["ours_roi_pool"].roi_head.box_pooler.kind = "roi_pool"
    if fpn_model_cfg is not None:
        models["fpn"] = build_model(fpn_model_cfg, compare.num_classes).to(device)
        models["fpn_torchvision"] = torchvision_detector(models["fpn"], fpn_model_cfg)
    optimizers = {
        name: torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=compare.lr, momentum=0.9)
        for name, m in models.items()
    }
    amp = autocast_dtype(compare.amp, device, key="compare.amp")
    scalers = {name: torch.amp.GradScaler(device.type) if amp == torch.float16 else None for name in models}
    images, targets = synthetic_batch(compare, device, torch.Generator().manual_seed(cfg.seed))
    sizes = [tuple(compare.image_size)] * compare.batch_size
    times = {phase: {name: [] for name in models} for phase in ("train", "infer")}
    for iteration in range(compare.warmup_iters + compare.timed_iters):
        for phase in ("train", "infer"):
            for name, model in models.items():
                model.train(phase == "train")
                _sync(device)
                start = time.perf_counter()
                if phase == "train":
                    _train_step(name, model, optimizers[name], images, sizes, targets, amp, scalers[name])
                else:
                    _infer(name, model, images, sizes, amp)
                _sync(device)
                if iteration >= compare.warmup_iters:
                    times[phase][name].append(time.perf_counter() - start)
        log.info("iteration %d/%d done", iteration + 1, compare.warmup_iters + compare.timed_iters)
    medians = {phase: {name: statistics.median(t) for name, t in per.items()} for phase, per in times.items()}
    result = {
        "settings": OmegaConf.to_container(compare),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "amp": str(amp).removeprefix("torch.") if amp is not None else "off",
        "threads": torch.get_num_threads(),
        "median_seconds": medians,
        "train_ratio": medians["train"]["ours"] / medians["train"]["torchvision"],
        "infer_ratio": medians["infer"]["ours"] / medians["infer"]["torchvision"],
        "train_ratio_roi_pool": medians["train"]["ours_roi_pool"] / medians["train"]["torchvision"],
        "infer_ratio_roi_pool": medians["infer"]["ours_roi_pool"] / medians["infer"]["torchvision"],
        "times": times,
    }
    if fpn_model_cfg is not None:
        result["fpn_train_ratio"] = medians["train"]["fpn"] / medians["train"]["fpn_torchvision"]
        result["fpn_infer_ratio"] = medians["infer"]["fpn"] / medians["infer"]["fpn_torchvision"]
    if compare.profile:
        result["profiles"] = _profile(models, optimizers, images, sizes, targets, run_dir)
    return result


def _profile(models, optimizers, images, sizes, targets, run_dir: Path) -> dict:
    """One training step and one inference of each model under torch.profiler; tables to files."""
    files = {}
    for name, model in models.items():
        for phase in ("train", "infer"):
            model.train(phase == "train")
            with torch.profiler.profile() as profiler:
                if phase == "train":
                    _train_step(name, model, optimizers[name], images, sizes, targets)
                else:
                    _infer(name, model, images, sizes)
            path = run_dir / f"profile_{name}_{phase}.txt"
            path.write_text(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
            files[f"{name}_{phase}"] = path.name
    return files


def _require(module: str):
    """Import a benchmark module of another package; a clear error when it is not there."""
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as error:
        raise ImportError(f"benchmark section needs {module} ({error}); drop the section with sections=[...]") from error


def compose_training_config(accuracy) -> Callable[[list[str]], DictConfig]:
    """``overrides -> cfg``: configs/train.yaml with the accuracy section's preset and overrides."""
    # No validation loss: the torchvision reference returns no losses in eval mode.
    base = [f"experiment={accuracy.experiment}", f"device={accuracy.device}", "train.val_loss=false", *accuracy.overrides]
    return lambda overrides: hydra.compose(config_name="train", overrides=base + list(overrides))


def run_sections(cfg, device: torch.device, run_dir: Path, write: Callable[[dict], None]) -> dict:
    unknown = set(cfg.sections) - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown benchmark sections {sorted(unknown)}; choose from {list(SECTIONS)}")
    result = {}
    if "model" in cfg.sections:
        fpn_model_cfg = None
        if cfg.compare.fpn:  # the same benchmark config with model=resnet50_fpn
            task = [o for o in HydraConfig.get().overrides.task if not o.startswith("model=")]
            fpn_model_cfg = hydra.compose(config_name="benchmark", overrides=[*task, "model=resnet50_fpn"]).model
        result.update(compare_with_torchvision(cfg, device, run_dir, fpn_model_cfg))
        log.info(
            "train step: ours %.3fs (RoIPool %.3fs), torchvision %.3fs -> ratio %.3f",
            result["median_seconds"]["train"]["ours"],
            result["median_seconds"]["train"]["ours_roi_pool"],
            result["median_seconds"]["train"]["torchvision"],
            result["train_ratio"],
        )
        if "fpn_train_ratio" in result:
            log.info("FPN: train ratio %.3f, inference ratio %.3f", result["fpn_train_ratio"], result["fpn_infer_ratio"])
        log.info(
            "inference:  ours %.3fs (RoIPool %.3fs), torchvision %.3fs -> ratio %.3f",
            result["median_seconds"]["infer"]["ours"],
            result["median_seconds"]["infer"]["ours_roi_pool"],
            result["median_seconds"]["infer"]["torchvision"],
            result["infer_ratio"],
        )
    if "data" in cfg.sections:
        data = _require("frcnn.bench.data_speed")
        result["data"] = data.benchmark_data_pipeline(cfg.dataset, cfg.data.batch_size, cfg.data.num_workers, cfg.data.num_batches)
        log.info("data pipeline: %s", result["data"])
    if "eval" in cfg.sections:
        evaluation = _require("frcnn.bench.eval_speed")
        result["eval"] = evaluation.benchmark_eval(cfg.eval.num_images, cfg.eval.dets_per_image, cfg.eval.num_classes, cfg.seed)
        log.info("evaluation: %s", result["eval"])
    if "accuracy" in cfg.sections:
        accuracy = cfg.accuracy

        def progress(partial: dict) -> None:
            result["accuracy"] = partial
            write(result)

        result["accuracy"] = benchmark_training_parity(
            compose_training_config(accuracy),
            list(accuracy.seeds),
            {name: list(overrides) for name, overrides in accuracy.variants.items()},
            accuracy.reference,
            run_dir / "accuracy",
            progress,
        )
        result["accuracy"]["experiment"] = accuracy.experiment
        log.info("accuracy: %s", json.dumps({k: result["accuracy"].get(k) for k in ("ours", "torchvision", "map_ratio")}))
    if "export" in cfg.sections:
        export = _require("frcnn.bench.export_speed")
        size = cfg.export.image_size or export.padded_test_size(cfg.dataset.test_min_size, cfg.dataset.max_size, cfg.dataset.size_divisibility)
        options = {k: v for k, v in OmegaConf.to_container(cfg.export).items() if k != "image_size"}
        result["export"] = export.benchmark_export(cfg.model, tuple(size), seed=cfg.seed, **options)
        result["onnx_infer_ratio"] = result["export"]["onnx_infer_ratio"]
    if "val_loss" in cfg.sections:
        evaluation = _require("frcnn.bench.eval_speed")
        vl = cfg.val_loss
        result["val_loss"] = evaluation.benchmark_val_loss(cfg.dataset, cfg.model, device, vl.batch_size, vl.num_batches,
                                                           vl.repeats, cfg.seed)  # fmt: skip
        log.info("validation loss: %s", {k: result["val_loss"][k] for k in ("median_seconds", "extra_fraction")})
    return result


@hydra.main(config_path=str(config_dir()), config_name="benchmark", version_base=None)
def main(cfg) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    path = run_dir / "benchmark.json"

    def write(result: dict) -> None:
        path.write_text(json.dumps(result, indent=2))

    write(run_sections(cfg, resolve_device(cfg.device), run_dir, write))
    log.info("wrote %s", path)


def command() -> None:
    """``python scripts/benchmark.py``."""
    run_command(main)


if __name__ == "__main__":
    command()
