"""LabelMe format: one JSON file per image, the splits as subfolders of ``root``.

Layout: set ``"train"`` reads every ``root/train/**/*.json`` (recursively, in sorted order); the set
``"."`` reads ``root`` itself (every JSON file under it). A file is
``{"shapes": [{"label", "points", "shape_type", ...}], "imagePath", "imageData", "imageHeight",
"imageWidth", ...}`` with ``imagePath`` relative to the JSON file's folder; the image id is the JSON
path relative to ``root`` without ``.json``, with forward slashes (``"train/cats/a"``).

Coordinates: LabelMe points are continuous pixel coordinates, (0, 0) the top-left corner of the image,
and are used as they are. A ``rectangle`` (two opposite corners, in any order) becomes the min/max box
of its points, a ``polygon`` (the default when ``shape_type`` is missing) the bounding box of its
points, a ``circle`` (its center, then a point on it) the bounding box of the circle. Other shape types
(point, line, linestrip, mask, ...) are not boxes: each one is a problem.

When the image file is missing, the image embedded in the JSON (``imageData``, base64 of the file) is
written once to ``$XDG_CACHE_HOME/frcnn/labelme_images`` (default ``~/.cache``), named by the JSON's
absolute path, size and modification time, and read from there.
"""

from __future__ import annotations

import base64
import binascii
import functools
import glob
import hashlib
import json
import math
import os
from collections.abc import Sequence

from frcnn.data.index_cache import cached_split
from frcnn.data.parsed import ObjectTable, ParsedSplit, ReaderDetection
from frcnn.data.validation import DatasetError, Problem
from frcnn.utils.cache import frcnn_cache_dir

BOX_SHAPES = ("rectangle", "polygon", "circle")


def image_cache_dir() -> str:
    """Where embedded images are written: ``$XDG_CACHE_HOME/frcnn/labelme_images``."""
    return frcnn_cache_dir("labelme_images")


def json_files(folder: str) -> list[str]:
    """Every ``*.json`` under ``folder`` (recursively), sorted."""
    return sorted(glob.glob(os.path.join(glob.escape(folder), "**", "*.json"), recursive=True))


def set_files(root: str, name: str) -> list[str]:
    """The JSON files of set ``name`` (a subfolder of ``root``, ``"."`` for root itself)."""
    folder = root if name == "." else os.path.join(root, name)
    if not os.path.isdir(folder):
        raise DatasetError(Problem(folder, None, f"LabelMe folder of set {name!r} not found"))
    files = json_files(folder)
    if not files:
        raise DatasetError(Problem(folder, None, f"no LabelMe JSON file in the folder of set {name!r}"))
    return files


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def load_labelme(path: str) -> tuple[dict | None, Problem | None]:
    """(the file's JSON object, None), or (None, the one problem of a file that is not LabelMe)."""
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return None, Problem(path, None, f"not valid JSON ({exc})")
    except OSError as exc:
        return None, Problem(path, None, f"cannot read the file ({exc})")
    if not isinstance(data, dict):
        return None, Problem(path, None, "not a LabelMe file: top level is not an object")
    checks = {
        "shapes": isinstance(data.get("shapes"), list),
        "imagePath": isinstance(data.get("imagePath"), str) and bool(data.get("imagePath")),
        "imageHeight": _positive_int(data.get("imageHeight")),
        "imageWidth": _positive_int(data.get("imageWidth")),
    }
    bad = [f"{key!r}: {data.get(key)!r}" for key, ok in checks.items() if not ok]
    if bad:
        return None, Problem(path, None, f"not a LabelMe file: missing or invalid {', '.join(bad)}")
    return data, None


def labelme_classes(root: str) -> list[str]:
    """Every shape label of every JSON file under ``root`` (all splits, so they agree), sorted.

    Files that are not LabelMe are skipped here: the parse of their split reports them."""
    labels = set()
    for path in json_files(root):
        data, _ = load_labelme(path)
        for shape in data["shapes"] if data else ():
            if isinstance(shape, dict) and isinstance(shape.get("label"), str):
                labels.add(shape["label"])
    return sorted(labels)


def _points(shape: dict) -> list[tuple[float, float]]:
    points = shape.get("points")
    ok = isinstance(points, list) and all(
        isinstance(p, (list, tuple)) and len(p) == 2 and all(_is_number(v) for v in p) for p in points
    )
    if not ok:
        raise ValueError("'points' is not a list of [x, y] numbers")
    return [(float(x), float(y)) for x, y in points]


def shape_box(shape: dict) -> tuple[float, float, float, float]:
    """The ``(x1, y1, x2, y2)`` box of a rectangle, polygon or circle shape, in LabelMe's own
    continuous pixel coordinates; ValueError(reason) for any other shape or bad points."""
    kind = shape.get("shape_type")
    kind = "polygon" if kind is None else kind  # LabelMe's default: older files do not write it
    if kind not in BOX_SHAPES:
        raise ValueError(f"shape_type {kind!r} is not a box (rectangle, polygon or circle)")
    points = _points(shape)
    needed = {"rectangle": 2, "polygon": 3, "circle": 2}[kind]
    if len(points) < needed or (kind == "circle" and len(points) != 2):
        raise ValueError(f"{kind} has {len(points)} points (needs {'' if kind == 'circle' else 'at least '}{needed})")
    if kind == "circle":
        (cx, cy), (px, py) = points
        r = math.hypot(px - cx, py - cy)
        return cx - r, cy - r, cx + r, cy + r
    xs, ys = [x for x, _ in points], [y for _, y in points]
    return min(xs), min(ys), max(xs), max(ys)


def _image_file(json_path: str, image_path: str) -> str:
    """The image ``image_path`` names, relative to the JSON file's folder."""
    folder = os.path.dirname(json_path)
    path = os.path.normpath(os.path.join(folder, image_path))
    if os.path.isfile(path) or "\\" not in image_path:
        return path
    # LabelMe on Windows writes imagePath with backslashes ("..\\images\\a.jpg")
    posix = os.path.normpath(os.path.join(folder, image_path.replace("\\", "/")))
    return posix if os.path.isfile(posix) else path


def embedded_image(json_path: str, image_data: str, extension: str) -> str:
    """The path of the cached copy of a JSON's embedded image, written on first use (decoding only
    then). binascii.Error when ``image_data`` is not base64."""
    stat = os.stat(json_path)
    key = json.dumps([os.path.abspath(json_path), stat.st_size, stat.st_mtime_ns])
    path = os.path.join(image_cache_dir(), hashlib.sha1(key.encode()).hexdigest() + extension)
    if not os.path.exists(path):
        content = base64.b64decode(image_data, validate=True)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.tmp{os.getpid()}"  # written whole, then renamed: concurrent ranks never read half a file
        with open(tmp, "wb") as f:
            f.write(content)
        os.replace(tmp, path)
    return path


def _resolve_image(json_path: str, data: dict) -> tuple[str | None, Problem | None]:
    """(image path, None): the file at imagePath, else the embedded image; (None, problem) when neither."""
    path = _image_file(json_path, data["imagePath"])
    if os.path.isfile(path):
        return path, None
    image_data = data.get("imageData")
    if not isinstance(image_data, str) or not image_data:
        return None, Problem(json_path, None, f"image file {path!r} (imagePath) not found and no imageData embedded")
    try:
        return embedded_image(json_path, image_data, os.path.splitext(data["imagePath"])[1]), None
    except (binascii.Error, ValueError):
        return None, Problem(json_path, None, f"image file {path!r} (imagePath) not found and imageData is not base64")


def _objects(json_path: str, shapes: list, problems: list[Problem]) -> list[tuple[str, tuple, bool, str]]:
    """The ``(label, box, difficult, description)`` of every box shape; the others are problems."""
    objects = []
    for n, shape in enumerate(shapes):
        if not isinstance(shape, dict) or not isinstance(shape.get("label"), str):
            label = shape.get("label") if isinstance(shape, dict) else None
            problems.append(Problem(json_path, f"shape {n}", f"not a shape with a 'label' string (label {label!r})"))
            continue
        where = f"shape {n} ({shape['label']!r})"
        try:
            box = shape_box(shape)
        except ValueError as exc:
            problems.append(Problem(json_path, where, str(exc)))
            continue
        objects.append((shape["label"], box, False, where))  # LabelMe has no "difficult" flag
    return objects


def _image_id(root: str, json_path: str) -> str:
    return os.path.relpath(json_path, root).replace(os.sep, "/").removesuffix(".json")


def parse_labelme(root: str, sets: Sequence[str], class_names: Sequence[str] | None = None) -> ParsedSplit:
    """Index the JSON files of ``sets`` (concatenated in order) and list every problem found.

    ``class_names`` selects and orders the classes by name (labels of other classes are
    unlisted-class problems); None takes every label under ``root`` (:func:`labelme_classes`).
    Files that are not LabelMe, or whose image cannot be found, are left out (one problem each);
    shapes that are not boxes are left out of their image (one problem each). Box validity
    (degenerate, outside the image) is checked later, by the invalid-box policy.
    """
    files = {name: set_files(root, name) for name in dict.fromkeys(sets)}
    # What the parse reads: the JSON files of the sets (every one under root when the classes are
    # its labels), then the images they name, checked when the cache is read.
    read = sorted({path for paths in files.values() for path in paths}) if class_names is not None else json_files(root)
    key = ["labelme", os.path.abspath(root), list(sets), list(class_names) if class_names is not None else None]
    num_images = sum(len(files[name]) for name in sets)
    parse = functools.partial(_parse, root, sets, files, class_names)
    return cached_split(read, key, num_images, parse, check_images=True)


def _parse(
    root: str, sets: Sequence[str], files: dict[str, list[str]], class_names: Sequence[str] | None
) -> ParsedSplit:
    """:func:`parse_labelme` of the JSON files ``files`` of each set."""
    class_names = list(class_names) if class_names is not None else labelme_classes(root)
    if not class_names:
        raise DatasetError(Problem(root, None, "no shape label in any LabelMe file: set dataset.classes"))
    table = ObjectTable.for_classes(class_names)
    seen: dict[str, str] = {}
    for name in sets:
        for json_path in files[name]:
            image_id = _image_id(root, json_path)
            if image_id in seen:
                table.problems.append(Problem(json_path, None, f"read twice: in set {seen[image_id]!r} and {name!r}"))
                continue
            seen[image_id] = name
            data, problem = load_labelme(json_path)
            image, problem = _resolve_image(json_path, data) if data else (None, problem)
            if problem is not None:
                table.problems.append(problem)
                continue
            objects = _objects(json_path, data["shapes"], table.problems)
            folder, file_name = os.path.split(image)
            table.add_image(image_id, folder, file_name, data["imageHeight"], data["imageWidth"], objects, json_path)
    return table.split(class_names)


class LabelMeDetection(ReaderDetection):
    """LabelMe dataset (:func:`parse_labelme`, arguments as :class:`ReaderDetection`'s); ``image_ids``
    are the JSON paths relative to ``root`` without ``.json``, ``category_ids`` 1..K."""

    format_name = "labelme"
    parse = staticmethod(parse_labelme)
