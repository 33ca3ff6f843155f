"""frcnn.Detector: a checkpoint as a callable on paths, tensors, arrays and PIL images."""

import numpy as np
import pytest
import torch
from omegaconf.errors import ConfigKeyError
from PIL import Image

import frcnn
from frcnn.checkpoint.io import load_checkpoint
from frcnn.checkpoint.restore import model_from_checkpoint
from frcnn.data import build_dataset, build_test_loader
from frcnn.evaluation import DetectionEvaluator, run_inference


@pytest.fixture(scope="module")
def detector_and_data(tiny_checkpoint):
    path, cfg = tiny_checkpoint
    return frcnn.Detector.from_checkpoint(path, device="cpu", batch_size=2), cfg


def test_boxes_are_the_evaluation_pipelines_in_original_pixels(detector_and_data, tiny_checkpoint):
    detector, cfg = detector_and_data
    loader = build_test_loader(cfg.dataset, 1, num_workers=0)
    evaluator = DetectionEvaluator(loader.dataset)
    run_inference(model_from_checkpoint(load_checkpoint(tiny_checkpoint[0]), cfg.model), loader, evaluator, "cpu")
    expected = [p for p in evaluator.predictions() if p["image_id"] == loader.dataset.image_ids[0]]
    assert expected, "the tiny model should detect something on the first test image"

    result = detector(loader.dataset.image_path(0))
    assert isinstance(result, dict)
    xywh = result["boxes"].clone()
    xywh[:, 2:] -= xywh[:, :2]
    expected_xywh = torch.tensor([p["bbox"] for p in expected])
    assert torch.allclose(xywh, expected_xywh, atol=1e-3)
    assert torch.allclose(result["scores"], torch.tensor([p["score"] for p in expected]), atol=1e-5)
    names = loader.dataset.class_names
    assert result["class_names"] == [names[label - 1] for label in result["labels"].tolist()]


def test_every_input_kind_and_a_list_give_one_result_each(detector_and_data):
    detector, cfg = detector_and_data
    test_set = build_dataset(cfg.dataset, "test")
    path = test_set.image_path(1)
    pil = Image.open(path)
    array = np.array(pil.convert("RGB"))
    tensor = torch.from_numpy(array).permute(2, 0, 1)
    results = detector([path, pil, array, tensor, tensor.float() / 255])
    assert len(results) == 5
    height, width = array.shape[:2]
    for result in results:
        assert result["boxes"].shape[1] == 4 and result["boxes"].dtype == torch.float32
        assert (result["boxes"][:, 0::2] <= width).all() and (result["boxes"][:, 1::2] <= height).all()
        assert torch.allclose(result["boxes"], results[0]["boxes"], atol=1e-3)  # batches differ: same up to rounding
        assert len(result["class_names"]) == len(result["labels"]) == len(result["scores"])
    assert detector([]) == []


def test_score_threshold_and_bad_inputs(tiny_checkpoint):
    path, cfg = tiny_checkpoint
    detector = frcnn.Detector.from_checkpoint(path, device="cpu", score_threshold=0.2)
    image = build_dataset(cfg.dataset, "test").image_path(0)
    assert (detector(image)["scores"] >= 0.2).all()
    with pytest.raises(ValueError, match=r"\[3, H, W\]"):
        detector(torch.zeros(1, 8, 8))
    with pytest.raises(TypeError, match="cannot detect on a int"):
        detector(3)


def test_overrides_apply_on_top_of_the_checkpoints_own_config(tiny_checkpoint):
    path, cfg = tiny_checkpoint
    default = frcnn.Detector.from_checkpoint(path, device="cpu")
    assert list(default.transform.min_sizes) == [cfg.dataset.test_min_size]  # the run's own test size
    overrides = {
        "dataset": {"test_min_size": 80},
        "model": {"roi_head": {"score_thresh": 0.0, "detections_per_image": 3}},
    }
    detector = frcnn.Detector.from_checkpoint(path, device="cpu", overrides=overrides)
    assert list(detector.transform.min_sizes) == [80]
    assert len(detector(build_dataset(cfg.dataset, "test").image_path(0))["scores"]) == 3
    with pytest.raises(ConfigKeyError, match="no_such_key"):
        frcnn.Detector.from_checkpoint(path, overrides={"model": {"no_such_key": 1}})
