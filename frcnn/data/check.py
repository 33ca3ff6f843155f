"""Whole-dataset validation (``scripts/check_dataset.py``): every problem, per-class counts.

Unlike building a dataset, which stops at the first bad annotation file format, this walks
everything: it parses every annotation, checks every box against the invalid-box policy and
decodes every image (in DataLoader workers), then reports all problems at once.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import torch

from frcnn.data.annotation_index import AnnotationIndex
from frcnn.data.build import parse_split, prepare_root, resolve_layout, resolve_path
from frcnn.data.coco import parse_coco
from frcnn.data.config import VOC_CLASSES, DatasetFormat, InvalidBoxPolicy, UnlistedClassPolicy
from frcnn.data.image_io import read_image_checked
from frcnn.data.validation import DatasetError, Problem, box_problems, find_invalid_boxes, split_unlisted
from frcnn.data.voc import describe_voc_box, parse_voc
from frcnn.utils.progress import progress_bar


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


def _parse(cfg, split: str) -> tuple[AnnotationIndex, list[str], list[Problem], object]:
    """(index, class names, problems, describe(k) -> (file, object)) of a split."""
    if cfg.format == DatasetFormat.auto:
        cfg = resolve_layout(cfg)[1]
    root = prepare_root(cfg)
    classes = list(cfg.classes) if cfg.classes is not None else None
    if cfg.format in (DatasetFormat.yolo, DatasetFormat.labelme, DatasetFormat.cvat):
        parsed = parse_split(cfg, root, train=split == "train")
        return parsed.index, parsed.class_names, parsed.problems, parsed.describe
    if DatasetFormat(cfg.format) is DatasetFormat.voc:
        classes = classes or list(VOC_CLASSES)
        index, problems = parse_voc(root, list(cfg.train_sets if split == "train" else cfg.test_sets), classes)
        return index, classes, problems, functools.partial(describe_voc_box, index, classes)
    files = cfg.train if split == "train" else cfg.test
    path = resolve_path(files.annotations, root)
    index, classes, _, problems = parse_coco(path, resolve_path(files.images, root), classes)
    return index, classes, problems, lambda k: (path, f"annotation id {int(index.object_ids[k])}")


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


def check_split(cfg, split: str, images: bool = True, num_workers: int = 2) -> SplitReport:
    """Validate one split of a ``dataset`` config, collecting every problem."""
    report = SplitReport(split)
    try:
        index, classes, problems, describe = _parse(cfg, split)
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
    return report


def check_dataset(cfg, splits=("train", "test"), images: bool = True, num_workers: int = 2) -> list[SplitReport]:
    """Validate the given splits of a ``dataset`` config (shapes: generated first if needed)."""
    return [check_split(cfg, split, images, num_workers) for split in splits]


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
    if report.ignored:
        listed = ", ".join(f"{name} {count}" for name, count in report.ignored.items())
        lines.append(f"ignored (not in dataset.classes, unlisted_classes=ignore): {listed} objects")
    lines += [f"warning: {p}" for p in report.warnings]
    lines += [f"error: {p}" for p in report.errors]
    return "\n".join(lines)
