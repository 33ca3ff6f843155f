"""DetectionEvaluator, predictions files and the COCO path against direct pycocotools runs.

Every test that scores COCO numbers runs with each COCO backend (the ``coco_backend`` fixture).
"""

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from frcnn.evaluation import (
    DetectionEvaluator,
    format_metrics_table,
    load_predictions,
    run_inference,
    save_predictions,
    score_predictions,
)
from frcnn.evaluation.coco_eval import COCO_BACKENDS, coco_metrics
from frcnn.evaluation.results_io import detections_from_predictions, predictions_from_detections
from frcnn.evaluation.voc_eval import Detections
from tests.helpers.fakes import batch_of, evaluate_on_rank, gt_detections, make_fake_dataset


@pytest.fixture(params=COCO_BACKENDS)
def coco_backend(request):
    return request.param


def evaluate_all(dataset, scale=(2.0, 0.5), noise=0.0, batch_size=4, coco_backend="faster_coco_eval"):
    evaluator = DetectionEvaluator(dataset, coco_backend=coco_backend)
    evaluator.reset()
    for start in range(0, len(dataset), batch_size):
        indices = range(start, min(start + batch_size, len(dataset)))
        evaluator.process(batch_of(dataset, indices, scale), gt_detections(dataset, indices, scale, noise, seed=start))
    return evaluator, evaluator.evaluate()


def test_ground_truth_as_predictions_scores_one(fake_dataset, coco_backend):
    _, metrics = evaluate_all(fake_dataset, coco_backend=coco_backend)
    assert metrics["voc07"]["mAP"] == pytest.approx(1.0)
    assert metrics["voc"]["mAP"] == pytest.approx(1.0)
    assert all(ap == pytest.approx(1.0) for ap in metrics["voc"]["AP"].values())
    for name in ("AP", "AP50", "AP75", "AR100"):
        assert metrics["coco"][name] == pytest.approx(1.0)
    assert set(metrics) == {"voc07", "voc", "coco", "coco_per_class"}
    assert list(metrics["coco_per_class"]) == fake_dataset.class_names
    assert all(aps["AP"] == pytest.approx(1.0) for aps in metrics["coco_per_class"].values())
    assert list(metrics["coco"]) == [
        "AP",
        "AP50",
        "AP75",
        "APs",
        "APm",
        "APl",
        "AR1",
        "AR10",
        "AR100",
        "ARs",
        "ARm",
        "ARl",
    ]


def test_process_maps_boxes_to_original_coordinates_and_clips(fake_dataset):
    evaluator = DetectionEvaluator(fake_dataset)
    height, width = fake_dataset.annotations[1]["height"], fake_dataset.annotations[1]["width"]
    # scale (sx, sy) = (2, 0.5): resized = original * scale
    boxes = torch.tensor([[20.0, 5.0, 60.0, 25.0], [-4.0, -2.0, 2.0 * width + 10, 0.5 * height + 10]])
    detections = [{"boxes": boxes, "scores": torch.tensor([0.9, 0.8]), "labels": torch.tensor([1, 3])}]
    evaluator.process(batch_of(fake_dataset, [1], (2.0, 0.5)), detections)
    predictions = evaluator.predictions()
    expected = {"image_id": fake_dataset.image_ids[1], "category_id": 3, "bbox": [10.0, 10.0, 20.0, 40.0],
                "category_name": fake_dataset.class_names[0]}  # fmt: skip
    assert predictions[0] == dict(expected, score=pytest.approx(0.9))
    assert predictions[1]["bbox"] == [0.0, 0.0, float(width), float(height)]
    assert predictions[1]["category_id"] == 12


def test_coco_metrics_equal_direct_pycocotools_run_on_the_files(fake_dataset, tmp_path, coco_backend):
    import json

    # the fake set has images without objects, crowd and difficult boxes, non-contiguous ids
    evaluator, metrics = evaluate_all(fake_dataset, noise=4.0, coco_backend=coco_backend)
    gt_file, predictions_file = tmp_path / "gt.json", tmp_path / "predictions.json"
    gt_file.write_text(json.dumps(fake_dataset.coco_dict()))
    save_predictions(predictions_file, evaluator.predictions())

    coco_gt = COCO(str(gt_file))
    coco_eval = COCOeval(coco_gt, coco_gt.loadRes(str(predictions_file)), iouType="bbox")
    coco_eval.evaluate()
    coco_eval.accumulate()
    coco_eval.summarize()
    np.testing.assert_allclose(list(metrics["coco"].values()), coco_eval.stats, rtol=0, atol=1e-12)
    assert 0.0 < metrics["coco"]["AP"] < 1.0


@pytest.mark.parametrize("case", ["all", "subset", "empty", "crowd_only_hits", "one_class", "voc_ids_tied_scores"])
def test_coco_backends_give_the_same_twelve_numbers(fake_dataset, case):
    if case == "voc_ids_tied_scores":  # file-stem ids, not in sorted order; ties broken by image order
        fake_dataset = make_fake_dataset(image_ids=[f"2007_{(i * 7) % 12:06d}" for i in range(12)])
    evaluator, _ = evaluate_all(fake_dataset, noise=4.0)
    predictions, image_ids = evaluator.predictions(), None
    if case == "subset":  # a shard: images 0, 3, 6, 9 (with and without objects)
        image_ids = [fake_dataset.image_ids[i] for i in (0, 3, 6, 9)]
        predictions = [p for p in predictions if p["image_id"] in image_ids]
    elif case == "empty":
        predictions = []
    elif case == "crowd_only_hits":  # detections on the crowd boxes only: matched to crowd, ignored
        predictions = [
            {
                "image_id": fake_dataset.image_ids[i],
                "category_id": fake_dataset.category_ids[int(label) - 1],
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "score": 0.5,
            }
            for i, ann in enumerate(fake_dataset.annotations)
            for (x1, y1, x2, y2), label, crowd in zip(ann["boxes"].tolist(), ann["labels"], ann["iscrowd"])
            if crowd
        ]
        assert predictions
    elif case == "one_class":
        predictions = [p for p in predictions if p["category_id"] == 7]
    elif case == "voc_ids_tied_scores":
        predictions = [dict(p, score=0.5) for p in predictions]
    results = [coco_metrics(fake_dataset.coco_gt(), predictions, image_ids, backend) for backend in COCO_BACKENDS]
    assert list(results[0]) == list(results[1])
    np.testing.assert_allclose(list(results[0].values()), list(results[1].values()), rtol=0, atol=1e-12)
    if case in ("empty", "crowd_only_hits"):  # nothing found (detections on crowd boxes are ignored)
        assert set(results[0].values()) <= {0.0, -1.0}
    else:
        assert any(value > 0 for value in results[0].values())


def test_unknown_coco_backend_is_rejected(fake_dataset):
    with pytest.raises(ValueError, match="evaluation.coco_backend must be one of"):
        DetectionEvaluator(fake_dataset, coco_backend="cocoapi")


def test_predictions_file_scores_like_the_run(fake_dataset, tmp_path, coco_backend):
    evaluator, metrics = evaluate_all(fake_dataset, noise=4.0, coco_backend=coco_backend)
    save_predictions(tmp_path / "predictions.json", evaluator.predictions())
    predictions = load_predictions(tmp_path / "predictions.json")
    rescored, _ = score_predictions(fake_dataset, predictions, coco_backend=coco_backend)
    assert rescored == metrics
    assert predictions == evaluator.predictions()  # scoring leaves the dicts as they were


def test_category_id_round_trip_with_non_contiguous_ids(fake_dataset, tmp_path):
    dets = Detections(
        image_index=np.array([0, 3, 3, 11]),
        labels=np.array([1, 2, 3, 3]),
        scores=np.array([0.9, 0.25, 0.5, 0.125]),
        boxes=np.array([[1.5, 2.0, 10.0, 20.25], [0, 0, 5, 5], [3, 4, 30, 40], [7, 7, 8, 9.5]], dtype=np.float64),
    )
    predictions = predictions_from_detections(dets, fake_dataset.image_ids, fake_dataset.category_ids)
    assert [p["category_id"] for p in predictions] == [3, 7, 12, 12]
    assert [p["image_id"] for p in predictions] == [fake_dataset.image_ids[i] for i in (0, 3, 3, 11)]
    save_predictions(tmp_path / "p.json", predictions)
    loaded = load_predictions(tmp_path / "p.json")
    back = detections_from_predictions(loaded, fake_dataset.image_ids, fake_dataset.category_ids)
    for field in ("image_index", "labels", "scores", "boxes"):
        np.testing.assert_array_equal(getattr(back, field), getattr(dets, field))


def test_predictions_with_unknown_ids_are_rejected_naming_them(fake_dataset):
    good = {"image_id": fake_dataset.image_ids[0], "category_id": 3, "bbox": [0, 0, 5, 5], "score": 0.5}
    with pytest.raises(ValueError, match=r"unknown image id\(s\) 999"):
        score_predictions(fake_dataset, [good, dict(good, image_id=999)])
    with pytest.raises(ValueError, match=r"unknown category id\(s\) 4\b"):
        score_predictions(fake_dataset, [good, dict(good, category_id=4)])


def test_load_predictions_rejects_malformed_files(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('[{"image_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}]')
    with pytest.raises(ValueError, match="bad.json: entry 0"):
        load_predictions(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="cannot read predictions file"):
        load_predictions(path)


def test_only_processed_images_are_evaluated(fake_dataset, coco_backend):
    evaluator = DetectionEvaluator(fake_dataset, coco_backend=coco_backend)
    evaluator.process(batch_of(fake_dataset, [0]), gt_detections(fake_dataset, [0]))
    metrics = evaluator.evaluate()
    assert metrics["voc"]["mAP"] == pytest.approx(1.0)
    assert metrics["coco"]["AP"] == pytest.approx(1.0)


def test_evaluate_without_detections(fake_dataset, coco_backend):
    evaluator = DetectionEvaluator(fake_dataset, coco_backend=coco_backend)
    empty = [{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)}] * 2
    evaluator.process(batch_of(fake_dataset, [0, 1]), empty)
    metrics = evaluator.evaluate()
    assert metrics["voc"]["mAP"] == 0.0 and metrics["voc07"]["mAP"] == 0.0
    assert metrics["coco"]["AP"] == 0.0 and metrics["coco"]["APl"] == -1.0


class ReplayModel(torch.nn.Module):
    """Returns the ground truth of the batch's images as detections (records its mode)."""

    def __init__(self, dataset, batches):
        super().__init__()
        self.outputs = [gt_detections(dataset, b.indices) for b in batches]
        self.modes = []

    def forward(self, images, image_sizes):
        self.modes.append((self.training, torch.is_grad_enabled()))
        return self.outputs[len(self.modes) - 1]


def test_run_inference_evaluates_in_eval_mode_and_restores_training(fake_dataset):
    batches = [batch_of(fake_dataset, range(s, min(s + 5, len(fake_dataset)))) for s in range(0, len(fake_dataset), 5)]
    model = ReplayModel(fake_dataset, batches)
    model.train()
    metrics = run_inference(model, batches, DetectionEvaluator(fake_dataset), "cpu")
    assert model.modes == [(False, False)] * len(batches)
    assert model.training
    assert metrics["voc"]["mAP"] == pytest.approx(1.0)


def test_format_metrics_table_lists_every_class(fake_dataset):
    _, metrics = evaluate_all(fake_dataset, noise=4.0)
    metrics["voc"]["AP"]["bird"] = -1.0
    table = format_metrics_table(metrics)
    assert f"VOC07 mAP (11-point) {metrics['voc07']['mAP']:.4f}" in table
    for name in fake_dataset.class_names:
        assert any(line.startswith(name) for line in table.splitlines())
    assert "n/a" in table.splitlines()[-1]


@pytest.mark.parametrize("backend", COCO_BACKENDS)
def test_voc_and_coco_metrics_score_the_same_cleaned_ground_truth(make_coco, backend):
    """A negative-width box dropped by invalid_boxes=clip counts for neither metric: perfect
    predictions of the kept objects score 1 in both (COCO used to read the raw file: 1 vs 0.5)."""
    from frcnn.data.coco import COCODetection
    from frcnn.data.transforms import DetectionTransform

    images = [{"id": i, "file_name": f"{i}.jpg", "width": 64, "height": 64} for i in (1, 2)]
    annotations = [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [8, 8, 30, 30], "iscrowd": 0, "area": 900},
        {"id": 2, "image_id": 2, "category_id": 1, "bbox": [40, 10, -20, 20], "iscrowd": 0, "area": 400},
    ]
    path, folder = make_coco({"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "a"}]})
    dataset = COCODetection(path, folder, transform=DetectionTransform((64,), 64), train=False, invalid_boxes="clip")
    perfect = [{"image_id": 1, "category_id": 1, "bbox": [8, 8, 30, 30], "score": 0.9}]
    metrics, _ = score_predictions(dataset, perfect, coco_backend=backend)
    assert metrics["voc07"]["mAP"] == pytest.approx(1.0) and metrics["coco"]["AP50"] == pytest.approx(1.0)


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
