"""DetectionEvaluator (reset / process / evaluate) and run_inference over a test loader.

The evaluator keeps each image's detections in original-image coordinates, gathers them from
all ranks when torch.distributed is initialised, turns them into the predictions.json list and
scores that list: the metrics of a run and of its predictions.json read back are the same.
Given the model's validation losses too, it adds their mean as ``val_loss``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
import torch

from frcnn.data.transforms import boxes_to_original
from frcnn.evaluation.coco_eval import DEFAULT_COCO_BACKEND, check_coco_backend, coco_evaluation
from frcnn.evaluation.results_io import detections_from_predictions, predictions_from_detections
from frcnn.evaluation.val_loss import ValidationLoss, batch_seed, forked_rng, loss_targets, reseed
from frcnn.evaluation.voc_eval import ClassPR, Detections, voc_metrics, voc_pr_curves
from frcnn.models.faster_rcnn import model_inputs
from frcnn.utils.device import autocast
from frcnn.utils.dist import all_gather_object, broadcast_object, is_main_process
from frcnn.utils.progress import progress_bar

logger = logging.getLogger(__name__)


def score_predictions(
    dataset,
    predictions: list[dict],
    image_indices: Iterable[int] | None = None,
    coco_backend: str = DEFAULT_COCO_BACKEND,
) -> tuple[dict, list[ClassPR]]:
    """metrics.json dict (voc07, voc, coco, and coco_per_class: each class's COCO AP overall and
    by object size, ``{"<class>": {"AP", "APs", "APm", "APl"}}``, -1 undefined) and the per-class
    VOC PR curves of ``predictions``.

    predictions: COCO-results dicts with the dataset's ids (an unknown id raises ValueError).
    image_indices: the evaluated images (default all): objects of other images are not counted
    and predictions on them are an error.
    coco_backend: see :data:`frcnn.evaluation.coco_eval.COCO_BACKENDS` (the same numbers).
    """
    if image_indices is None:
        indices = np.arange(len(dataset.image_ids))
    else:
        indices = np.asarray(sorted(image_indices), dtype=np.int64)
    evaluated_ids = [dataset.image_ids[i] for i in indices]
    dets = detections_from_predictions(predictions, evaluated_ids, dataset.category_ids)
    dets.image_index = indices[dets.image_index]  # positions in evaluated_ids -> dataset indices

    gts = dataset.ground_truth()
    if len(indices) < len(dataset.image_ids):
        gts = gts.select(np.isin(gts.image_index, indices))

    curves = voc_pr_curves(dets, gts, num_classes=len(dataset.class_names))
    metrics = voc_metrics(curves, dataset.class_names)
    metrics["coco"], coco_classes = coco_evaluation(
        dataset.coco_gt(), predictions, image_ids=evaluated_ids, backend=coco_backend
    )
    metrics["coco_per_class"] = {
        name: coco_classes[category] for name, category in zip(dataset.class_names, dataset.category_ids)
    }
    return metrics, curves


def _gather(outputs: dict) -> dict:
    """Merge every rank's {dataset index: detections} (all_gather_object) when distributed."""
    merged = {}
    for part in all_gather_object(outputs):
        merged.update(part)
    return merged


class DetectionEvaluator:
    """VOC07 / VOC / COCO box metrics of a detector's outputs on a dataset.

    dataset: provides ``image_ids``, ``class_names``, ``category_ids``, ``ground_truth()`` and
    ``coco_gt()`` (the DATA API, :mod:`frcnn.data.ground_truth`). coco_backend: which COCOeval
    computes the ``coco`` numbers.
    After ``evaluate()``, ``pr_curves`` holds the per-class VOC PR curves (index label-1) and
    ``predictions()`` covers every rank's images.
    """

    def __init__(self, dataset, coco_backend: str = DEFAULT_COCO_BACKEND):
        self.dataset = dataset
        self.coco_backend = check_coco_backend(coco_backend)
        self.pr_curves: list[ClassPR] = []
        self.val_loss = ValidationLoss()
        self._outputs: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def reset(self) -> None:
        """Forget the detections and losses processed so far."""
        self._outputs = {}
        self.pr_curves = []
        self.val_loss.reset()

    def process(self, batch, detections: list[dict], losses: dict | None = None) -> None:
        """Record a batch's detections, mapped back to original-image coordinates.

        batch: a Batch (uses ``indices``, ``orig_sizes`` (h, w) and ``scales`` Tensor[B, 2] (sx, sy),
        resized = original * scale). detections: the model's eval output, per image ``boxes``
        [N, 4] xyxy in resized coordinates, ``scores`` [N], ``labels`` [N] in 1..K. Boxes are
        divided by the scale and clipped to the original image ``[0, w] x [0, h]``. losses: the
        model's validation losses of the batch (scalar tensors), if computed.
        """
        if losses is not None:
            self.val_loss.process(batch.indices, losses)
        for index, (height, width), scale, output in zip(batch.indices, batch.orig_sizes, batch.scales, detections):
            self._outputs[int(index)] = (
                boxes_to_original(output["boxes"], scale, height, width).numpy(),
                output["scores"].detach().float().cpu().numpy(),
                output["labels"].detach().cpu().numpy().astype(np.int64),
            )

    def _detections(self) -> Detections:
        indices = sorted(self._outputs)
        outputs = [self._outputs[i] for i in indices]
        counts = [len(scores) for _, scores, _ in outputs]
        return Detections(
            image_index=np.repeat(np.asarray(indices, dtype=np.int64), counts),
            labels=np.concatenate([labels for _, _, labels in outputs]) if outputs else np.zeros(0, dtype=np.int64),
            scores=np.concatenate([scores for _, scores, _ in outputs]) if outputs else np.zeros(0),
            boxes=np.concatenate([boxes for boxes, _, _ in outputs]) if outputs else np.zeros((0, 4)),
        )

    def predictions(self) -> list[dict]:
        """The processed detections as predictions.json dicts (dataset ids, original coordinates)."""
        dataset = self.dataset
        return predictions_from_detections(
            self._detections(), dataset.image_ids, dataset.category_ids, dataset.class_names
        )

    def evaluate(self) -> dict:
        """Gather all ranks' detections and return the metrics.json dict (on every rank), with
        ``val_loss`` when losses were processed.

        Only processed images are evaluated (their objects count, others' do not). When
        distributed, rank 0 computes the metrics and broadcasts them.
        """
        self._outputs = _gather(self._outputs)
        self.val_loss.gather()
        if len(self._outputs) < len(self.dataset.image_ids):
            logger.warning("evaluating %d of %d images", len(self._outputs), len(self.dataset.image_ids))
        result = None
        if is_main_process():
            # one rank scores (COCOeval is slow, and CPU ranks share cores), then shares the result
            result = score_predictions(self.dataset, self.predictions(), self._outputs.keys(), self.coco_backend)
        metrics, self.pr_curves = broadcast_object(result)
        if self.val_loss:
            metrics["val_loss"] = self.val_loss.summarize()
        return metrics


def run_inference(
    model: torch.nn.Module,
    loader,
    evaluator: DetectionEvaluator,
    device,
    amp: torch.dtype | None = None,
    val_loss_seed: int | None = None,
) -> dict:
    """Run ``model`` over ``loader`` (Batch items) and return ``evaluator.evaluate()``.

    The model runs in eval mode under no_grad (autocast to ``amp``, e.g. ``torch.bfloat16``, as
    :func:`frcnn.utils.device.autocast_dtype` gives it for the run's AMP setting; None: full
    precision) and is put back in
    its previous mode afterwards; the progress bar shows on rank 0 only. With ``val_loss_seed``,
    the model also gets the batch's targets (as training filters them) and returns its losses
    from the same forward; their RoI sampling is seeded per batch (see frcnn.evaluation.val_loss).
    The caller's RNG streams are left as they were either way.
    """
    device = torch.device(device)
    is_main = is_main_process()
    was_training = model.training
    model.eval()
    evaluator.reset()
    use_difficult = getattr(evaluator.dataset, "use_difficult", True)
    try:
        # The fork also covers the loader, whose iterator draws its base seed from the global RNG.
        with forked_rng(device), torch.no_grad(), autocast(device, amp):
            with progress_bar(len(loader), "inference", "batch", disable=not is_main) as bar:
                for batch in loader:
                    batch = batch.to(device, non_blocking=True)
                    bar.update(1)
                    if val_loss_seed is None:
                        sizes, _ = model_inputs(model, batch.image_sizes, None, device)
                        evaluator.process(batch, model(batch.images, sizes))
                        continue
                    reseed(batch_seed(val_loss_seed, batch.indices), device)
                    targets = loss_targets(batch.targets, use_difficult)
                    output = model(batch.images, *model_inputs(model, batch.image_sizes, targets, device))
                    if not isinstance(output, tuple):
                        raise TypeError(
                            f"{type(model).__name__} returns no (detections, losses) for targets in eval "
                            "mode: it cannot give a validation loss (train.val_loss=false)"
                        )
                    evaluator.process(batch, *output)
    finally:
        model.train(was_training)
    return evaluator.evaluate()


def format_metrics_table(metrics: dict) -> str:
    """Human-readable summary: mAPs, the COCO numbers and a per-class AP table (-1 shows as n/a)."""

    def number(value: float) -> str:
        return f"{value:.4f}" if value >= 0 else "   n/a"

    lines = [
        f"VOC07 mAP (11-point) {number(metrics['voc07']['mAP'])}   VOC mAP (area) {number(metrics['voc']['mAP'])}",
        "COCO " + "  ".join(f"{name} {number(value)}" for name, value in metrics["coco"].items()),
    ]
    if "val_loss" in metrics:
        lines.append(
            "validation loss " + "  ".join(f"{name} {value:.4f}" for name, value in metrics["val_loss"].items())
        )
    names = list(metrics["voc"]["AP"])
    width = max([len("class")] + [len(name) for name in names])
    lines.append(f"{'class':<{width}}  AP(voc07)  AP(voc)")
    for name in names:
        ap07, ap = number(metrics["voc07"]["AP"][name]), number(metrics["voc"]["AP"][name])
        lines.append(f"{name:<{width}}  {ap07:>9}  {ap:>7}")
    return "\n".join(lines)
