"""frcnn/evaluation/tensorboard.py: metric scalars and PR curves in TensorBoard."""

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from frcnn.evaluation import add_pr_curves, log_metrics
from frcnn.evaluation.tensorboard import pr_curve_counts
from frcnn.evaluation.voc_eval import ClassPR
from tests.evaluation.test_evaluator import evaluate_all


def test_pr_curve_counts_at_score_thresholds():
    curve = ClassPR(scores=np.array([0.95, 0.85, 0.65, 0.55]), tp=np.array([True, False, True, False]), num_positives=3)
    counts = pr_curve_counts(curve, num_thresholds=11)
    # thresholds 0, 0.1, ..., 1: detections kept = 4 up to 0.5, 3 at 0.6, 2 at 0.7 and 0.8, 1 at 0.9, 0 at 1
    np.testing.assert_array_equal(counts["true_positive_counts"], [2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 0])
    np.testing.assert_array_equal(counts["false_positive_counts"], [2, 2, 2, 2, 2, 2, 1, 1, 1, 0, 0])
    np.testing.assert_array_equal(counts["false_negative_counts"], [1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 3])
    np.testing.assert_allclose(counts["precision"][[0, 6, 9, 10]], [0.5, 2 / 3, 1.0, 1.0])
    np.testing.assert_allclose(counts["recall"][[0, 9, 10]], [2 / 3, 1 / 3, 0.0])


def test_tensorboard_scalars_and_pr_curves(fake_dataset, tmp_path):
    evaluator, metrics = evaluate_all(fake_dataset, noise=4.0)
    with SummaryWriter(tmp_path) as writer:
        log_metrics(writer, metrics, step=7)
        add_pr_curves(writer, evaluator.pr_curves, fake_dataset.class_names, step=7)
    events = EventAccumulator(str(tmp_path), size_guidance={"tensors": 0, "scalars": 0})
    events.Reload()
    scalars = events.Tags()["scalars"]
    assert {"eval/voc07_mAP", "eval/voc_mAP", "eval/coco_AP", "eval_AP/cat", "eval_AP/dog", "eval_AP/bird"} <= set(
        scalars
    )
    assert events.Scalars("eval/voc_mAP")[0].value == pytest.approx(metrics["voc"]["mAP"])
    assert events.Scalars("eval/voc_mAP")[0].step == 7
    assert {"pr/cat", "pr/dog", "pr/bird"} <= set(events.Tags()["tensors"])
