"""Synthetic "shapes" detection dataset, written to disk in real VOC and COCO formats.

Each image (sides drawn from ``[min_image_size, max_image_size]``) has a solid or
linear-gradient background with mild Gaussian noise and 1..``max_objects`` filled circles,
squares and triangles in random colours (``empty_fraction`` of the images have none).
Shapes may overlap, but a placement that would leave an earlier shape less than
``min_visible`` of its area visible is redrawn. Boxes are the tight bounds of each shape's
*visible* pixels. Every image is drawn from its own RNG stream ``(seed, split, i)``, so the
dataset is a pure function of its parameters.

Layout under ``root`` (the same boxes in both formats)::

    JPEGImages/<split>_<i>.jpg
    Annotations/<split>_<i>.xml          VOC XML, 1-based inclusive coordinates
    ImageSets/Main/{train,test}.txt
    coco/instances_{train,test}.json     COCO, ids 1..N (train) then N+1.. (test), categories 1..3
    shapes.json                          the parameters; written last, marks a complete dataset

Generation is skipped when ``shapes.json`` matches the parameters; it holds a file lock
while generating, so concurrent callers (e.g. distributed ranks) wait and then reuse it.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import logging
import os
import xml.etree.ElementTree as ET

import numpy as np
from PIL import Image, ImageDraw

from frcnn.data.config import SHAPES_CLASSES, ShapesConfig
from frcnn.utils.files import write_atomic

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
MARKER = "shapes.json"
SPLITS = ("train", "test")
MAX_PLACEMENT_TRIES = 30
MIN_COLOUR_DISTANCE = 120.0  # RGB L2 distance between a shape and the background mean


def _background(rng: np.random.Generator, height: int, width: int, noise_std: float) -> np.ndarray:
    """float32 [H, W, 3]: a solid colour or a linear gradient between two, plus noise."""
    c1, c2 = rng.uniform(0, 255, size=(2, 3))
    if rng.random() < 0.5:
        image = np.broadcast_to(c1, (height, width, 3)).astype(np.float32)
    else:
        angle = rng.uniform(0, 2 * np.pi)
        y, x = np.mgrid[0:height, 0:width].astype(np.float32)
        t = x * np.cos(angle) + y * np.sin(angle)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        image = c1 * (1 - t[..., None]) + c2 * t[..., None]
    return (image + rng.normal(0, noise_std, size=(height, width, 3))).astype(np.float32)


def _shape_mask(label: int, x0: float, y0: float, side: float, flip: bool, height: int, width: int) -> np.ndarray:
    """bool [H, W] mask of a filled shape in the square ``[x0, x0 + side] x [y0, y0 + side]``."""
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    x1, y1 = x0 + side, y0 + side
    name = SHAPES_CLASSES[label - 1]
    if name == "circle":
        draw.ellipse((x0, y0, x1, y1), fill=1)
    elif name == "square":
        draw.rectangle((x0, y0, x1, y1), fill=1)
    else:  # triangle, apex up (or down when flipped)
        apex, base = (y1, y0) if flip else (y0, y1)
        draw.polygon([(x0, base), (x1, base), ((x0 + x1) / 2, apex)], fill=1)
    return np.asarray(canvas, dtype=bool)


def _shape_colour(rng: np.random.Generator, background_mean: np.ndarray) -> np.ndarray:
    for _ in range(20):
        colour = rng.uniform(0, 255, size=3)
        if np.linalg.norm(colour - background_mean) >= MIN_COLOUR_DISTANCE:
            break
    return colour


def render_image(seed: int, split: int, i: int, p: ShapesConfig) -> tuple[np.ndarray, list[tuple[int, list[int], int]]]:
    """One image: (uint8 [H, W, 3], objects as (label, [x1, y1, x2, y2] ints, visible area)).

    Box coordinates are continuous 0-based: the visible pixel columns are ``x1 .. x2 - 1``.
    """
    rng = np.random.default_rng([seed, split, i])
    height, width = (int(v) for v in rng.integers(p.min_image_size, p.max_image_size + 1, size=2))
    image = _background(rng, height, width, p.noise_std)
    background_mean = image.reshape(-1, 3).mean(axis=0)
    num_objects = 0 if rng.random() < p.empty_fraction else int(rng.integers(1, p.max_objects + 1))
    short = min(height, width)
    placed: list[tuple[int, np.ndarray, int]] = []  # (label, visible mask, full area)
    for _ in range(num_objects):
        for _ in range(MAX_PLACEMENT_TRIES):
            label = int(rng.integers(1, len(SHAPES_CLASSES) + 1))
            side = rng.uniform(p.min_object_size, p.max_object_size) * short
            x0, y0 = rng.uniform(0, width - side - 1), rng.uniform(0, height - side - 1)
            mask = _shape_mask(label, x0, y0, side, bool(rng.random() < 0.5), height, width)
            if all((visible & ~mask).sum() >= p.min_visible * area for _, visible, area in placed):
                break
        else:
            continue  # no placement keeps the others visible enough: one object fewer
        for _, visible, _ in placed:
            visible &= ~mask
        placed.append((label, mask, int(mask.sum())))
        image[mask] = _shape_colour(rng, background_mean)
    objects = []
    for label, visible, _ in placed:
        rows, cols = np.flatnonzero(visible.any(axis=1)), np.flatnonzero(visible.any(axis=0))
        objects.append((label, [int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1], int(visible.sum())))
    return np.clip(image, 0, 255).astype(np.uint8), objects


def _voc_xml(stem: str, height: int, width: int, objects) -> bytes:
    ann = ET.Element("annotation")
    ET.SubElement(ann, "folder").text = "shapes"
    ET.SubElement(ann, "filename").text = f"{stem}.jpg"
    size = ET.SubElement(ann, "size")
    for key, value in (("width", width), ("height", height), ("depth", 3)):
        ET.SubElement(size, key).text = str(value)
    for label, (x1, y1, x2, y2), _ in objects:
        obj = ET.SubElement(ann, "object")
        ET.SubElement(obj, "name").text = SHAPES_CLASSES[label - 1]
        ET.SubElement(obj, "truncated").text = "0"
        ET.SubElement(obj, "difficult").text = "0"
        box = ET.SubElement(obj, "bndbox")
        # continuous [x1, x2) -> 1-based inclusive pixel indices x1 + 1 .. x2
        for key, value in (("xmin", x1 + 1), ("ymin", y1 + 1), ("xmax", x2), ("ymax", y2)):
            ET.SubElement(box, key).text = str(value)
    ET.indent(ann)
    return ET.tostring(ann, encoding="utf-8")


def _generate_split(root: str, split: int, count: int, first_id: int, seed: int, p: ShapesConfig) -> None:
    name = SPLITS[split]
    stems, images, annotations = [], [], []
    for i in range(count):
        stem = f"{name}_{i:06d}"
        pixels, objects = render_image(seed, split, i, p)
        height, width = pixels.shape[:2]
        Image.fromarray(pixels).save(os.path.join(root, "JPEGImages", f"{stem}.jpg"), quality=92)
        write_atomic(os.path.join(root, "Annotations", f"{stem}.xml"), _voc_xml(stem, height, width, objects))
        image_id = first_id + i
        stems.append(stem)
        images.append({"id": image_id, "file_name": f"{stem}.jpg", "height": height, "width": width})
        for label, (x1, y1, x2, y2), area in objects:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": label,
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": area, "iscrowd": 0})  # fmt: skip
    write_atomic(os.path.join(root, "ImageSets", "Main", f"{name}.txt"), "".join(f"{s}\n" for s in stems).encode())
    categories = [{"id": k + 1, "name": n, "supercategory": "shape"} for k, n in enumerate(SHAPES_CLASSES)]
    coco = {"images": images, "annotations": annotations, "categories": categories}
    write_atomic(os.path.join(root, "coco", f"instances_{name}.json"), json.dumps(coco).encode())


def generate_shapes(root: str, num_train: int = 1000, num_test: int = 200, seed: int = 0, **params) -> str:
    """Write the shapes dataset into ``root`` unless a matching one is already there.

    ``params`` override the other :class:`ShapesConfig` fields (e.g. ``max_image_size=96``
    for a tiny test set). Safe to call concurrently from several processes. Returns ``root``.
    """
    config = ShapesConfig(num_train=num_train, num_test=num_test, **params)
    wanted = {"version": FORMAT_VERSION, "seed": seed, "classes": list(SHAPES_CLASSES), **dataclasses.asdict(config)}
    marker = os.path.join(root, MARKER)
    for folder in ("JPEGImages", "Annotations", os.path.join("ImageSets", "Main"), "coco"):
        os.makedirs(os.path.join(root, folder), exist_ok=True)
    with open(os.path.join(root, ".shapes.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if _read_marker(marker) == wanted:
            return root
        if os.path.exists(marker):
            os.remove(marker)  # a crash below must not leave a stale "complete" marker
        logger.info("generating the shapes dataset (%d train, %d test images) in %s", num_train, num_test, root)
        _generate_split(root, 0, num_train, 1, seed, config)
        _generate_split(root, 1, num_test, num_train + 1, seed, config)
        write_atomic(marker, json.dumps(wanted, indent=2).encode())
    return root


def _read_marker(path: str) -> dict | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None
