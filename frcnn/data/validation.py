"""Bad-data checks: every problem names the file, the object and the reason.

Structural problems (missing or malformed annotation files, JSON that is not COCO, missing or
undecodable images) are always errors. Objects of a class not in ``dataset.classes`` follow
``dataset.unlisted_classes``: ``error`` (a misspelt name is caught) or ``ignore`` (a subset of
the dataset's classes; one line counts what was left out, per class). Degenerate
(``x2 <= x1`` or ``y2 <= y1``) and out-of-image boxes follow ``dataset.invalid_boxes``:
``error`` refuses the dataset, ``clip`` clips them to the image (dropping those still
degenerate), ``drop`` drops them; either way one summary line counts what was changed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from frcnn.data.annotation_index import AnnotationIndex
from frcnn.data.config import InvalidBoxPolicy, UnlistedClassPolicy

logger = logging.getLogger(__name__)

MAX_LISTED_PROBLEMS = 20


@dataclass(frozen=True)
class Problem:
    """One piece of bad data: ``file`` (path), ``obj`` (which object, or None) and ``reason``."""

    file: str
    obj: str | None
    reason: str
    # The object's class name when the problem is only that it is not in dataset.classes.
    unlisted_class: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}: {self.obj}" if self.obj else self.file
        return f"{where}: {self.reason}"


class DatasetError(ValueError):
    """Raised for bad data; the message lists the problems (the first few when many).

    It survives the trip from a DataLoader worker to the main process: pickling keeps the
    problems (:meth:`__reduce__`), and torch re-raising it from a worker's formatted traceback
    (``DatasetError(text)``) recovers them from the text.
    """

    def __init__(self, problems: list[Problem] | Problem | str):
        if isinstance(problems, str):
            problems = _problems_from_text(problems)
        self.problems = [problems] if isinstance(problems, Problem) else list(problems)
        lines = [str(p) for p in self.problems[:MAX_LISTED_PROBLEMS]]
        if len(self.problems) > MAX_LISTED_PROBLEMS:
            lines.append(f"... and {len(self.problems) - MAX_LISTED_PROBLEMS} more problems")
        count = len(self.problems)
        head = "invalid dataset: " if count == 1 else f"invalid dataset, {count} problems:\n  "
        super().__init__(head + "\n  ".join(lines))

    def __reduce__(self):
        return type(self), (self.problems,)


def _problems_from_text(text: str) -> list[Problem]:
    """The problems listed in a DatasetError's message, found in ``text`` (e.g. a DataLoader
    worker's formatted traceback, which ends with ``...DatasetError: <message>``).

    Each problem line ``file: reason`` is split at its first ": " (the text of the line, which is
    what gets reported, is kept exactly); text without a DatasetError message is one problem.
    """
    marker = "DatasetError: "
    message = text[text.rindex(marker) + len(marker) :] if marker in text else text
    lines = [line.strip() for line in message.strip().splitlines()]
    if lines and lines[0].startswith("invalid dataset: "):
        lines = [lines[0].removeprefix("invalid dataset: ")]
    elif lines and lines[0].startswith("invalid dataset, "):
        lines = [line for line in lines[1:] if line and not line.startswith("... and ")]
    problems = []
    for line in lines or [text.strip()]:
        file, _, reason = line.partition(": ")
        problems.append(Problem(file, None, reason) if reason else Problem("<unknown file>", None, line))
    return problems


def raise_if_any(problems: list[Problem]) -> None:
    if problems:
        raise DatasetError(problems)


def unlisted_reason(name: str) -> str:
    """The reason of an object whose class ``name`` is not in dataset.classes."""
    return f"unknown class name {name!r} (not in dataset.classes; dataset.unlisted_classes=ignore leaves it out)"


def split_unlisted(problems: list[Problem]) -> tuple[dict[str, int], list[Problem]]:
    """(``{class name: objects}`` of the problems that are only an unlisted class, by count then
    name; the other problems)."""
    counts: dict[str, int] = {}
    for problem in problems:
        if problem.unlisted_class is not None:
            counts[problem.unlisted_class] = counts.get(problem.unlisted_class, 0) + 1
    rest = [p for p in problems if p.unlisted_class is None]
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0]))), rest


def apply_unlisted_class_policy(
    problems: list[Problem], policy: UnlistedClassPolicy | str, dataset_name: str
) -> list[Problem]:
    """``problems`` without the unlisted-class ones under ``policy="ignore"`` (their objects are
    already left out of the index; one log line counts them per class), unchanged under "error"."""
    if UnlistedClassPolicy(policy) is UnlistedClassPolicy.error:
        return problems
    counts, rest = split_unlisted(problems)
    if counts:
        listed = ", ".join(f"{name} ({count})" for name, count in counts.items())
        logger.info("%s: ignoring %d objects of classes not in dataset.classes: %s", dataset_name,
                    sum(counts.values()), listed)  # fmt: skip
    return rest


@dataclass(frozen=True)
class InvalidBoxes:
    """Masks (bool[M]) of the invalid boxes of an index."""

    nonfinite: np.ndarray
    degenerate: np.ndarray  # x2 <= x1 or y2 <= y1
    outside: np.ndarray  # some coordinate outside [0, width] x [0, height]

    @property
    def any(self) -> np.ndarray:
        return self.nonfinite | self.degenerate | self.outside

    def reason(self, k: int) -> str:
        if self.nonfinite[k]:
            return "box has a non-finite coordinate"
        if self.degenerate[k]:
            return "degenerate box (x2 <= x1 or y2 <= y1)"
        return "box extends outside the image"


def find_invalid_boxes(index: AnnotationIndex) -> InvalidBoxes:
    """Vectorised check of every box of ``index`` against its image size."""
    boxes = index.boxes
    image = index.box_image_index
    width = index.widths[image].astype(np.float32)
    height = index.heights[image].astype(np.float32)
    nonfinite = ~np.isfinite(boxes).all(axis=1)
    with np.errstate(invalid="ignore"):
        degenerate = ~nonfinite & ((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1]))
        outside = ~nonfinite & ((boxes[:, 0] < 0) | (boxes[:, 1] < 0) | (boxes[:, 2] > width) | (boxes[:, 3] > height))
    return InvalidBoxes(nonfinite, degenerate, outside)


def box_problems(
    index: AnnotationIndex, invalid: InvalidBoxes, describe: Callable[[int], tuple[str, str]]
) -> list[Problem]:
    """One Problem per invalid box; ``describe(k)`` gives (file, object) of box ``k``."""
    problems = []
    image_of_box = index.box_image_index
    for k in np.flatnonzero(invalid.any):
        file, obj = describe(int(k))
        x1, y1, x2, y2 = index.boxes[k].tolist()
        i = int(image_of_box[k])
        size = f"image {int(index.widths[i])}x{int(index.heights[i])}"
        reason = f"{invalid.reason(int(k))}: [{x1:g}, {y1:g}, {x2:g}, {y2:g}] in {size}"
        problems.append(Problem(file, obj, reason))
    return problems


def apply_invalid_box_policy(
    index: AnnotationIndex,
    policy: InvalidBoxPolicy | str,
    describe: Callable[[int], tuple[str, str]],
    name: str,
) -> AnnotationIndex:
    """Enforce ``policy`` on the degenerate and out-of-image boxes of ``index``.

    Raises DatasetError (every invalid box named) under ``error``; otherwise returns an index
    with the boxes clipped and/or dropped and logs one summary line counting them.
    """
    policy = InvalidBoxPolicy(policy)
    invalid = find_invalid_boxes(index)
    bad = invalid.any
    if not bad.any():
        return index
    if policy is InvalidBoxPolicy.error:
        raise DatasetError(box_problems(index, invalid, describe))
    boxes = index.boxes.copy()
    keep = ~bad
    clipped = 0
    if policy is InvalidBoxPolicy.clip:
        image = index.box_image_index
        fixable = invalid.outside & ~invalid.degenerate & ~invalid.nonfinite
        w = index.widths[image][fixable].astype(np.float32)
        h = index.heights[image][fixable].astype(np.float32)
        b = boxes[fixable]
        b[:, 0::2] = np.clip(b[:, 0::2], 0, w[:, None])
        b[:, 1::2] = np.clip(b[:, 1::2], 0, h[:, None])
        boxes[fixable] = b
        valid_after = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
        fixed = np.flatnonzero(fixable)[valid_after]
        keep[fixed] = True
        clipped = len(fixed)
    dropped = int(bad.sum()) - clipped
    logger.warning(
        "%s: %d of %d boxes invalid (degenerate or outside the image); invalid_boxes=%s: "
        "%d clipped, %d dropped",
        name, int(bad.sum()), index.num_boxes, policy, clipped, dropped,
    )  # fmt: skip
    return index.with_boxes(keep, boxes)
