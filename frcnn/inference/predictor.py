"""Detection on image files: batched inference, drawn images and a predictions.json list, in an
output folder that one prediction owns while it runs (:func:`own_output_dir`)."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from frcnn.data.image_io import read_image
from frcnn.data.validation import DatasetError
from frcnn.evaluation.results_io import predictions_from_detections
from frcnn.evaluation.voc_eval import Detections
from frcnn.inference.detector import Detector
from frcnn.utils.folder_lock import LOCK_FILE, FolderLock
from frcnn.utils.progress import progress_bar
from frcnn.utils.visualize import draw_detections

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
PREDICTIONS_FILE = "predictions.json"


class OutputFolderError(ValueError):
    """The output folder is in use by another prediction (or a training), or holds files of an
    earlier run; a usage error: the fix is another folder, or ``overwrite=true``."""


def list_images(path: str | Path) -> list[Path]:
    """The image files of ``path`` (one file, or a folder's files, not recursive), sorted.

    Files whose extension is not an image type are skipped with a log note.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input {path} does not exist")
    candidates = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    images = [p for p in candidates if p.suffix.lower() in IMAGE_SUFFIXES]
    skipped = [p.name for p in candidates if p.suffix.lower() not in IMAGE_SUFFIXES]
    if skipped:
        kinds = "/".join(IMAGE_SUFFIXES)
        logger.info("skipping %d file(s) that are not %s images: %s", len(skipped), kinds, ", ".join(skipped))
    return images


def check_output_dir(paths: list[Path], output_dir: str | Path) -> None:
    """Create ``output_dir`` and check that files can be written there, before any model is
    loaded; raise ValueError when it cannot be, or when it holds input images (drawn copies would
    replace them)."""
    output_dir = Path(output_dir).resolve()
    if any(path.parent.resolve() == output_dir for path in paths):
        raise ValueError(
            f"output {output_dir} holds the input images: drawing would overwrite them; use another folder"
        )
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=output_dir):
            pass
    except OSError as error:
        raise ValueError(f"output {output_dir} is not a writable folder ({error.strerror or error})") from error


def check_fresh_output(output_dir: str | Path, overwrite: bool) -> None:
    """Raise :class:`OutputFolderError` when ``output_dir`` holds anything but its lock, unless
    ``overwrite`` (then this run replaces the files it writes and keeps the others): a second run
    into one folder would mix its drawn images with the first's and replace its predictions.json."""
    output_dir = Path(output_dir)
    names = sorted(p.name for p in output_dir.iterdir() if p.name != LOCK_FILE)
    held = sorted(names, key=lambda name: name != PREDICTIONS_FILE)  # predictions.json first
    if not held or overwrite:
        return
    shown = ", ".join(held[:3]) + (f" and {len(held) - 3} more" if len(held) > 3 else "")
    raise OutputFolderError(
        f"output={output_dir} is not empty (it holds {shown}): choose a new or empty folder, or add "
        f"overwrite=true to replace the files this run writes there (the others are kept)"
    )


@contextmanager
def own_output_dir(paths: list[Path], output_dir: str | os.PathLike, overwrite: bool) -> Iterator[None]:
    """Own ``output_dir`` for the ``with`` block, before any model is loaded: check it
    (:func:`check_output_dir`), hold its lock (a folder in use by another prediction or a training
    is refused, naming it; :mod:`frcnn.utils.folder_lock`) and refuse it when it is not empty
    (:func:`check_fresh_output`). Raises :class:`OutputFolderError` or ValueError."""
    check_output_dir(paths, output_dir)
    with FolderLock(output_dir, holder="prediction", elsewhere="output", error=OutputFolderError):
        check_fresh_output(output_dir, overwrite)
        yield


def by_size(paths: list[Path]) -> list[Path]:
    """``paths`` ordered by image size (height, width, read from the file's header), so that the
    images batched together are padded little; a file whose header cannot be read goes last (it is
    reported when it is decoded)."""

    def size(path: Path) -> tuple:
        try:
            with Image.open(path) as image:
                return (0, image.height, image.width)
        except (OSError, ValueError):
            return (1, 0, 0)

    return sorted(paths, key=size)  # stable: equal sizes keep their order


class Predictor:
    """Runs a :class:`frcnn.Detector` on image files: drawn images and a predictions.json list.

    category_ids: the id written for label l is ``category_ids[l - 1]``; detections scoring
    below ``score_threshold`` are neither drawn nor written.
    """

    def __init__(self, detector: Detector, category_ids: list[int], score_threshold: float = 0.5):
        self.detector = detector
        self.category_ids = category_ids
        self.score_threshold = score_threshold
        self.unreadable: list[Path] = []  # inputs of the last predict() that could not be decoded

    def predict(self, paths: Iterable[Path], batch_size: int, output_dir: str | Path) -> list[dict]:
        """Detect on every readable image of ``paths``; write each, boxes drawn, to ``output_dir``
        under its own file name; return the predictions.json dicts (``image_id``: the file name,
        boxes in original-image pixels), in the order of ``paths``. Unreadable images are reported
        and skipped. Images are batched by size (:func:`by_size`), so that a batch pads little."""
        paths, self.unreadable = list(paths), []
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        written: dict[Path, list[dict]] = {}
        ordered = by_size(paths)
        with progress_bar(total=len(paths), desc="predict", unit="image") as bar:
            for chunk in (ordered[start : start + batch_size] for start in range(0, len(ordered), batch_size)):
                readable, images = [], []
                for path in chunk:
                    try:
                        images.append(read_image(str(path)))
                    except DatasetError as error:
                        logger.warning("skipping unreadable image: %s", error)
                        self.unreadable.append(path)
                        continue
                    readable.append(path)
                for path, image, result in zip(readable, images, self.detector.detect(images)):
                    written[path] = self._write(path, image, result, output_dir)
                bar.update(len(chunk))
        return [prediction for path in paths for prediction in written.get(path, [])]

    def _write(self, path: Path, image: torch.Tensor, result: dict, output_dir: Path) -> list[dict]:
        keep = result["scores"] >= self.score_threshold
        boxes, labels, scores = result["boxes"][keep], result["labels"][keep], result["scores"][keep]
        drawn = draw_detections(image, boxes, labels, scores, self.detector.class_names)
        Image.fromarray(drawn.permute(1, 2, 0).numpy()).save(output_dir / path.name)
        detections = Detections(np.zeros(len(boxes), dtype=np.int64), labels.numpy(), scores.numpy(), boxes.numpy())
        return predictions_from_detections(detections, [path.name], self.category_ids, self.detector.class_names)
