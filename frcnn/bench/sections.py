"""The benchmark's sections, run in :data:`frcnn.bench.config.SECTIONS` order: each takes its
node of the benchmark config (:class:`frcnn.bench.config.BenchmarkConfig`) to its module's
entry function, and its result to ``benchmark.json``.

| section | module | ``benchmark.json`` |
| --- | --- | --- |
| (always) | :mod:`frcnn.bench.machine` | ``machine``: CPU model, threads, GPU, versions, commit |
| model | :mod:`frcnn.bench.model_speed` | top level: ``train_ratio``, ``infer_ratio``, ``fpn_*``, ... |
| data | :mod:`frcnn.bench.data_speed` | ``data`` |
| eval | :mod:`frcnn.bench.eval_speed` | ``eval`` |
| analysis | :mod:`frcnn.bench.analysis_speed` | ``analysis`` |
| val_loss | :mod:`frcnn.bench.val_loss_speed` | ``val_loss`` |
| export | :mod:`frcnn.bench.export_speed` | ``export``, and ``onnx_infer_ratio`` at the top level |
| zoo | :mod:`frcnn.bench.zoo` | ``zoo`` |
| accuracy | :mod:`frcnn.bench.accuracy` | ``accuracy`` |

The model and accuracy sections compose further configs (the FPN ``model`` node, the training
configs), so they run inside the Hydra application (``scripts/benchmark.py``).
"""

import json
import logging
from collections.abc import Callable
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from frcnn.bench.accuracy import benchmark_training_parity
from frcnn.bench.analysis_speed import benchmark_analysis
from frcnn.bench.data_speed import benchmark_data_pipeline
from frcnn.bench.eval_speed import benchmark_eval
from frcnn.bench.export_speed import benchmark_export, padded_test_size
from frcnn.bench.machine import machine_info
from frcnn.bench.model_speed import benchmark_models
from frcnn.bench.val_loss_speed import benchmark_val_loss
from frcnn.bench.zoo import benchmark_zoo
from frcnn.models.config import ModelConfig
from frcnn.utils.settings import plain, typed

log = logging.getLogger(__name__)


def run_sections(cfg, device: torch.device, run_dir: Path, write: Callable[[dict], None]) -> dict:
    """The ``benchmark.json`` content of ``cfg.sections`` on ``device`` (files such as profiles
    and training runs go to ``run_dir``); ``write(result)`` saves the results so far while the
    accuracy section trains (it takes hours)."""
    result: dict = {"machine": machine_info(device)}
    log.info("machine: %s", result["machine"])
    if "model" in cfg.sections:
        fpn_model_cfg = _fpn_model_config() if cfg.compare.fpn else None
        result.update(benchmark_models(cfg.model, cfg.compare, device, run_dir, cfg.seed, fpn_model_cfg))
    if "data" in cfg.sections:
        result["data"] = benchmark_data_pipeline(cfg.dataset, cfg.data.batch_size, cfg.data.num_workers,
                                                 cfg.data.num_batches, cfg.data.index_images)  # fmt: skip
        log.info("data pipeline: %s", result["data"])
    if "eval" in cfg.sections:
        result["eval"] = benchmark_eval(cfg.eval.num_images, cfg.eval.dets_per_image, cfg.eval.num_classes, cfg.seed)
        log.info("evaluation: %s", result["eval"])
    if "analysis" in cfg.sections:
        a = cfg.analysis
        result["analysis"] = benchmark_analysis(a.num_images, a.objects_per_image, a.dets_per_image, a.num_classes,
                                                a.repeats, cfg.seed)  # fmt: skip
        log.info("analysis: %s", {k: v for k, v in result["analysis"].items() if k != "tide"})
    if "val_loss" in cfg.sections:
        vl = cfg.val_loss
        result["val_loss"] = benchmark_val_loss(cfg.dataset, cfg.model, device, vl.batch_size, vl.num_batches,
                                                vl.repeats, cfg.seed)  # fmt: skip
        log.info("validation loss: %s", {k: result["val_loss"][k] for k in ("median_seconds", "extra_fraction")})
    if "export" in cfg.sections:
        result["export"] = _export(cfg)
        result["onnx_infer_ratio"] = result["export"]["onnx_infer_ratio"]
    if "zoo" in cfg.sections:
        zoo = cfg.zoo
        result["zoo"] = benchmark_zoo(list(zoo.models), zoo.warmup_iters, zoo.timed_iters, device, cfg.seed)
    if "accuracy" in cfg.sections:
        result["accuracy"] = _accuracy(cfg.accuracy, run_dir, lambda partial: write({**result, "accuracy": partial}))
    return result


def _fpn_model_config() -> ModelConfig:
    """The ``model`` node of this benchmark with ``model=resnet50_fpn``: the command line's other
    overrides (proposal counts, RoI sampling, ...) applied to the FPN preset."""
    task = [o for o in HydraConfig.get().overrides.task if not o.startswith("model=")]
    return typed(hydra.compose(config_name="benchmark", overrides=[*task, "model=resnet50_fpn"]).model)


def _export(cfg) -> dict:
    """Section export on ``cfg.export``'s image size, or a 4:3 image at the dataset's test size."""
    dataset = cfg.dataset
    size = cfg.export.image_size or padded_test_size(dataset.test_min_size, dataset.max_size, dataset.size_divisibility)
    options = {k: v for k, v in plain(cfg.export).items() if k != "image_size"}
    return benchmark_export(cfg.model, tuple(size), seed=cfg.seed, **options)


def _accuracy(accuracy, run_dir: Path, on_progress: Callable[[dict], None]) -> dict:
    """Section accuracy: every run trains with configs/train.yaml, ``accuracy.experiment``, its
    device and overrides, in ``run_dir/accuracy``."""
    # No validation loss: the torchvision reference returns no losses in eval mode.
    base = [f"experiment={accuracy.experiment}", f"device={accuracy.device}", "train.val_loss=false",
            *accuracy.overrides]  # fmt: skip

    def compose(overrides: list[str]) -> DictConfig:
        return hydra.compose(config_name="train", overrides=base + list(overrides))

    variants = {name: list(overrides) for name, overrides in accuracy.variants.items()}
    result = benchmark_training_parity(compose, list(accuracy.seeds), variants, accuracy.reference,
                                       run_dir / "accuracy", on_progress)  # fmt: skip
    result["experiment"] = accuracy.experiment
    log.info("accuracy: %s", json.dumps({k: result.get(k) for k in ("ours", "torchvision", "map_ratio")}))
    return result
