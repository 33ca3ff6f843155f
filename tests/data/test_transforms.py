"""Resize, flip and normalisation move images and boxes consistently."""

import pytest
import torch

from frcnn.data import build_dataset
from frcnn.data.transforms import IMAGENET_MEAN, IMAGENET_STD, DetectionTransform, resized_size


def _image(height, width):
    return torch.arange(3 * height * width, dtype=torch.int64).reshape(3, height, width).remainder(256).to(torch.uint8)


def test_resized_size_short_side_and_max_size():
    assert resized_size(50, 100, 64, 1000) == (64, 128)
    assert resized_size(50, 200, 64, 128) == (32, 128)  # long side capped
    assert resized_size(375, 500, 600, 1000) == (600, 800)


def test_resize_scales_boxes():
    boxes = torch.tensor([[10.0, 5.0, 30.0, 25.0], [0.0, 0.0, 100.0, 50.0]])
    image, out, scale = DetectionTransform((64,), 1000)(_image(50, 100), boxes)
    assert image.shape == (3, 64, 128) and image.dtype == torch.float32
    assert scale == (1.28, 1.28)
    torch.testing.assert_close(out, boxes * 1.28)
    image, out, scale = DetectionTransform((64,), 128)(_image(50, 200), boxes)
    assert image.shape == (3, 32, 128) and scale == (0.64, 0.64)
    torch.testing.assert_close(out, boxes * 0.64)


def test_non_uniform_rounding_keeps_per_axis_scale():
    image, out, (sx, sy) = DetectionTransform((64,), 1000)(_image(97, 131), torch.tensor([[0.0, 0.0, 131.0, 97.0]]))
    h, w = image.shape[1:]
    assert (sx, sy) == (w / 131, h / 97)
    torch.testing.assert_close(out, torch.tensor([[0.0, 0.0, float(w), float(h)]]))


def test_horizontal_flip_mirrors_image_and_boxes():
    raw = _image(50, 100)
    boxes = torch.tensor([[10.0, 5.0, 30.0, 20.0]])
    flipped, out, _ = DetectionTransform((50,), 1000, flip_prob=1.0)(raw, boxes, torch.Generator().manual_seed(0))
    plain, _, _ = DetectionTransform((50,), 1000)(raw, boxes)
    assert out.tolist() == [[70.0, 5.0, 90.0, 20.0]]  # x -> W - x, continuous coordinates
    torch.testing.assert_close(flipped, plain.flip(-1))


def test_normalisation():
    image, _, _ = DetectionTransform((8,), 100)(torch.full((3, 8, 8), 51, dtype=torch.uint8), torch.zeros(0, 4))
    expected = [(0.2 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)]
    torch.testing.assert_close(image[:, 0, 0], torch.tensor(expected))


def test_random_choices_come_from_the_sample_seed():
    transform = DetectionTransform((32, 48, 64), 1000, flip_prob=0.5)
    boxes = torch.tensor([[10.0, 5.0, 30.0, 20.0]])
    outcomes = set()
    for seed in range(40):
        first = transform(_image(50, 100), boxes, torch.Generator().manual_seed(seed))
        again = transform(_image(50, 100), boxes, torch.Generator().manual_seed(seed))
        assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
        outcomes.add((first[0].shape[1], bool(first[1][0, 0] > 50)))
    assert {h for h, _ in outcomes} == {32, 48, 64} and {f for _, f in outcomes} == {True, False}


@pytest.mark.parametrize("train", [True, False])
def test_dataset_item_deterministic_per_seed(tiny_shapes_cfg, train):
    cfg = tiny_shapes_cfg(min_size=[48, 64], flip_prob=0.5)
    ds = build_dataset(cfg, "train" if train else "test")
    image_a, target_a = ds[(1, 123)]
    image_b, target_b = ds[(1, 123)]
    assert torch.equal(image_a, image_b) and torch.equal(target_a["boxes"], target_b["boxes"])
    h, w = target_a["image_size"]
    oh, ow = target_a["orig_size"]
    assert target_a["scale"] == (w / ow, h / oh)
    ann = ds.get_annotation(1)
    if not train:  # no flip at test time: boxes are exactly scaled
        torch.testing.assert_close(target_a["boxes"], ann["boxes"] * torch.tensor([w / ow, h / oh] * 2))
