"""CVAT for images 1.1: one ``annotations.xml``, the splits as the images' subsets.

Layout: ``root/annotations.xml`` and the images under ``root/images/`` (an ``<image name=...>`` may
hold subfolders: ``root/images/<name>``). Each ``<image name width height subset>`` holds its shapes;
the split of an image is its ``subset`` (matched case-insensitively; ``default`` when it has none) and
its image id is ``name`` without its extension. The class list is the ``<label>`` names under
``<meta>`` (``meta/task``, ``meta/job`` or ``meta/project``), in their order.

Coordinates: CVAT's are continuous pixel coordinates, (0, 0) the top-left corner of the image, and are
used as they are. ``<box xtl ytl xbr ybr>`` is ``(xtl, ytl, xbr, ybr)``, ``<polygon points="x,y;...">``
the bounding box of its points, ``<ellipse cx cy rx ry>`` ``(cx - rx, cy - ry, cx + rx, cy + ry)``; a
box or ellipse turned by ``rotation`` degrees (about its center) becomes the axis-aligned box that
encloses it. ``<tag>`` (a label of the whole image) is not an object and is skipped; any other shape
(polyline, points, mask, cuboid, skeleton) is a problem. ``occluded="1"`` objects may count as
difficult (``occluded_as_difficult``).
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence

from frcnn.data.parsed import ObjectTable, ParsedSplit, ReaderDetection
from frcnn.data.validation import DatasetError, Problem

ANNOTATION_FILE = "annotations.xml"
IMAGES_DIR = "images"
DEFAULT_SUBSET = "default"  # CVAT's subset of an image that names none
BOX_ELEMENTS = ("box", "polygon", "ellipse")


def load_cvat(path: str) -> ET.Element:
    """The ``<annotations>`` element of a CVAT for images file; DatasetError when missing or not CVAT."""
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError:
        raise DatasetError(Problem(path, None, "annotation file not found")) from None
    except ET.ParseError as exc:
        raise DatasetError(Problem(path, None, f"malformed XML ({exc})")) from None
    if root.tag != "annotations":
        raise DatasetError(Problem(path, None, f"not a CVAT for images file: top element <{root.tag}>"))
    if root.find("track") is not None and root.find("image") is None:
        raise DatasetError(Problem(path, None, "CVAT for video (<track>) is not read: export as CVAT for images"))
    return root


def meta_labels(annotations: ET.Element) -> list[str]:
    """The label names listed under ``<meta>`` (task, job or project), in order, each once."""
    meta = annotations.find("meta")
    names = [(e.text or "").strip() for e in meta.iterfind(".//labels/label/name")] if meta is not None else []
    return list(dict.fromkeys(n for n in names if n))


def used_labels(annotations: ET.Element) -> list[str]:
    """Every label an object of any image uses (all subsets, so that the splits agree), sorted."""
    return sorted({s.get("label") for image in annotations.findall("image") for s in image if s.tag != "tag"} - {None})


def _number(element: ET.Element, key: str) -> float:
    value = element.get(key)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"missing or non-numeric {key!r}: {value!r}") from None


def _rotated_extents(half_w: float, half_h: float, degrees: float, ellipse: bool) -> tuple[float, float]:
    """Half width and height of the axis-aligned box enclosing a rectangle (or ellipse) of half
    sizes ``half_w``, ``half_h`` turned by ``degrees`` about its center."""
    c, s = abs(math.cos(math.radians(degrees))), abs(math.sin(math.radians(degrees)))
    if ellipse:
        return math.hypot(half_w * c, half_h * s), math.hypot(half_w * s, half_h * c)
    return half_w * c + half_h * s, half_w * s + half_h * c


def _polygon_box(points: str | None) -> tuple[float, float, float, float]:
    try:
        xy = [tuple(float(v) for v in p.split(",")) for p in (points or "").split(";")]
        if not all(len(p) == 2 for p in xy):
            raise ValueError
    except ValueError:
        raise ValueError(f"'points' is not a list of x,y numbers separated by ';': {points!r}") from None
    xs, ys = [x for x, _ in xy], [y for _, y in xy]
    return min(xs), min(ys), max(xs), max(ys)


def shape_box(shape: ET.Element) -> tuple[float, float, float, float]:
    """The ``(x1, y1, x2, y2)`` box of a ``<box>``, ``<polygon>`` or ``<ellipse>``, in CVAT's own
    continuous pixel coordinates; ValueError(reason) for another shape or bad coordinates."""
    if shape.tag not in BOX_ELEMENTS:
        raise ValueError("not a box (box, polygon or ellipse)")
    if shape.tag == "polygon":
        return _polygon_box(shape.get("points"))
    rotation = _number(shape, "rotation") if shape.get("rotation") is not None else 0.0
    if shape.tag == "box":
        box = tuple(_number(shape, key) for key in ("xtl", "ytl", "xbr", "ybr"))
        if rotation % 360 == 0:  # the file's numbers as they are (no rounding through the center)
            return box
        x1, y1, x2, y2 = box
        cx, cy, half_w, half_h = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
    else:
        cx, cy, half_w, half_h = (_number(shape, key) for key in ("cx", "cy", "rx", "ry"))
        if rotation % 360 == 0:
            return cx - half_w, cy - half_h, cx + half_w, cy + half_h
    ex, ey = _rotated_extents(half_w, half_h, rotation, shape.tag == "ellipse")
    return cx - ex, cy - ey, cx + ex, cy + ey


def _size(image: ET.Element) -> tuple[int, int]:
    """(height, width) of an ``<image>``; ValueError(reason) unless both are positive integers."""
    try:
        height, width = float(image.get("height")), float(image.get("width"))
        if not (height.is_integer() and width.is_integer() and height > 0 and width > 0):
            raise ValueError
    except (TypeError, ValueError):
        raise ValueError(
            f"missing or invalid size: width {image.get('width')!r}, height {image.get('height')!r}"
        ) from None
    return int(height), int(width)


def _objects(path: str, image: ET.Element, occluded_as_difficult: bool, problems: list[Problem]) -> list[tuple]:
    """The ``(label, box, difficult, description)`` of every box-like shape of ``image``; the
    others are problems. ``<tag> 3``: the element's position among the image's children."""
    objects = []
    for n, shape in enumerate(image):
        if shape.tag == "tag":  # a label of the whole image, not an object
            continue
        label = shape.get("label")
        where = f"image {image.get('name')!r}: <{shape.tag}> {n} ({label!r})"
        try:
            if label is None:
                raise ValueError("no 'label'")
            box = shape_box(shape)
        except ValueError as exc:
            problems.append(Problem(path, where, str(exc)))
            continue
        difficult = occluded_as_difficult and shape.get("occluded") == "1"
        objects.append((label, box, difficult, where))
    return objects


def select_subsets(path: str, images: list[ET.Element], sets: Sequence[str]) -> list[ET.Element]:
    """The images of ``sets`` (subsets, any case), set by set in file order; DatasetError naming
    the file's subsets when a set has no image."""
    subset_of = [(image.get("subset") or DEFAULT_SUBSET) for image in images]
    selected = []
    for name in sets:
        chosen = [image for image, subset in zip(images, subset_of) if subset.casefold() == name.casefold()]
        if not chosen:
            have = ", ".join(repr(s) for s in dict.fromkeys(subset_of)) or "none"
            raise DatasetError(Problem(path, None, f"no image in subset {name!r} (the file's subsets: {have})"))
        selected += chosen
    return selected


def parse_cvat(
    root: str, sets: Sequence[str], class_names: Sequence[str] | None = None, occluded_as_difficult: bool = False
) -> ParsedSplit:
    """Index the images of the subsets ``sets`` (concatenated in order) and list every problem found.

    ``class_names`` selects and orders the classes by name (objects of other classes are
    unlisted-class problems); None takes the ``<meta>`` labels in their order, or, when there are
    none, every label used, sorted. Images listed twice or without a valid size are left out, and
    shapes that are not boxes or have bad coordinates are left out of their image (one problem
    each). Box validity (degenerate, outside the image) is checked later, by the invalid-box policy.
    """
    path = os.path.join(root, ANNOTATION_FILE)
    annotations = load_cvat(path)
    if class_names is None:
        class_names = meta_labels(annotations) or used_labels(annotations)
        if not class_names:
            raise DatasetError(Problem(path, None, "no label in <meta> nor on any object: set dataset.classes"))
    table = ObjectTable.for_classes(class_names)
    images_dir = os.path.join(root, IMAGES_DIR)
    seen: dict[str, str] = {}  # image id -> name
    for image in select_subsets(path, annotations.findall("image"), sets):
        name = image.get("name")
        if not name:
            table.problems.append(Problem(path, f"image id {image.get('id')!r}", "no 'name'"))
            continue
        image_id = os.path.splitext(name)[0]
        if image_id in seen:
            again = "listed twice" if seen[image_id] == name else f"same image id {image_id!r} as {seen[image_id]!r}"
            table.problems.append(Problem(path, f"image {name!r}", again))
            continue
        seen[image_id] = name
        try:
            height, width = _size(image)
        except ValueError as exc:
            table.problems.append(Problem(path, f"image {name!r}", str(exc)))
            continue
        objects = _objects(path, image, occluded_as_difficult, table.problems)
        table.add_image(image_id, images_dir, name, height, width, objects, path)
    return table.split(class_names)


class CVATDetection(ReaderDetection):
    """CVAT for images dataset (:func:`parse_cvat`, arguments as :class:`ReaderDetection`'s, and
    ``occluded_as_difficult``); ``image_ids`` are the image names without extension, ``category_ids`` 1..K."""

    format_name = "cvat"
    parse = staticmethod(parse_cvat)

    def __init__(self, *args, occluded_as_difficult: bool = False, **kwargs):
        super().__init__(*args, parse_options={"occluded_as_difficult": occluded_as_difficult}, **kwargs)
