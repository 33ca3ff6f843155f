"""The exported graph against the PyTorch model: one ONNX Runtime session (and the same graph as
OpenVINO IR), batches of 1 and 3 shapes test images of different sizes, C4 with RoIAlign and RoIPool
and FPN (v1 and v2), images without detections, FPN RoIs pooled on every pyramid level."""

import shutil

import numpy as np
import pytest
import torch

from frcnn.checkpoint.io import load_checkpoint
from frcnn.checkpoint.restore import model_from_checkpoint
from frcnn.export import OnnxDetector
from frcnn.export.exporter import sample_inputs
from frcnn.export.metadata import read_metadata
from frcnn.export.openvino import OpenVinoDetector, write_openvino
from tests.helpers.checkpoints import shapes_batch


def assert_same_detections(expected: list[dict], got: list[dict]) -> None:
    assert len(expected) == len(got)
    for want, have in zip(expected, got):
        assert torch.equal(want["labels"], have["labels"])
        assert have["boxes"].shape == want["boxes"].shape
        if len(want["boxes"]):
            assert (want["boxes"] - have["boxes"]).abs().max() <= 0.01
            assert (want["scores"] - have["scores"]).abs().max() <= 1e-4


def assert_same_detection_sets(expected: list[dict], got: list[dict]) -> None:
    """Each image's detections equal as sets: every one of ``expected`` has its own in ``got`` with
    the same label, its box within 0.01 px and its score within 1e-4. OpenVINO computes the float64
    tie-break of :func:`frcnn.models.topk.top_k` in float32, so it may list detections of exactly
    equal score in another order."""
    assert len(expected) == len(got)
    for want, have in zip(expected, got):
        assert len(want["boxes"]) == len(have["boxes"])
        free = torch.ones(len(have["boxes"]), dtype=torch.bool)
        for box, score, label in zip(want["boxes"], want["scores"], want["labels"]):
            close = (have["boxes"] - box).abs().max(dim=1).values <= 0.01
            same = free & close & ((have["scores"] - score).abs() <= 1e-4) & (have["labels"] == label)
            assert same.any(), f"no detection {label.item()} {box.tolist()} {score.item():.5f}"
            free[same.nonzero()[0, 0]] = False


def padded(batch_images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    images = batch_images.new_zeros(len(batch_images), 3, height, width)
    images[:, :, : batch_images.shape[2], : batch_images.shape[3]] = batch_images
    return images


def openvino_ir(directory, tmp_path) -> OpenVinoDetector:
    """The export in ``directory`` converted to OpenVINO IR (as export.py format=openvino writes it)."""
    write_openvino(directory / "model.onnx", tmp_path / "model.xml")
    shutil.copy(directory / "model.json", tmp_path / "model.json")
    return OpenVinoDetector(tmp_path / "model.xml")


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("variant", ["roi_align", "roi_pool", "fpn", "fpn_v2", "mobilenet", "mobilenet_320"])
def test_exported_equals_pytorch_at_other_batch_and_image_sizes(exported, variant, runtime, tmp_path):
    checkpoint, cfg, directory = exported(variant)
    model = model_from_checkpoint(load_checkpoint(checkpoint), cfg.model)
    # one session for every batch below
    detector = OnnxDetector(directory / "model.onnx") if runtime == "onnxruntime" else openvino_ir(directory, tmp_path)
    traced_shape = tuple(sample_inputs(read_metadata(directory).preprocessing)[0].shape)

    single, triple = shapes_batch(cfg, [0]), shapes_batch(cfg, [1, 2, 3])
    assert len(set(triple.image_sizes)) == 3, "three different image sizes in one batch"
    larger = padded(triple.images, 128, 192)  # more anchors than any traced shape
    cases = [(single.images, single.image_sizes), (triple.images, triple.image_sizes), (larger, triple.image_sizes)]
    assert all(tuple(images.shape) != traced_shape for images, _ in cases)
    with torch.no_grad():
        for images, sizes in cases:
            expected = model(images, sizes)
            assert all(len(e["boxes"]) > 0 for e in expected), "the comparison needs detections"
            if runtime == "onnxruntime":
                assert_same_detections(expected, detector(images, sizes))
            else:
                assert_same_detection_sets(expected, detector(images, sizes))


def test_padded_output_layout(exported):
    _, cfg, directory = exported("roi_align")
    detector = OnnxDetector(directory / "model.onnx")
    batch = shapes_batch(cfg, [1, 2, 3])
    boxes, scores, labels, counts = detector.run(batch.images.numpy(), np.array(batch.image_sizes, dtype=np.int64))
    num_dets = detector.metadata.postprocessing["detections_per_image"]
    assert boxes.shape == (3, num_dets, 4) and scores.shape == labels.shape == (3, num_dets) and counts.shape == (3,)
    assert boxes.dtype == scores.dtype == np.float32 and labels.dtype == counts.dtype == np.int64
    for b, s, c, n in zip(boxes, scores, labels, counts):
        assert 0 < n <= num_dets
        assert np.all(np.diff(s[:n]) <= 0), "scores decrease"
        assert np.all((c[:n] >= 1) & (c[:n] <= len(detector.class_names)))
        assert not b[n:].any() and not s[n:].any() and not c[n:].any(), "padding is zeros"


@pytest.mark.parametrize("variant", ["roi_align", "fpn", "fpn_v2"])
def test_images_without_detections(exported, variant):
    checkpoint, cfg, directory = exported(variant)
    model = model_from_checkpoint(load_checkpoint(checkpoint), cfg.model)
    detector = OnnxDetector(directory / "model.onnx")
    batch = shapes_batch(cfg, [0, 1])
    # A 3x3 px image: every proposal is narrower than rpn.min_size (4 px), so none survives.
    images = batch.images.clone()
    images[1, :, 3:, :] = 0
    images[1, :, :, 3:] = 0
    sizes = [batch.image_sizes[0], (3, 3)]
    with torch.no_grad():
        expected = model(images, sizes)
        got = detector(images, sizes)
    assert len(expected[0]["boxes"]) > 0 and len(expected[1]["boxes"]) == 0
    assert_same_detections(expected, got)
    # no image with a proposal: no RoI at all reaches the box head
    boxes, scores, labels, counts = detector.run(images[1:].numpy(), np.array([[3, 3]], dtype=np.int64))
    assert counts.tolist() == [0] and not boxes.any() and not scores.any() and not labels.any()
