"""Compact, array-backed annotation index shared by the VOC and COCO datasets.

All per-image and per-box fields are numpy arrays (no list of Python dicts), so a
COCO train2017-sized index (118k images, 860k boxes) takes a few tens of MB, and
DataLoader workers forked from the main process do not duplicate it page by page through
reference-count writes (copy-on-read).

Boxes are float32 ``(x1, y1, x2, y2)`` in continuous 0-based pixel coordinates of the
original image; labels are int64 in ``1..K`` (0 is background).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AnnotationIndex:
    """N images and M boxes; the boxes of image ``i`` are ``box_offsets[i]:box_offsets[i+1]``.

    Attributes:
        image_ids (ndarray[N]): int64 (COCO) or str (VOC file stems).
        image_dirs (tuple[str]): the folders images live in (VOC: one per year).
        dir_index (ndarray[N] int16): index into ``image_dirs`` of each image.
        file_names (ndarray[N] bytes): UTF-8 file names, relative to their folder.
        heights, widths (ndarray[N] int32): original image size from the annotations.
        box_offsets (ndarray[N+1] int64): CSR offsets into the box arrays.
        boxes (ndarray[M, 4] float32): x1, y1, x2, y2.
        labels (ndarray[M] int64): 1..K.
        difficult, iscrowd (ndarray[M] bool).
        object_ids (ndarray[M] int64): where the box came from, for messages
            (VOC: 0-based position of the ``<object>`` in its XML; COCO: annotation id).
    """

    image_ids: np.ndarray
    image_dirs: tuple[str, ...]
    dir_index: np.ndarray
    file_names: np.ndarray
    heights: np.ndarray
    widths: np.ndarray
    box_offsets: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray
    iscrowd: np.ndarray
    object_ids: np.ndarray

    @classmethod
    def build(
        cls,
        *,
        image_ids,
        image_dirs,
        dir_index,
        file_names,
        heights,
        widths,
        boxes_per_image,
        boxes,
        labels,
        difficult,
        iscrowd,
        object_ids,
    ) -> AnnotationIndex:
        """Build from sequences; ``boxes_per_image`` (len N) gives the box count of each image
        and the box-level sequences are ordered image by image."""
        counts = np.asarray(boxes_per_image, dtype=np.int64)
        offsets = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        return cls(
            image_ids=np.asarray(image_ids),
            image_dirs=tuple(image_dirs),
            dir_index=np.asarray(dir_index, dtype=np.int16),
            file_names=np.char.encode(np.asarray(file_names, dtype=str), "utf-8")
            if len(file_names)
            else np.zeros(0, dtype="S1"),
            heights=np.asarray(heights, dtype=np.int32),
            widths=np.asarray(widths, dtype=np.int32),
            box_offsets=offsets,
            boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
            labels=np.asarray(labels, dtype=np.int64),
            difficult=np.asarray(difficult, dtype=bool),
            iscrowd=np.asarray(iscrowd, dtype=bool),
            object_ids=np.asarray(object_ids, dtype=np.int64),
        )

    @property
    def num_images(self) -> int:
        return len(self.heights)

    @property
    def num_boxes(self) -> int:
        return len(self.labels)

    @property
    def box_image_index(self) -> np.ndarray:
        """ndarray[M] int64: the image each box belongs to."""
        return np.repeat(np.arange(self.num_images), np.diff(self.box_offsets))

    def image_of_box(self, k: int) -> int:
        """The image box ``k`` belongs to."""
        return int(np.searchsorted(self.box_offsets, k, side="right")) - 1

    def box_slice(self, i: int) -> slice:
        return slice(int(self.box_offsets[i]), int(self.box_offsets[i + 1]))

    def image_path(self, i: int) -> str:
        folder = self.image_dirs[int(self.dir_index[i])]
        return f"{folder}/{self.file_names[i].decode('utf-8')}"

    def with_boxes(self, keep: np.ndarray, boxes: np.ndarray) -> AnnotationIndex:
        """A copy keeping the boxes where ``keep`` (bool[M]) holds, with coordinates ``boxes``."""
        counts = np.bincount(self.box_image_index[keep], minlength=self.num_images)
        offsets = np.zeros(self.num_images + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        return AnnotationIndex(
            image_ids=self.image_ids,
            image_dirs=self.image_dirs,
            dir_index=self.dir_index,
            file_names=self.file_names,
            heights=self.heights,
            widths=self.widths,
            box_offsets=offsets,
            boxes=np.ascontiguousarray(boxes[keep], dtype=np.float32),
            labels=self.labels[keep],
            difficult=self.difficult[keep],
            iscrowd=self.iscrowd[keep],
            object_ids=self.object_ids[keep],
        )

    def trained_boxes(self, use_difficult: bool) -> np.ndarray:
        """bool[M]: the boxes a training split gives the model: not crowd, and not difficult unless
        ``use_difficult`` (the targets :class:`~frcnn.data.dataset.DetectionDataset` trains on)."""
        return ~self.iscrowd & (use_difficult | ~self.difficult)

    def select_images(self, keep: np.ndarray) -> AnnotationIndex:
        """A copy with the images where ``keep`` (bool[N]) holds, and their boxes."""
        counts = np.diff(self.box_offsets)[keep]
        offsets = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        boxes = np.repeat(keep, np.diff(self.box_offsets))
        return AnnotationIndex(
            image_ids=self.image_ids[keep],
            image_dirs=self.image_dirs,
            dir_index=self.dir_index[keep],
            file_names=self.file_names[keep],
            heights=self.heights[keep],
            widths=self.widths[keep],
            box_offsets=offsets,
            boxes=self.boxes[boxes],
            labels=self.labels[boxes],
            difficult=self.difficult[boxes],
            iscrowd=self.iscrowd[boxes],
            object_ids=self.object_ids[boxes],
        )

    def nbytes(self) -> int:
        """Memory held by the index arrays, in bytes."""
        arrays = [getattr(self, name) for name in self.__dataclass_fields__]
        return sum(a.nbytes for a in arrays if isinstance(a, np.ndarray))
