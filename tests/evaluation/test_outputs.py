"""Evaluation side outputs: distributed gather, VOC devkit files, TensorBoard, drawings, benchmark."""

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from frcnn.evaluation import DetectionEvaluator, add_pr_curves, log_metrics, write_voc_devkit_results
from frcnn.evaluation.tensorboard import pr_curve_counts
from frcnn.evaluation.voc_eval import ClassPR, Detections
from tests.evaluation.test_evaluator import evaluate_all
from tests.helpers.fakes import batch_of, evaluate_on_rank, gt_detections, make_fake_dataset


def test_evaluate_gathers_detections_from_all_ranks(tmp_path):
    mp.spawn(evaluate_on_rank, args=(2, tmp_path / "init", tmp_path / "result"), nprocs=2)
    dataset = make_fake_dataset()
    evaluator = DetectionEvaluator(dataset)
    for rank in range(2):
        indices = list(range(rank, len(dataset), 2))
        detections = gt_detections(dataset, indices, (2.0, 0.5), noise=4.0, seed=0)
        evaluator.process(batch_of(dataset, indices, (2.0, 0.5)), detections)
    expected = evaluator.evaluate()
    for rank in range(2):
        result = torch.load(f"{tmp_path / 'result'}.{rank}", weights_only=False)
        assert result["metrics"] == expected
        assert result["predictions"] == len(evaluator.predictions())


def test_voc_devkit_result_files(fake_dataset, tmp_path):
    dataset = make_fake_dataset(image_ids=[f"2007_{i:06d}" for i in range(12)])
    boxes = np.array([[0.0, 1.0, 10.0, 20.5], [3, 4, 5, 6]])
    dets = Detections(np.array([0, 5]), np.array([2, 2]), np.array([0.75, 0.5]), boxes)
    paths = write_voc_devkit_results(tmp_path, dets, dataset.image_ids, dataset.class_names, "test")
    assert [p.name for p in paths] == ["comp4_det_test_cat.txt", "comp4_det_test_dog.txt", "comp4_det_test_bird.txt"]
    assert paths[0].read_text() == ""
    # devkit boxes are 1-based inclusive: (x1 + 1, y1 + 1, x2, y2)
    lines = ["2007_000000 0.750000 1.00 2.00 10.00 20.50", "2007_000005 0.500000 4.00 5.00 5.00 6.00"]
    assert paths[1].read_text().splitlines() == lines


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
