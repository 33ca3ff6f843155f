"""``Detector``: a trained checkpoint as a callable on images, for use from Python.

    detector = frcnn.Detector.from_checkpoint("outputs/<run>/checkpoints/last.pt")
    detector = frcnn.Detector.from_exported("exported/model.xml")   # or model.onnx: OpenVINO, ONNX Runtime
    result = detector("photo.jpg")               # one dict
    results = detector(["a.jpg", image_tensor])  # a list of dicts, one per input

Each result holds ``boxes`` float32 Tensor[N, 4] (x1, y1, x2, y2) in continuous 0-based pixel
coordinates of the original image, ``scores`` Tensor[N], ``labels`` int64 Tensor[N] in 1..K
and ``class_names`` (N strings, ``class_names[i]`` names ``labels[i]``), sorted by score.
Images get the model's own test-time preprocessing (the training run's resize and
normalisation) and run in batches.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Optional, Union

import numpy as np
import torch
from omegaconf import OmegaConf
from PIL import Image

from frcnn.checkpoint.restore import InferenceCheckpoint, open_for_inference, saved_configs
from frcnn.data.batching import image_batch
from frcnn.data.image_io import read_image
from frcnn.data.transforms import DetectionTransform, boxes_to_original, build_transform
from frcnn.export.runtime import load_exported
from frcnn.models import FasterRCNN
from frcnn.models.faster_rcnn import model_inputs
from frcnn.utils.device import resolve_device

ImageInput = Union[str, os.PathLike, torch.Tensor, np.ndarray, Image.Image]


def as_uint8_image(image: ImageInput) -> torch.Tensor:
    """Any supported image input -> uint8 Tensor[3, H, W] in RGB (on the CPU).

    A path is decoded with EXIF orientation applied; a PIL image is converted to RGB; an array
    is ``[H, W, 3]`` uint8 (as PIL and OpenCV-converted-to-RGB give); a tensor is ``[3, H, W]``,
    uint8 or float in [0, 1].
    """
    if isinstance(image, (str, os.PathLike)):
        return read_image(str(image))
    if isinstance(image, Image.Image):
        image = np.array(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"an image array must be uint8 [H, W, 3] RGB, got {image.dtype} {list(image.shape)}")
        return torch.from_numpy(image.copy()).permute(2, 0, 1)  # copy: the caller keeps its array
    if isinstance(image, torch.Tensor):
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"an image tensor must be [3, H, W], got {list(image.shape)}")
        if image.dtype != torch.uint8:
            image = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
        return image.cpu()
    raise TypeError(f"cannot detect on a {type(image).__name__}: give a path, a PIL image, an array or a tensor")


class Detector:
    """A detector with its preprocessing, class names and device.

    model: a :class:`FasterRCNN`, or an exported model's runner
    (:class:`~frcnn.export.runtime.ExportedDetector`). transform: the test transform (resize + normalise).
    size_divisibility: batches are padded to a multiple of it. score_threshold: detections
    scoring below it are dropped (on top of the model's own ``roi_head.score_thresh``).
    ``buckets``: padded side lengths (:func:`frcnn.data.batching.size_buckets`) for a compiled
    model, empty by default.
    """

    def __init__(
        self,
        model: FasterRCNN,
        transform: DetectionTransform,
        size_divisibility: int,
        class_names: Sequence[str],
        device: torch.device | str = "cpu",
        score_threshold: float = 0.0,
        batch_size: int = 4,
    ):
        self.device = resolve_device(device)
        self.model = model.eval().to(self.device)
        self.transform = transform
        self.size_divisibility = size_divisibility
        self.class_names = list(class_names)
        self.score_threshold = score_threshold
        self.batch_size = batch_size
        self.buckets: tuple[int, ...] = ()

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        device: str = "auto",
        score_threshold: float = 0.0,
        batch_size: int = 4,
        overrides: Optional[dict[str, Any]] = None,
    ) -> Detector:
        """The detector of a training checkpoint (``checkpoints/last.pt`` of a run).

        The model and the test-time resize are the run's own; ``overrides`` (e.g.
        ``{"model": {"roi_head": {"nms_thresh": 0.4}}, "dataset": {"test_min_size": 800}}``)
        apply on top.
        """
        opened = open_for_inference(path, lambda saved: saved_configs(OmegaConf.merge(saved, overrides or {})))
        return cls.for_checkpoint(opened, device, score_threshold, batch_size)

    @classmethod
    def for_checkpoint(
        cls,
        opened: InferenceCheckpoint,
        device: str | torch.device = "auto",
        score_threshold: float = 0.0,
        batch_size: int = 4,
    ) -> Detector:
        """From a checkpoint opened for inference (:func:`frcnn.checkpoint.restore.open_for_inference`:
        its detector and typed ``model``/``dataset`` configs, overrides applied)."""
        return cls(
            opened.model,
            build_transform(opened.dataset_cfg, train=False),
            opened.dataset_cfg.size_divisibility,
            opened.checkpoint.class_names,
            device,
            score_threshold,
            batch_size,
        )

    @classmethod
    def from_exported(
        cls,
        path: str | os.PathLike,
        threads: Optional[int] = None,
        score_threshold: float = 0.0,
        batch_size: int = 4,
        runtime: Optional[str] = None,
    ) -> Detector:
        """An exported model (scripts/export.py): ``model.xml`` in OpenVINO, ``model.onnx`` in ONNX
        Runtime (``runtime``: ``onnxruntime`` | ``openvino`` to choose), on the CPU with ``threads``
        threads (None: one per core); its preprocessing and classes are its ``model.json``'s."""
        exported = load_exported(path, threads, runtime)
        divisibility = exported.metadata.preprocessing.size_divisibility
        return cls(exported, exported.transform(), divisibility, exported.class_names, "cpu", score_threshold,
                   batch_size)  # fmt: skip

    def __call__(self, images: ImageInput | Sequence[ImageInput]) -> dict | list[dict]:
        """Detect on one image (returns one dict) or a list of them (returns a list of dicts)."""
        single = not isinstance(images, (list, tuple))
        inputs = [images] if single else list(images)
        results = []
        for start in range(0, len(inputs), self.batch_size):
            results += self.detect([as_uint8_image(x) for x in inputs[start : start + self.batch_size]])
        return results[0] if single else results

    @torch.inference_mode()
    def detect(self, images: Sequence[torch.Tensor]) -> list[dict]:
        """One batch: uint8 Tensor[3, H, W] images -> one result dict each (see the module docstring)."""
        if not images:
            return []
        batch = image_batch(images, self.transform, self.size_divisibility, self.buckets).to(self.device)
        sizes, _ = model_inputs(self.model, batch.image_sizes, None, self.device)
        outputs = self.model(batch.images, sizes)
        results = []
        for image, output, scale in zip(images, outputs, batch.scales):
            keep = output["scores"] >= self.score_threshold
            labels = output["labels"][keep].cpu()
            results.append({
                "boxes": boxes_to_original(output["boxes"][keep], scale, image.shape[1], image.shape[2]),
                "scores": output["scores"][keep].float().cpu(),
                "labels": labels,
                "class_names": [self.class_names[label - 1] for label in labels.tolist()],
            })  # fmt: skip
        return results
