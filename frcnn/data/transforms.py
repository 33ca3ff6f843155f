"""Box-aware detection transforms and training augmentation policies (torchvision.transforms.v2
on tv_tensors).

Randomness (which training scale, whether to flip, where to crop) is drawn from a
``torch.Generator`` seeded per sample by the batch sampler, so a sample's augmentation depends
only on its seed, never on worker processes or the global RNG state: runs are reproducible and
resumable. The transforms.v2 classes of the augmentation policies draw from the global RNG, so
they run under a fork of it seeded from the sample's generator.

Boxes are ``tv_tensors.BoundingBoxes`` in XYXY format, continuous 0-based pixel
coordinates: resizing scales them by ``(sx, sy) = (new_w / w, new_h / h)`` and a horizontal
flip maps ``x -> W - x``.

``dataset.augmentation`` picks the training transform, by the names of torchvision's
``references/detection/presets.py`` (``DetectionPresetTrain``), composed with the dataset's
resize settings (``min_size``, ``max_size``) and ``flip_prob``:

- ``hflip`` (default): :class:`DetectionTransform`, resize (short side one of ``min_size``, long
  side <= ``max_size``) and flip;
- ``multiscale``: ``RandomShortestSize(min_size, max_size)`` and flip;
- ``lsj``: ``ScaleJitter`` and ``FixedSizeCrop`` to a ``max_size`` square, and flip;
- ``ssd``: ``RandomPhotometricDistort``, ``RandomZoomOut``, ``RandomIoUCrop``, then
  ``RandomShortestSize(min_size, max_size)`` and flip;
- ``ssdlite``: ``RandomIoUCrop``, then ``RandomShortestSize(min_size, max_size)`` and flip.

Every policy but ``hflip`` ends with ``ClampBoundingBoxes`` and ``SanitizeBoundingBoxes``: boxes
are clipped to a crop, and those that leave it (or keep less than 1 px of width or height) are
dropped together with their labels and every other per-box entry. Test images are only resized.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2 as T
from torchvision.transforms.v2 import functional as F

from frcnn.data.config import AugmentationPolicy

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resized_size(height: int, width: int, min_size: int, max_size: int) -> tuple[int, int]:
    """(h, w) with the short side ``min_size``, unless the long side would pass ``max_size``."""
    scale = min(min_size / min(height, width), max_size / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


@dataclass(frozen=True)
class DetectionTransform:
    """Resize (short side drawn from ``min_sizes``, long side <= ``max_size``), optional
    horizontal flip with probability ``flip_prob``, float conversion and ImageNet normalisation.

    Call with a uint8 Tensor[3, H, W], boxes Tensor[N, 4] (original coordinates) and a
    ``torch.Generator`` (only used when there is a random choice; None: the global RNG); returns the float32
    normalised Tensor[3, h, w], the boxes Tensor[N, 4] in resized coordinates and the scale
    ``(sx, sy)`` with ``resized = original * scale``.
    """

    min_sizes: Sequence[int]
    max_size: int
    flip_prob: float = 0.0
    mean: Sequence[float] = IMAGENET_MEAN
    std: Sequence[float] = IMAGENET_STD

    def __call__(
        self, image: torch.Tensor, boxes: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[float, float]]:
        height, width = image.shape[-2:]
        min_size = self.min_sizes[0]
        if len(self.min_sizes) > 1:
            choice = torch.randint(len(self.min_sizes), (), generator=generator)
            min_size = self.min_sizes[int(choice)]
        flip = self.flip_prob > 0 and float(torch.rand((), generator=generator)) < self.flip_prob

        new_h, new_w = resized_size(height, width, min_size, self.max_size)
        image = tv_tensors.Image(image)
        boxes = tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(height, width))
        image, boxes = F.resize(image, [new_h, new_w], antialias=True), F.resize(boxes, [new_h, new_w])
        if flip:
            image, boxes = F.horizontal_flip(image), F.horizontal_flip(boxes)
        image = F.normalize(F.to_dtype(image, torch.float32, scale=True), self.mean, self.std)
        scale = (new_w / width, new_h / height)
        return image.as_subclass(torch.Tensor), boxes.as_subclass(torch.Tensor), scale

    def transform_target(
        self, image: torch.Tensor, target: dict[str, torch.Tensor], generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], tuple[float, float]]:
        """As ``__call__`` on ``target["boxes"]``; the other per-box entries (labels, ...) pass
        unchanged, since resizing and flipping drop no box."""
        image, boxes, scale = self(image, target["boxes"], generator)
        return image, {**target, "boxes": boxes}, scale


class FixedSizeCrop(T.Transform):
    """torchvision's ``FixedSizeCrop`` of ``references/detection/transforms.py`` (transforms.v2 has
    none): crop to at most ``size`` (h, w) at a random offset (one draw for both axes), then pad
    the bottom and right with ``fill`` to exactly ``size``. Boxes are moved and clipped by
    ``F.crop``; those left empty are for a later ``SanitizeBoundingBoxes`` to drop."""

    def __init__(self, size: tuple[int, int], fill: Sequence[int] | int = 0):
        super().__init__()
        self.size = size
        self.fill = fill

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = T.query_size(flat_inputs)
        crop_h, crop_w = min(height, self.size[0]), min(width, self.size[1])
        r = float(torch.rand(()))
        crop = dict(top=int((height - crop_h) * r), left=int((width - crop_w) * r), height=crop_h, width=crop_w)
        return dict(crop=crop, padding=[0, 0, self.size[1] - crop_w, self.size[0] - crop_h])  # l, t, r, b

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        inpt = self._call_kernel(F.crop, inpt, **params["crop"])
        return self._call_kernel(F.pad, inpt, padding=params["padding"], fill=self.fill)


@contextlib.contextmanager
def _sample_rng(generator: torch.Generator | None) -> Iterator[None]:
    """Run transforms.v2 classes (which draw from the global RNG) on a fork of it seeded from the
    sample's ``generator``, leaving the global state as it was; None: on the global RNG itself."""
    if generator is None:
        yield
        return
    seed = int(torch.randint(2**62, (), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class PolicyTransform:
    """The training transform of an augmentation policy other than ``hflip`` (module docstring),
    then float conversion and normalisation.

    The pipeline is ``before`` (photometric and crop steps, which keep the pixel size of objects),
    one resizing step, ``after`` (crop, pad, flip); its random draws come from the sample's
    generator (:func:`_sample_rng`). The returned ``scale`` (sx, sy) is the resizing step's factor:
    objects are magnified by it. Under ``lsj``, ``ssd`` and ``ssdlite`` the crop (or zoom-out)
    also shifts them, by an offset that is not returned, so ``scale`` alone does not map boxes
    back to the original image; these policies are for training images only, and only test
    images (resized alone) are mapped back.

    Args:
        policy: multiscale | lsj | ssd | ssdlite.
        min_sizes: short-side lengths (one drawn per image) of the resizing step of multiscale,
            ssd and ssdlite.
        max_size: the long side's cap after that step; lsj: the side of its square output.
        flip_prob: horizontal flip probability.
        mean, std: normalisation (0..1 scale); the zoom-out and crop padding is ``mean``, which
            normalises to 0 like the batch padding.
    """

    def __init__(
        self,
        policy: AugmentationPolicy | str,
        min_sizes: Sequence[int],
        max_size: int,
        flip_prob: float = 0.5,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ):
        policy = AugmentationPolicy(policy)
        fill = tuple(round(255 * m) for m in mean)  # images are uint8 until normalised
        shortest = T.RandomShortestSize(list(min_sizes), max_size, antialias=True)
        if policy is AugmentationPolicy.multiscale:
            self.before, self.resize, self.after = [], shortest, []
        elif policy is AugmentationPolicy.lsj:
            # torchvision jitters around and crops to 1024 x 1024 for a model that resizes its input
            # again (800-1333); here the dataset's resize is the last one, so the square's side is
            # dataset.max_size: the output is max_size x max_size, as the other policies' long side.
            square = (max_size, max_size)
            self.before, self.resize = [], T.ScaleJitter(square, antialias=True)
            self.after = [FixedSizeCrop(square, fill)]
        elif policy is AugmentationPolicy.ssd:
            self.before = [T.RandomPhotometricDistort(), T.RandomZoomOut(fill=fill), T.RandomIoUCrop()]
            self.resize, self.after = shortest, []
        elif policy is AugmentationPolicy.ssdlite:
            self.before, self.resize, self.after = [T.RandomIoUCrop()], shortest, []
        else:
            raise ValueError(f"{policy} is DetectionTransform's policy (see build_transform)")
        self.after.append(T.RandomHorizontalFlip(flip_prob))  # after the resize: the two commute
        # A resize does not clamp: a box on the edge can end a float32 rounding past the canvas,
        # which SanitizeBoundingBoxes would take for a box outside the image. Then boxes that left
        # a crop (RandomIoUCrop zeroes those whose centre did) or keep under 1 px go, with every
        # other per-box tensor of the sample.
        self.clamp = T.ClampBoundingBoxes()
        self.sanitize = T.SanitizeBoundingBoxes(labels_getter=_per_box_entries)
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(
        self, image: torch.Tensor, boxes: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[float, float]]:
        """As :meth:`DetectionTransform.__call__`, except that boxes may be dropped (M <= N rows)."""
        image, target, scale = self.transform_target(image, {"boxes": boxes}, generator)
        return image, target["boxes"], scale

    def transform_target(
        self, image: torch.Tensor, target: dict[str, torch.Tensor], generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], tuple[float, float]]:
        """Transform a uint8 Tensor[3, H, W] and ``target``: ``boxes`` Tensor[N, 4] and any other
        per-box Tensor[N, ...] (labels, difficult, iscrowd), which keep the rows of the boxes kept.
        Returns the normalised float32 image, the target with the same keys, and the scale."""
        height, width = image.shape[-2:]
        boxes = tv_tensors.BoundingBoxes(target["boxes"], format="XYXY", canvas_size=(height, width))
        sample = {**target, "boxes": boxes, "image": tv_tensors.Image(image)}
        with _sample_rng(generator):
            for step in self.before:
                sample = step(sample)
            before_h, before_w = sample["image"].shape[-2:]
            sample = self.resize(sample)
            resized_h, resized_w = sample["image"].shape[-2:]
            for step in self.after:
                sample = step(sample)
        sample = self.sanitize(self.clamp(sample))
        image = F.normalize(F.to_dtype(sample["image"], torch.float32, scale=True), self.mean, self.std)
        scale = (resized_w / before_w, resized_h / before_h)
        return image.as_subclass(torch.Tensor), {k: sample[k].as_subclass(torch.Tensor) for k in target}, scale


def _per_box_entries(sample: dict[str, Any]) -> tuple[torch.Tensor, ...]:
    """What SanitizeBoundingBoxes drops rows of along with the boxes: every entry but those two."""
    return tuple(value for key, value in sample.items() if key not in ("image", "boxes"))


def build_transform(cfg, train: bool) -> DetectionTransform | PolicyTransform:
    """The train transform (``cfg.augmentation``: multi-scale resize and flip by default) or the
    test transform (resize to ``test_min_size``) of a ``dataset`` config."""
    if not train:
        return DetectionTransform((cfg.test_min_size,), cfg.max_size, 0.0)
    policy = AugmentationPolicy(cfg.augmentation)
    if policy is AugmentationPolicy.hflip:
        return DetectionTransform(tuple(cfg.min_size), cfg.max_size, cfg.flip_prob)
    return PolicyTransform(policy, tuple(cfg.min_size), cfg.max_size, cfg.flip_prob)


def boxes_to_original(boxes: torch.Tensor, scale: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Boxes [N, 4] xyxy in resized coordinates -> original-image coordinates, clipped to
    ``[0, width] x [0, height]``. scale: Tensor[2] (sx, sy) with resized = original * scale."""
    boxes = boxes.detach().float().cpu() / scale.float().cpu().repeat(2)
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
    return boxes
