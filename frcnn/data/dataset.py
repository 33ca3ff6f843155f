"""The detection dataset shared by the VOC and COCO formats.

A dataset is an :class:`AnnotationIndex` (all annotations, compact arrays), the class list
and a transform. ``ds[i]`` decodes one image; everything else (sizes, boxes, aspect ratios,
ground truth for evaluation) comes from the index without decoding images.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import numpy as np
import torch
from pycocotools.coco import COCO

from frcnn.data.annotation_index import AnnotationIndex
from frcnn.data.ground_truth import GroundTruth, coco_ground_truth, ground_truth_arrays
from frcnn.data.image_io import read_image_checked
from frcnn.data.transforms import DetectionTransform, PolicyTransform


class DetectionDataset(torch.utils.data.Dataset):
    """Images with box annotations; subclasses parse a format into the index.

    Args:
        index: the annotations (boxes in original-image coordinates, labels 1..K).
        class_names: K names; ``class_names[label - 1]`` is the class of ``label``.
        category_ids: K ids written to predictions for labels 1..K.
        transform: applied in ``__getitem__`` (a training policy may drop boxes that leave its crop,
            with their labels, difficult and iscrowd flags).
        train: training targets exclude crowd boxes, and difficult ones unless ``use_difficult``.
        use_difficult: keep difficult objects in training targets.
        name: used in log messages.
    """

    def __init__(
        self,
        *,
        index: AnnotationIndex,
        class_names: list[str],
        category_ids: list[int],
        transform: DetectionTransform | PolicyTransform,
        train: bool,
        use_difficult: bool = True,
        name: str = "dataset",
    ):
        self.index = index
        self.class_names = list(class_names)
        self.category_ids = list(category_ids)
        self.transform = transform
        self.train = train
        self.use_difficult = use_difficult
        self.name = name

    def __len__(self) -> int:
        return self.index.num_images

    @functools.cached_property
    def image_ids(self) -> list:
        """COCO: int image ids; VOC: file stems (str). Built on first use (main process)."""
        return self.index.image_ids.tolist()

    @property
    def aspect_ratios(self) -> np.ndarray:
        """ndarray[N] float: width / height of each image, from the annotations."""
        return self.index.widths / self.index.heights

    def image_path(self, i: int) -> str:
        return self.index.image_path(i)

    def select_images(self, keep: np.ndarray) -> DetectionDataset:
        """This dataset with only the images where ``keep`` (bool[N]) holds."""
        subset = copy.copy(self)
        for cached in ("image_ids", "_ground_truth", "_coco_gt"):
            subset.__dict__.pop(cached, None)
        subset.index = self.index.select_images(keep)
        return subset

    def get_annotation(self, i: int) -> dict[str, Any]:
        """Ground truth of image ``i`` without decoding it: all objects, crowd and difficult
        included. Boxes Tensor[N, 4] float32 in original-image coordinates, labels Tensor[N]
        int64 in 1..K, difficult and iscrowd Tensor[N] bool."""
        ix = self.index
        s = ix.box_slice(i)
        return {
            "image_id": ix.image_ids[i].item(),
            "height": int(ix.heights[i]),
            "width": int(ix.widths[i]),
            "boxes": torch.from_numpy(ix.boxes[s].copy()),
            "labels": torch.from_numpy(ix.labels[s].copy()),
            "difficult": torch.from_numpy(ix.difficult[s].copy()),
            "iscrowd": torch.from_numpy(ix.iscrowd[s].copy()),
        }

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, dict[str, Any]]:
        """``item`` is an index or ``(index, sample_seed)`` from the training batch sampler.

        Returns the transformed image (float32 Tensor[3, h, w], normalised) and a target with
        ``boxes`` Tensor[N, 4] float32 (resized coordinates), ``labels`` [N] int64,
        ``difficult`` [N] bool, ``iscrowd`` [N] bool, ``image_id``, ``index``, ``orig_size``
        (H, W), ``image_size`` (h, w) and ``scale`` (sx, sy) with resized = original * scale. Under a
        cropping augmentation policy (training only) ``scale`` is the factor objects were magnified
        by and boxes are also shifted by the crop (:class:`~frcnn.data.transforms.PolicyTransform`).
        """
        i, seed = item if isinstance(item, tuple) else (item, None)
        i = int(i)
        ann = self.get_annotation(i)
        keep = torch.ones(len(ann["labels"]), dtype=torch.bool)
        if self.train:
            keep &= ~ann["iscrowd"]
            if not self.use_difficult:
                keep &= ~ann["difficult"]
        image = read_image_checked(self.image_path(i), ann["height"], ann["width"])
        generator = torch.Generator().manual_seed(int(seed)) if seed is not None else None
        per_box = {key: ann[key][keep] for key in ("boxes", "labels", "difficult", "iscrowd")}
        image, per_box, scale = self.transform.transform_target(image, per_box, generator)
        target = {
            **per_box,
            "image_id": ann["image_id"],
            "index": i,
            "orig_size": (ann["height"], ann["width"]),
            "image_size": tuple(image.shape[-2:]),
            "scale": scale,
        }
        return image, target

    def ground_truth(self) -> GroundTruth:
        """Every object of this split as the VOC metric's arrays (built once)."""
        if not hasattr(self, "_ground_truth"):
            self._ground_truth = ground_truth_arrays(self)
        return self._ground_truth

    def coco_gt(self) -> COCO:
        """pycocotools COCO ground truth of this split (ids match image_ids/category_ids)."""
        if not hasattr(self, "_coco_gt"):
            self._coco_gt = self._build_coco_gt()
        return self._coco_gt

    def _build_coco_gt(self) -> COCO:
        """:meth:`ground_truth` as a COCO index (VOC and other sources that are not COCO files)."""
        ix = self.index
        images = [
            {"id": image_id, "height": int(h), "width": int(w), "file_name": ix.image_path(i)}
            for i, (image_id, h, w) in enumerate(zip(self.image_ids, ix.heights, ix.widths))
        ]
        return coco_ground_truth(self.ground_truth(), images, self.category_ids, self.class_names)
