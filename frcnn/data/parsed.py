"""What a format's parser gives (:class:`ParsedSplit`) and the dataset made of it (:class:`ParsedDetection`).

The YOLO, LabelMe and CVAT readers each turn their files into a :class:`ParsedSplit`: the
annotation index of one split, the class list, every problem found (a problem never stops the
parse: all of them are reported together) and a way to name box ``k`` in messages. The dataset
then applies the policies exactly as the VOC and COCO datasets do: objects of classes outside
``dataset.classes`` follow ``unlisted_classes``, degenerate and out-of-image boxes follow
``invalid_boxes``, and an image without objects is a valid image.

:class:`ObjectTable` is the column builder the parsers share: one ``add_image`` per image with its
objects, in order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from frcnn.data.annotation_index import AnnotationIndex
from frcnn.data.config import InvalidBoxPolicy, UnlistedClassPolicy
from frcnn.data.dataset import DetectionDataset
from frcnn.data.validation import (
    Problem,
    apply_invalid_box_policy,
    apply_unlisted_class_policy,
    raise_if_any,
    unlisted_reason,
)


@dataclass
class ParsedSplit:
    """One split of a dataset as its parser read it.

    index: the images and their objects (boxes float32 ``(x1, y1, x2, y2)``, continuous 0-based
    pixels of the original image; labels 1..K); class_names: the K names, ``class_names[label - 1]``;
    category_ids: the K ids written to predictions (1..K unless the format numbers its classes);
    problems: everything wrong that was found; describe: ``describe(k) -> (file, object)`` of box
    ``k`` of ``index``, for messages.
    """

    index: AnnotationIndex
    class_names: list[str]
    category_ids: list[int]
    problems: list[Problem]
    describe: Callable[[int], tuple[str, str]]


class ParsedDetection(DetectionDataset):
    """The dataset of a :class:`ParsedSplit`: unlisted classes and invalid boxes follow their
    policies (a DatasetError lists every remaining problem). Other keyword arguments go to
    :class:`DetectionDataset`."""

    def __init__(
        self,
        parsed: ParsedSplit,
        invalid_boxes: InvalidBoxPolicy | str = InvalidBoxPolicy.error,
        unlisted_classes: UnlistedClassPolicy | str = UnlistedClassPolicy.error,
        **kwargs,
    ):
        name = kwargs.get("name", "dataset")
        raise_if_any(apply_unlisted_class_policy(parsed.problems, unlisted_classes, name))
        index = apply_invalid_box_policy(parsed.index, invalid_boxes, parsed.describe, name)
        super().__init__(index=index, class_names=parsed.class_names, category_ids=parsed.category_ids, **kwargs)


COLUMNS = ("image_ids", "dir_index", "file_names", "heights", "widths", "boxes_per_image", "boxes", "labels",
           "difficult", "iscrowd", "object_ids")  # fmt: skip


class ReaderDetection(ParsedDetection):
    """The dataset of a format read from ``root``'s ``sets`` by the subclass's parser
    (:attr:`parse`: ``parse(root, sets, class_names, **parse_options) -> ParsedSplit``), named
    ``"<format> <set>+<set>"`` in messages unless ``name`` is given. Any problem found raises
    DatasetError listing them all (objects of classes not in ``class_names`` follow
    ``unlisted_classes``); invalid boxes follow ``invalid_boxes``. Other keyword arguments go to
    :class:`DetectionDataset`."""

    format_name: ClassVar[str]
    parse: ClassVar[Callable[..., ParsedSplit]]

    def __init__(
        self,
        root: str,
        sets: Sequence[str],
        class_names: Sequence[str] | None = None,
        invalid_boxes: InvalidBoxPolicy | str = InvalidBoxPolicy.error,
        unlisted_classes: UnlistedClassPolicy | str = UnlistedClassPolicy.error,
        parse_options: dict | None = None,
        **kwargs,
    ):
        self.root = root
        kwargs.setdefault("name", f"{self.format_name} {'+'.join(sets)}")
        parsed = type(self).parse(root, sets, class_names, **(parse_options or {}))
        super().__init__(parsed, invalid_boxes=invalid_boxes, unlisted_classes=unlisted_classes, **kwargs)


@dataclass
class ObjectTable:
    """Columns of an :class:`AnnotationIndex` filled image by image; labels come from class names.

    label_of: class name -> label (1..K); an object of another class is recorded as a problem
    (:func:`~frcnn.data.validation.unlisted_reason`) and left out.
    """

    label_of: dict[str, int]
    image_dirs: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    columns: dict[str, list] = field(default_factory=lambda: {key: [] for key in COLUMNS})
    # (annotation file, object description) of every box added, for messages
    sources: list[tuple[str, str]] = field(default_factory=list)
    # folder -> its position in image_dirs: one dict lookup per image, not a search of the list
    _dir_position: dict[str, int] = field(default_factory=dict, repr=False)

    @classmethod
    def for_classes(cls, class_names: Sequence[str]) -> ObjectTable:
        return cls(label_of={name: k + 1 for k, name in enumerate(class_names)})

    def image_dir(self, folder: str) -> int:
        """The position of ``folder`` in ``image_dirs`` (added on first use)."""
        position = self._dir_position.setdefault(folder, len(self.image_dirs))
        if position == len(self.image_dirs):
            self.image_dirs.append(folder)
        return position

    def add_image(
        self,
        image_id: str,
        folder: str,
        file_name: str,
        height: int,
        width: int,
        objects: Sequence[tuple[str, Sequence[float], bool, str]],
        annotation_file: str,
    ) -> None:
        """One image (``folder/file_name``, ``height`` x ``width`` pixels) with ``objects``: each
        ``(class name, (x1, y1, x2, y2), difficult, description)``, the description naming the
        object in its annotation file (``"line 3"``, ``"shape 0 ('cat')"``)."""
        c = self.columns
        kept = 0
        for k, (name, box, difficult, description) in enumerate(objects):
            label = self.label_of.get(name)
            if label is None:
                self.problems.append(Problem(annotation_file, description, unlisted_reason(name), unlisted_class=name))
                continue
            c["boxes"].append([float(v) for v in box])
            c["labels"].append(label)
            c["difficult"].append(bool(difficult))
            c["iscrowd"].append(False)
            c["object_ids"].append(k)
            self.sources.append((annotation_file, description))
            kept += 1
        c["image_ids"].append(image_id)
        c["dir_index"].append(self.image_dir(folder))
        c["file_names"].append(file_name)
        c["heights"].append(int(height))
        c["widths"].append(int(width))
        c["boxes_per_image"].append(kept)

    def split(self, class_names: Sequence[str], category_ids: Sequence[int] | None = None) -> ParsedSplit:
        """The :class:`ParsedSplit` of what was added (category ids 1..K unless given)."""
        index = AnnotationIndex.build(image_dirs=self.image_dirs, **self.columns)
        sources = list(self.sources)
        return ParsedSplit(
            index=index,
            class_names=list(class_names),
            category_ids=list(category_ids) if category_ids is not None else list(range(1, len(class_names) + 1)),
            problems=self.problems,
            describe=lambda k: sources[k],
        )
