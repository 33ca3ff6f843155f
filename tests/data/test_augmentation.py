"""Augmentation policies (dataset.augmentation): boxes stay on their objects, draws follow the sample
seed, dropped boxes take their labels with them, and every policy feeds the dataset."""

import pytest
import torch
from omegaconf import OmegaConf
from omegaconf.errors import ValidationError

import frcnn.config
from frcnn.cli.errors import error_message
from frcnn.data import build_dataset
from frcnn.data.config import AugmentationPolicy, DatasetConfig
from frcnn.data.transforms import IMAGENET_MEAN, IMAGENET_STD, DetectionTransform, PolicyTransform, build_transform

POLICIES = [policy.value for policy in AugmentationPolicy]
CROPPING = ["lsj", "ssd", "ssdlite"]
SEEDS = range(12)


def _transform(policy: str, min_size=(64, 96), max_size=128, flip_prob=0.5):
    cfg = OmegaConf.structured(DatasetConfig(min_size=list(min_size), max_size=max_size, flip_prob=flip_prob))
    return build_transform(OmegaConf.merge(cfg, {"augmentation": policy}), train=True)


def _drawn(height: int, width: int, boxes: list[tuple[int, int, int, int]], levels=None) -> torch.Tensor:
    """A black uint8 Tensor[3, H, W] with filled rectangles (x1, y1, x2, y2), white or of ``levels``."""
    image = torch.zeros(3, height, width, dtype=torch.uint8)
    for k, (x1, y1, x2, y2) in enumerate(boxes):
        image[:, y1:y2, x1:x2] = 255 if levels is None else levels[k]
    return image


def _pixels(image: torch.Tensor) -> torch.Tensor:
    """A normalised image back in 0..1."""
    return image * torch.tensor(IMAGENET_STD)[:, None, None] + torch.tensor(IMAGENET_MEAN)[:, None, None]


def _object_mask(image: torch.Tensor) -> torch.Tensor:
    """Bool Tensor[h, w]: the pixels of a white rectangle drawn on black, after any policy.

    Brightness and contrast changes keep the rectangle grey and above 0.5 and the background
    below 0.15; the zoom-out and crop fill (the mean pixel, 0.45) is not grey (red - blue = 20/255).
    """
    pixels = _pixels(image)
    return (pixels.mean(dim=0) > 0.3) & ((pixels[0] - pixels[2]).abs() < 5 / 255)


def _mask_box(mask: torch.Tensor) -> torch.Tensor:
    """Tensor[4] (x1, y1, x2, y2): the continuous-coordinate box around the true pixels of ``mask``."""
    ys, xs = mask.nonzero(as_tuple=True)
    return torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    wh = (torch.minimum(a[2:], b[2:]) - torch.maximum(a[:2], b[:2])).clamp(min=0)
    inter = float(wh[0] * wh[1])
    area = lambda box: float((box[2] - box[0]) * (box[3] - box[1]))  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def test_default_is_the_resize_and_flip_transform():
    """hflip builds exactly the transform training had before policies existed (bit-for-bit runs)."""
    assert DatasetConfig().augmentation is AugmentationPolicy.hflip
    assert _transform("hflip", (48, 64), 96, 0.5) == DetectionTransform((48, 64), 96, 0.5)
    assert build_transform(OmegaConf.structured(DatasetConfig(augmentation="lsj")), train=False) == (
        DetectionTransform((128,), 256, 0.0)
    )  # test images are only resized, whatever the policy


@pytest.mark.parametrize("policy", POLICIES)
def test_boxes_stay_on_their_object(policy):
    """A white rectangle on black: the transformed image's bright pixels and the transformed box
    agree, through every draw of scale, crop, zoom-out, photometric change and flip."""
    source = (30, 20, 80, 60)  # 16% of the image: the strongest contrast cut leaves it above 0.5
    transform = _transform(policy)
    flips, kept = set(), 0
    for seed in SEEDS:
        image, boxes, _ = transform(_drawn(96, 128, [source]), torch.tensor([source], dtype=torch.float32),
                                    torch.Generator().manual_seed(seed))  # fmt: skip
        mask = _object_mask(image)
        if len(boxes) == 0:  # lsj's crop cut it out: at most a sliver under 1 px is left
            assert not mask.any() or (_mask_box(mask)[2:] - _mask_box(mask)[:2]).min() <= 1
            continue
        kept += 1
        box, found = boxes[0], _mask_box(mask)
        assert (found - box).abs().max() <= 1.5, (seed, found, box)  # antialiased edges
        if (box[2:] - box[:2]).min() >= 20:
            assert _iou(found, box) > 0.9, (seed, found, box)
        flips.add(bool(found[0] > image.shape[-1] - found[2]))  # nearer the right edge: flipped
    assert kept >= len(SEEDS) // 2
    if policy in ("hflip", "multiscale"):  # no crop moves it: the side it is nearer tells a flip
        assert flips == {True, False}


@pytest.mark.parametrize("policy", POLICIES)
def test_empty_image(policy):
    image, boxes, scale = _transform(policy)(_drawn(80, 64, []), torch.zeros(0, 4), torch.Generator().manual_seed(1))
    assert image.dtype == torch.float32 and image.shape[0] == 3 and boxes.shape == (0, 4)
    assert min(scale) > 0


@pytest.mark.parametrize("policy", POLICIES)
def test_output_sizes_follow_the_resize_settings(policy):
    transform = _transform(policy, min_size=(48, 64), max_size=96)
    for seed in range(6):
        image, _, (sx, sy) = transform(_drawn(60, 120, [(10, 10, 50, 40)]), torch.tensor([[10.0, 10.0, 50.0, 40.0]]),
                                       torch.Generator().manual_seed(seed))  # fmt: skip
        height, width = image.shape[-2:]
        assert max(height, width) <= 96
        if policy == "lsj":
            assert (height, width) == (96, 96)  # FixedSizeCrop pads to the max_size square
        elif policy in ("hflip", "multiscale"):  # the whole image, resized: scale = size ratio
            assert min(height, width) in (48, 64) or max(height, width) == 96
            assert sx == pytest.approx(width / 120) and sy == pytest.approx(height / 60)


@pytest.mark.parametrize("policy", CROPPING + ["multiscale"])
def test_draws_depend_only_on_the_sample_seed(policy):
    transform = _transform(policy)
    raw, boxes = _drawn(96, 128, [(30, 20, 80, 60)]), torch.tensor([[30.0, 20.0, 80.0, 60.0]])
    outputs = []
    with torch.random.fork_rng(devices=[]):
        for seed in range(6):
            torch.manual_seed(1000 + seed)  # two global RNG states: no effect on the draws
            first = transform(raw, boxes, torch.Generator().manual_seed(seed))
            torch.manual_seed(2000 + seed)
            state = torch.get_rng_state()
            again = transform(raw, boxes, torch.Generator().manual_seed(seed))
            assert torch.equal(torch.get_rng_state(), state)  # and the global RNG is left as it was
            assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1]) and first[2] == again[2]
            outputs.append(first)
    assert len({(tuple(o[0].shape), tuple(o[1].flatten().tolist())) for o in outputs}) > 1


def test_dropped_boxes_take_their_labels_difficult_and_iscrowd():
    """Four objects of four grey levels in the corners: IoU crops drop some, and every kept row of
    labels / difficult / iscrowd still belongs to its box (the pixel at the box centre has the
    object's grey level)."""
    corners = [(4, 4, 40, 36), (88, 4, 124, 36), (4, 60, 40, 92), (88, 60, 124, 92)]
    levels = [60, 120, 180, 240]
    raw = _drawn(96, 128, corners, levels)
    target = {
        "boxes": torch.tensor(corners, dtype=torch.float32),
        "labels": torch.tensor([1, 2, 3, 4]),
        "difficult": torch.tensor([False, True, False, True]),
        "iscrowd": torch.tensor([False, False, True, True]),
    }
    transform = PolicyTransform("ssdlite", (96,), 256, flip_prob=0.5)  # no photometric change, no fill
    dropped = 0
    for seed in range(30):
        image, out, _ = transform.transform_target(raw, target, torch.Generator().manual_seed(seed))
        assert list(out) == list(target) and len({len(v) for v in out.values()}) == 1
        dropped += len(target["labels"]) - len(out["labels"])
        grey = _pixels(image).mean(dim=0) * 255
        for box, label, difficult, iscrowd in zip(out["boxes"], out["labels"], out["difficult"], out["iscrowd"]):
            k = int(label) - 1
            assert bool(difficult) == bool(target["difficult"][k]) and bool(iscrowd) == bool(target["iscrowd"][k])
            cx, cy = int((box[0] + box[2]) / 2), int((box[1] + box[3]) / 2)
            assert abs(float(grey[cy, cx]) - levels[k]) < 10, (seed, k, box)
    assert dropped > 0


@pytest.mark.parametrize("policy", POLICIES)
def test_dataset_items_under_each_policy(tiny_shapes_cfg, policy):
    ds = build_dataset(tiny_shapes_cfg(augmentation=policy, min_size=[48, 64], max_size=96), "train")
    for i in range(4):
        image, target = ds[(i, 100 + i)]
        again, target_again = ds[(i, 100 + i)]
        assert torch.equal(image, again) and torch.equal(target["boxes"], target_again["boxes"])
        assert image.dtype == torch.float32 and tuple(image.shape[1:]) == target["image_size"]
        h, w = target["image_size"]
        assert max(h, w) <= 96
        boxes = target["boxes"]
        assert boxes.dtype == torch.float32 and boxes.shape[1] == 4
        assert len(boxes) == len(target["labels"]) == len(target["difficult"]) == len(target["iscrowd"])
        assert len(boxes) <= len(ds.get_annotation(i)["labels"])
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
        assert (boxes[:, 2:] > boxes[:, :2]).all()


def test_a_bad_policy_is_one_line_naming_the_key():
    cfg = OmegaConf.structured(DatasetConfig)
    with pytest.raises(ValidationError):
        OmegaConf.merge(cfg, {"augmentation": "mosaic"})
    with pytest.raises(Exception) as info:
        frcnn.config.compose(["dataset.augmentation=mosaic"])
    message = error_message(info.value, "train.py")
    assert "\n" not in message and message.startswith("dataset.augmentation=mosaic: Invalid value 'mosaic'")
    for policy in POLICIES:
        assert frcnn.config.compose([f"dataset.augmentation={policy}"]).dataset.augmentation.value == policy


@pytest.mark.parametrize("policy", ["multiscale", "ssdlite"])
def test_a_box_on_the_image_edge_is_kept(policy):
    """A resize (of the image, or after a crop) can put a box on the edge a float32 rounding past
    the canvas, where SanitizeBoundingBoxes would drop it as outside the image: boxes are clamped."""
    transform = PolicyTransform(policy, (48, 64), 96, flip_prob=0.5)
    for height, width in [(42, 60), (70, 88), (70, 95)]:
        box = torch.tensor([[width / 3, 0.0, float(width), float(height)]])
        for seed in range(8):
            _, boxes, _ = transform(_drawn(height, width, []), box, torch.Generator().manual_seed(seed))
            assert len(boxes) == 1, (height, width, seed)
