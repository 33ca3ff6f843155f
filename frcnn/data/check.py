"""Whole-dataset validation (``scripts/check_dataset.py``): every problem, per-class counts.

Unlike building a dataset, which stops at the first bad annotation file format, this walks
everything: it parses every annotation, checks every box against the invalid-box policy and
decodes every image (in DataLoader workers), then reports all problems at once.

Beyond what the readers refuse, it warns of the same class and box twice in one image, of YOLO
label files without an image, and, for the training split (its boxes as training takes them: valid,
not crowd, difficult only with ``use_difficult``), of a class without a box, of a class under
1/IMBALANCE_RATIO of the commonest one's boxes, and of boxes the model's anchors do not fit
(:mod:`frcnn.data.anchor_fit`). A training split without any object is an error, as training
refuses it (:func:`check_training_set`).
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass, field

import numpy as np
import torch

from frcnn.data.anchor_fit import (
    AnchorFit,
    AnchorSpec,
    anchor_warning,
    fit_anchors,
    format_anchor_fit,
    resized_box_shapes,
)
from frcnn.data.annotation_index import AnnotationIndex
from frcnn.data.build import parse_split, prepare_root, resolve_layout, resolve_path
from frcnn.data.coco import parse_coco
from frcnn.data.config import VOC_CLASSES, DatasetFormat, InvalidBoxPolicy, Sampler, UnlistedClassPolicy
from frcnn.data.image_io import read_image_checked
from frcnn.data.validation import DatasetError, Problem, box_problems, find_invalid_boxes, split_unlisted
from frcnn.data.voc import describe_voc_box, parse_voc
from frcnn.data.yolo import folder_images, labels_folder
from frcnn.utils.progress import progress_bar

logger = logging.getLogger(__name__)

IMBALANCE_RATIO = 20  # the rarest class under 1/20 of the commonest one's boxes: a warning


@dataclass
class SplitReport:
    """Findings for one split: ``errors`` make the check fail, ``warnings`` do not."""

    split: str
    num_images: int = 0
    class_names: list[str] = field(default_factory=list)
    objects: np.ndarray | None = None  # int [K]: boxes per class
    images: np.ndarray | None = None  # int [K]: images containing the class
    difficult: np.ndarray | None = None  # int [K]
    crowd: np.ndarray | None = None  # int [K]
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    ignored: dict[str, int] = field(default_factory=dict)  # unlisted_classes=ignore: {class: objects left out}
    anchor_fit: AnchorFit | None = None  # the training split's boxes against the model's anchors


def _parse(cfg, split: str) -> tuple[AnnotationIndex, list[str], list[Problem], object, object]:
    """(index, class names, problems, describe(k) -> (file, object), ``cfg`` with the layout
    ``dataset=auto`` finds) of a split."""
    if cfg.format == DatasetFormat.auto:
        cfg = resolve_layout(cfg)[1]
    root = prepare_root(cfg)
    classes = list(cfg.classes) if cfg.classes is not None else None
    if cfg.format in (DatasetFormat.yolo, DatasetFormat.labelme, DatasetFormat.cvat):
        parsed = parse_split(cfg, root, train=split == "train")
        return parsed.index, parsed.class_names, parsed.problems, parsed.describe, cfg
    if DatasetFormat(cfg.format) is DatasetFormat.voc:
        classes = classes or list(VOC_CLASSES)
        index, problems = parse_voc(root, list(cfg.train_sets if split == "train" else cfg.test_sets), classes)
        return index, classes, problems, functools.partial(describe_voc_box, index, classes), cfg
    files = cfg.train if split == "train" else cfg.test
    path = resolve_path(files.annotations, root)
    index, classes, _, problems = parse_coco(path, resolve_path(files.images, root), classes)
    return index, classes, problems, lambda k: (path, f"annotation id {int(index.object_ids[k])}"), cfg


class _ImageCheck(torch.utils.data.Dataset):
    """Item i: None when image i decodes at its annotated size, else the Problem."""

    def __init__(self, index: AnnotationIndex):
        self.index = index

    def __len__(self) -> int:
        return self.index.num_images

    def __getitem__(self, i: int) -> Problem | None:
        try:
            read_image_checked(self.index.image_path(i), int(self.index.heights[i]), int(self.index.widths[i]))
        except DatasetError as exc:
            return exc.problems[0]
        return None


def check_images(index: AnnotationIndex, num_workers: int) -> list[Problem]:
    """Decode every image of ``index``; the problems found (missing, corrupt, wrong size)."""
    loader = torch.utils.data.DataLoader(_ImageCheck(index), batch_size=16, num_workers=num_workers, collate_fn=list)
    problems = []
    with progress_bar(len(loader), "decoding images", "batch", leave=False) as bar:
        for results in loader:
            problems += [p for p in results if p is not None]
            bar.update(1)
    return problems


def duplicate_boxes(index: AnnotationIndex, class_names: list[str], describe) -> list[Problem]:
    """One Problem per box that repeats an earlier box of its image (same class, same coordinates),
    naming both; ``describe(k)`` gives (file, object) of box ``k``."""
    finite = np.flatnonzero(np.isfinite(index.boxes).all(axis=1))
    rows = np.column_stack([index.box_image_index[finite], index.labels[finite], index.boxes[finite]])
    _, first, inverse = np.unique(rows, axis=0, return_index=True, return_inverse=True)
    first = finite[first[inverse.reshape(-1)]]  # (M',): the first box with the same row
    problems = []
    for k, original in zip(finite.tolist(), first.tolist()):
        if k == original:
            continue
        (file, obj), (first_file, first_obj) = describe(k), describe(original)
        where = first_obj if first_file == file else f"{first_file}: {first_obj}"
        x1, y1, x2, y2 = index.boxes[k].tolist()
        name = class_names[int(index.labels[k]) - 1]
        reason = f"duplicate of {where}: the same class {name!r} and box [{x1:g}, {y1:g}, {x2:g}, {y2:g}]"
        problems.append(Problem(file, obj, reason))
    return problems


def orphan_label_files(index: AnnotationIndex) -> list[Problem]:
    """YOLO: one Problem per label file without an image. The ``labels`` folders scanned are those
    of the split's image folders by Ultralytics' rule (the last ``images`` folder of the path
    becomes ``labels``), with their subfolders; ``labels/<sub>/a.txt`` is an orphan when
    ``images/<sub>/`` holds no image ``a.*``. Labels kept beside their images are not scanned."""
    folders = {(folder, labels_folder(folder)) for folder in index.image_dirs if labels_folder(folder)}
    # a folder inside another one is scanned with it
    tops = [pair for pair in folders if not any(pair[0].startswith(other + os.sep) for other, _ in folders)]
    problems = []
    for images, labels in sorted(tops):
        stems = {os.path.splitext(os.path.relpath(path, images))[0] for path in folder_images(images)}
        for parent, dirs, files in os.walk(labels, followlinks=True):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                path = os.path.join(parent, name)
                stem = os.path.splitext(os.path.relpath(path, labels))[0]
                if name.endswith(".txt") and not name.startswith(".") and stem not in stems:
                    reason = f"label file without an image: no image {stem}.* in {images}"
                    problems.append(Problem(path, None, reason))
    return problems


def class_balance(counts: np.ndarray, class_names: list[str], cfg, split: str) -> list[Problem]:
    """Warnings of the training split's per-class box ``counts`` (int [K]): each class without a
    box, and the rarest class under 1/IMBALANCE_RATIO of the commonest one's boxes."""
    where = "dataset.classes" if cfg.classes is not None else "classes"
    problems = [Problem(where, repr(name), f"no box in the {split} split: the model cannot learn this class")
                for name, count in zip(class_names, counts.tolist()) if count == 0]  # fmt: skip
    present = np.flatnonzero(counts)
    if len(present) < 2:
        return problems
    rare, common = present[np.argmin(counts[present])], present[np.argmax(counts[present])]
    if counts[rare] * IMBALANCE_RATIO < counts[common]:
        fix = ("dataset.sampler=repeat_factor repeats the images of rare classes"
               if Sampler(cfg.sampler) is not Sampler.repeat_factor
               else "dataset.sampler=repeat_factor already repeats the images of rare classes")  # fmt: skip
        boxes = "1 box" if counts[rare] == 1 else f"{counts[rare]} boxes"
        reason = (f"class {class_names[rare]!r} has {boxes}, under 1/{IMBALANCE_RATIO} of class "
                  f"{class_names[common]!r}'s {counts[common]}: the model sees it rarely; {fix}")  # fmt: skip
        problems.append(Problem(f"{split} split", None, reason))
    return problems


def check_split(
    cfg, split: str, images: bool = True, num_workers: int = 2, anchors: AnchorSpec | None = None
) -> SplitReport:
    """Validate one split of a ``dataset`` config, collecting every problem; ``anchors``: compare
    the training split's boxes with them (:mod:`frcnn.data.anchor_fit`)."""
    report = SplitReport(split)
    try:
        index, classes, problems, describe, resolved = _parse(cfg, split)
    except DatasetError as exc:  # nothing readable to go on (missing/invalid file or folder)
        report.errors += exc.problems
        return report
    if UnlistedClassPolicy(cfg.unlisted_classes) is UnlistedClassPolicy.ignore:
        report.ignored, problems = split_unlisted(problems)
    report.errors += problems
    invalid = find_invalid_boxes(index)
    bad_boxes = box_problems(index, invalid, describe)
    policy = InvalidBoxPolicy(cfg.invalid_boxes)
    if policy is InvalidBoxPolicy.error:
        report.errors += bad_boxes
    else:
        report.warnings += [Problem(p.file, p.obj, f"{p.reason} (invalid_boxes={policy})") for p in bad_boxes]
    report.warnings += duplicate_boxes(index, classes, describe)
    if resolved.format == DatasetFormat.yolo:
        report.warnings += orphan_label_files(index)
    if images:
        report.errors += check_images(index, num_workers)

    k = len(classes)
    report.num_images = index.num_images
    report.class_names = classes
    report.objects = np.bincount(index.labels - 1, minlength=k)
    pairs = np.unique(np.stack([index.box_image_index, index.labels - 1]), axis=1)
    report.images = np.bincount(pairs[1], minlength=k)
    report.difficult = np.bincount(index.labels[index.difficult] - 1, minlength=k)
    report.crowd = np.bincount(index.labels[index.iscrowd] - 1, minlength=k)
    if split == "train":
        trained = index.trained_boxes(cfg.use_difficult) & ~invalid.any
        if not trained.any():
            reason = f"no object to train on in its {index.num_images} images: training refuses this split"
            report.errors.append(Problem(f"{split} split", None, reason))
        else:
            report.warnings += class_balance(np.bincount(index.labels[trained] - 1, minlength=k), classes, cfg, split)
        if anchors is not None:
            boxes = resized_box_shapes(index, trained, cfg.test_min_size, cfg.max_size)
            report.anchor_fit = fit_anchors(boxes, anchors, cfg.test_min_size, cfg.max_size)
            warning = anchor_warning(report.anchor_fit)
            if warning is not None:
                report.warnings.append(Problem("model.anchors", None, warning))
    return report


def check_dataset(
    cfg, splits=("train", "test"), images: bool = True, num_workers: int = 2, anchors: AnchorSpec | None = None
) -> list[SplitReport]:
    """Validate the given splits of a ``dataset`` config (shapes: generated first if needed);
    ``anchors``: the model's, compared with the training split's boxes. A ``dataset=auto`` layout
    without a validation split has its training split checked whole (training holds
    ``dataset.val_fraction`` of it out): its test split is not checked apart."""
    if cfg.format == DatasetFormat.auto and "test" in splits:
        layout = resolve_layout(cfg)[0]
        if layout.splits[1] is None:
            logger.info("%s: the training split is checked whole", layout.describe(cfg.root))
            splits = [split for split in splits if split != "test"]
    return [check_split(cfg, split, images, num_workers, anchors) for split in splits]


def check_training_set(dataset, cfg) -> None:
    """Refuse a training ``dataset`` (a :class:`~frcnn.data.dataset.DetectionDataset` built from the
    ``dataset`` config ``cfg``) without any object to train on: DatasetError naming the dataset and
    the split (a detector trained on it learns nothing and scores 0). Each class without a box is a
    warning in the log."""
    index = dataset.index
    trained = index.trained_boxes(dataset.use_difficult)
    if not trained.any():
        where = f"dataset.root={cfg.root}"
        if cfg.format == DatasetFormat.coco:
            where = f"dataset.train.annotations={cfg.train.annotations}"
        elif cfg.format != DatasetFormat.auto:
            where += f", dataset.train_sets=[{','.join(cfg.train_sets)}]"
        left_out = f" ({index.num_boxes} crowd or difficult objects left out)" if index.num_boxes else ""
        reason = (f"the training split of dataset {cfg.name!r} has no object in its {index.num_images} images"
                  f"{left_out}: nothing to train on")  # fmt: skip
        raise DatasetError(Problem(where, None, reason))
    counts = np.bincount(index.labels[trained] - 1, minlength=len(dataset.class_names))
    for name, count in zip(dataset.class_names, counts.tolist()):
        if count == 0:
            logger.warning("%s: class %r has no box in the training split: the model cannot learn it", dataset.name,
                           name)  # fmt: skip


def format_report(report: SplitReport) -> str:
    """A per-class count table followed by every warning and error."""
    lines = [f"== {report.split}: {report.num_images} images, {len(report.errors)} errors, "
             f"{len(report.warnings)} warnings"]  # fmt: skip
    if report.objects is not None:
        width = max([len("class"), *map(len, report.class_names)])
        lines.append(f"{'label':>5}  {'class':<{width}}  {'objects':>8}  {'images':>7}  {'difficult':>9}  {'crowd':>6}")
        rows = zip(report.class_names, report.objects, report.images, report.difficult, report.crowd)
        for label, (name, n_obj, n_img, n_diff, n_crowd) in enumerate(rows, start=1):
            lines.append(f"{label:>5}  {name:<{width}}  {n_obj:>8}  {n_img:>7}  {n_diff:>9}  {n_crowd:>6}")
        lines.append(f"{'':>5}  {'total':<{width}}  {int(report.objects.sum()):>8}")
    if report.anchor_fit is not None:
        lines += format_anchor_fit(report.anchor_fit, report.split)
    if report.ignored:
        listed = ", ".join(f"{name} {count}" for name, count in report.ignored.items())
        lines.append(f"ignored (not in dataset.classes, unlisted_classes=ignore): {listed} objects")
    lines += [f"warning: {p}" for p in report.warnings]
    lines += [f"error: {p}" for p in report.errors]
    return "\n".join(lines)
