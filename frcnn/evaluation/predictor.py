"""Detection on image files: batched inference, drawn images and a predictions.json list."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from frcnn.data import collate
from frcnn.data.image_io import read_image
from frcnn.data.transforms import DetectionTransform
from frcnn.data.validation import DatasetError
from frcnn.evaluation.evaluator import boxes_to_original
from frcnn.evaluation.results_io import predictions_from_detections
from frcnn.evaluation.voc_eval import Detections
from frcnn.utils.visualize import draw_detections

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


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
    """Raise ValueError when ``output_dir`` holds input images: drawn copies would replace them."""
    output_dir = Path(output_dir).resolve()
    if any(path.parent.resolve() == output_dir for path in paths):
        raise ValueError(f"output {output_dir} holds the input images: drawing would overwrite them; use another folder")


class Predictor:
    """Runs a detector on image files with the evaluation's test-time resize and normalisation.

    model: the detector (eval mode, on ``device``). transform: the dataset's test transform
    (``frcnn.data.transforms.build_transform(cfg.dataset, train=False)``). category_ids: the
    id written for label l is ``category_ids[l - 1]``.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        transform: DetectionTransform,
        size_divisibility: int,
        device: torch.device,
        class_names: list[str],
        category_ids: list[int],
        score_threshold: float = 0.5,
    ):
        self.model = model.eval()
        self.transform = transform
        self.size_divisibility = size_divisibility
        self.device = torch.device(device)
        self.class_names = class_names
        self.category_ids = category_ids
        self.score_threshold = score_threshold

    def _sample(self, image: torch.Tensor, index: int, name: str) -> tuple[torch.Tensor, dict]:
        tensor, boxes, scale = self.transform(image, torch.zeros(0, 4))
        empty = torch.zeros(0, dtype=torch.bool)
        target = {"boxes": boxes, "labels": torch.zeros(0, dtype=torch.int64), "difficult": empty, "iscrowd": empty,
                  "image_id": name, "index": index, "orig_size": tuple(image.shape[1:]), "scale": scale}  # fmt: skip
        return tensor, target

    @torch.no_grad()
    def predict(self, paths: Iterable[Path], batch_size: int, output_dir: str | Path) -> list[dict]:
        """Detect on every readable image of ``paths``; write each, boxes drawn, to ``output_dir``
        under its own file name; return the predictions.json dicts (``image_id``: the file name,
        boxes in original-image pixels). Unreadable images are reported and skipped."""
        paths = list(paths)
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        predictions = []
        with tqdm(total=len(paths), desc="predict", unit="image", dynamic_ncols=True) as bar:
            for chunk in (paths[start : start + batch_size] for start in range(0, len(paths), batch_size)):
                images, samples = [], []
                for path in chunk:
                    try:
                        image = read_image(str(path))
                    except DatasetError as error:
                        logger.warning("skipping unreadable image: %s", error)
                        continue
                    images.append((path, image))
                    samples.append(self._sample(image, len(samples), path.name))
                if samples:
                    batch = collate(samples, self.size_divisibility).to(self.device)
                    outputs = self.model(batch.images, batch.image_sizes)
                    for (path, image), output, scale in zip(images, outputs, batch.scales):
                        predictions += self._write(path, image, output, scale, output_dir)
                bar.update(len(chunk))
        return predictions

    def _write(
        self, path: Path, image: torch.Tensor, output: dict, scale: torch.Tensor, output_dir: Path
    ) -> list[dict]:
        keep = output["scores"] >= self.score_threshold
        boxes = boxes_to_original(output["boxes"][keep], scale, image.shape[1], image.shape[2])
        labels, scores = output["labels"][keep].cpu(), output["scores"][keep].float().cpu()
        drawn = draw_detections(image, boxes, labels, scores, self.class_names)
        Image.fromarray(drawn.permute(1, 2, 0).numpy()).save(output_dir / path.name)
        detections = Detections(np.zeros(len(boxes), dtype=np.int64), labels.numpy(), scores.numpy(), boxes.numpy())
        return predictions_from_detections(detections, [path.name], self.category_ids)
