"""Evaluation during training: the test split, its metrics, their log and TensorBoard views."""

import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import Optional

import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader
from torchvision.ops import box_convert

from frcnn.data import build_test_loader
from frcnn.data.check import check_images
from frcnn.data.image_io import read_image
from frcnn.data.validation import raise_if_any
from frcnn.engine.events import TrainingEvents
from frcnn.evaluation import DetectionEvaluator, format_metrics_table, run_inference
from frcnn.evaluation.analysis import analyze
from frcnn.evaluation.val_loss import has_annotations
from frcnn.utils.dist import is_main_process
from frcnn.utils.visualize import draw_detections

log = logging.getLogger(__name__)

VIS_SCORE_THRESHOLD = 0.3
VIS_MIN_SIDE = 320


@dataclass
class EvaluationSplit:
    """What a training run evaluates on: the test loader (every rank its shard), the evaluator
    over its dataset, whether the validation loss is computed and whether the error analysis is
    logged (``evaluation.analysis.tensorboard``)."""

    loader: DataLoader
    evaluator: DetectionEvaluator
    val_loss: bool
    analysis: bool = False

    @property
    def dataset(self):
        return self.loader.dataset


def build_evaluation_split(cfg: DictConfig) -> EvaluationSplit:
    """The test split of the train config ``cfg``; the validation loss when ``train.val_loss`` is
    set and the split has annotated objects (else a warning).

    Every test image is decoded once here, before training starts: a missing, truncated or
    wrongly sized one raises :class:`~frcnn.data.DatasetError` now, as bad training data does,
    rather than in an evaluation after hours of training. Every process checks them all, so
    that all of them stop alike."""
    loader = build_test_loader(cfg.dataset, cfg.train.eval_batch_size, bucketed=cfg.compile)
    raise_if_any(check_images(loader.dataset.index, cfg.dataset.num_workers))
    val_loss = cfg.train.val_loss and has_annotations(loader.dataset)
    if cfg.train.val_loss and not val_loss:
        log.warning("train.val_loss: the test split has no annotated objects, no validation loss")
    evaluator = DetectionEvaluator(loader.dataset, coco_backend=cfg.evaluation.coco_backend)
    return EvaluationSplit(loader, evaluator, val_loss, cfg.evaluation.analysis.tensorboard)


def draw_test_images(dataset, predictions: list[dict], count: int) -> list[torch.Tensor]:
    """The first ``count`` test images with ground truth (dashed, captioned with its class, with a
    legend) and predictions (class colours, scores >= 0.3) drawn, each uint8 ``[3, H, W]`` at its
    original size, or enlarged to a short side of :data:`VIS_MIN_SIDE` when smaller (TensorBoard
    shows an image at its own size: captions on a 96 px image could not be read).

    ``predictions`` are predictions.json dicts (``bbox`` [x, y, w, h] in original coordinates).
    """
    by_image = defaultdict(list)
    for p in predictions:
        by_image[p["image_id"]].append(p)
    label_of = {c: label for label, c in enumerate(dataset.category_ids, start=1)}
    images = []
    for i in range(min(count, len(dataset))):
        gt = dataset.get_annotation(i)
        dets = by_image[dataset.image_ids[i]]
        boxes = box_convert(torch.tensor([p["bbox"] for p in dets], dtype=torch.float32).reshape(-1, 4), "xywh", "xyxy")
        labels = torch.tensor([label_of[p["category_id"]] for p in dets], dtype=torch.int64)
        scores = torch.tensor([p["score"] for p in dets], dtype=torch.float32)
        image = read_image(dataset.image_path(i))
        images.append(
            draw_detections(
                image,
                boxes,
                labels,
                scores,
                dataset.class_names,
                score_threshold=VIS_SCORE_THRESHOLD,
                ground_truth=gt["boxes"],
                ground_truth_labels=gt["labels"],
                min_side=VIS_MIN_SIDE,
            )
        )
    return images


def evaluate(
    model: torch.nn.Module,
    evaluator: DetectionEvaluator,
    loader,
    device: torch.device,
    amp: Optional[torch.dtype],
    vis_images: int,
    iteration: int,
    events: TrainingEvents,
    val_loss_seed: Optional[int] = None,
    ema: bool = False,
    analysis: bool = False,
) -> dict:
    """Run ``model`` over the test ``loader`` (every rank its shard; the evaluator gathers them)
    and return the metrics.json dict, with ``val_loss`` when ``val_loss_seed`` is given (see
    :func:`frcnn.evaluation.run_inference`). Rank 0 logs the table and records the TensorBoard
    views, with ``analysis`` the error analysis too (TIDE at IoU 0.5 and the confusion matrix, at
    the suggested threshold: :func:`frcnn.evaluation.analysis.analyze`); for ``ema`` (the EMA
    weights: :meth:`TrainingEvents.ema_evaluation`) the scalars only."""
    metrics = run_inference(model, loader, evaluator, device, amp=amp, val_loss_seed=val_loss_seed)
    if is_main_process():
        weights = " of the EMA weights" if ema else ""
        log.info("evaluation%s at iteration %d:\n%s", weights, iteration, format_metrics_table(metrics))
        if ema:
            events.ema_evaluation(iteration, metrics)
        else:
            predictions = evaluator.predictions()
            images = draw_test_images(evaluator.dataset, predictions, vis_images)
            events.evaluation(iteration, metrics, evaluator.pr_curves, evaluator.dataset.class_names, images)
            if analysis and len(evaluator.pr_curves):
                errors, _ = analyze(evaluator.dataset, predictions, metrics, evaluator.pr_curves, coco_ious=False,
                                    num_worst=0)  # fmt: skip
                events.analysis(iteration, errors)
    return metrics
