"""YOLO format (Ultralytics layout): a ``data.yaml``, image folders or lists, one label file per image.

Layout: ``root/data.yaml`` (or ``dataset.yaml``, ``data.yml``) with ``path`` (the dataset folder,
relative to the yaml's folder; default: that folder), the split keys (``train``, ``val``, ``test``:
each a folder of images searched recursively, a list file of image paths one a line, or a YAML list
of those; relative to ``path``) and ``names`` (a list, or a map ``{id: name}`` with ids 0..K-1).
The label file of ``.../images/<sub>/a.jpg`` is ``.../labels/<sub>/a.txt`` (Ultralytics' rule: the
last ``images`` folder of the path becomes ``labels``); a missing or empty one is an image without
objects.

Label rows are ``class cx cy w h`` normalised to [0, 1] by the image's width W and height H (as
displayed, EXIF orientation applied), or a segment ``class x1 y1 x2 y2 x3 y3 ...`` (3+ points),
whose bounding box is taken. ``cx cy w h`` becomes the continuous 0-based pixel box
``[(cx - w/2) W, (cy - h/2) H, (cx + w/2) W, (cy + h/2) H]``. Coordinates outside [0, 1] and empty
sizes are not the reader's to judge: they make out-of-image or degenerate boxes, which follow
``dataset.invalid_boxes`` like any other format's.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass

import yaml
from PIL import Image

from frcnn.data.index_cache import cached_split
from frcnn.data.parsed import ObjectTable, ParsedSplit, ReaderDetection
from frcnn.data.validation import DatasetError, Problem

DATA_YAML_NAMES = ("data.yaml", "dataset.yaml", "data.yml")
# Ultralytics' IMG_FORMATS: the files of a split folder that are images.
IMAGE_EXTENSIONS = frozenset({"bmp", "dng", "jpeg", "jpg", "mpo", "png", "tif", "tiff", "webp", "pfm", "heic"})
EXIF_ORIENTATION = 0x0112
TRANSPOSED_ORIENTATIONS = frozenset({5, 6, 7, 8})  # orientations that swap width and height
ROW_SHAPES = "5 (class cx cy w h) or an odd number >= 7 (class x1 y1 x2 y2 x3 y3 ...)"


def find_data_yaml(root: str) -> str | None:
    """The dataset's yaml in folder ``root`` (the first of :data:`DATA_YAML_NAMES`), ``root`` itself
    when it is a yaml file, else None."""
    if os.path.isfile(root) and root.endswith((".yaml", ".yml")):
        return root
    for name in DATA_YAML_NAMES:
        path = os.path.join(root, name)
        if os.path.isfile(path):
            return path
    return None


@dataclass
class DataYaml:
    """A read ``data.yaml``: its file, the dataset folder (``path``), its keys and ``names`` by id."""

    file: str
    base: str
    data: dict
    names: dict[int, str]

    def ids_text(self) -> str:
        """The class ids ``names`` has, for messages: ``0..K-1`` or the ids themselves."""
        ids = sorted(self.names)
        if not ids:
            return "names is empty"
        return f"0..{ids[-1]}" if ids == list(range(len(ids))) else ", ".join(map(str, ids))


def load_data_yaml(path: str, problems: list[Problem]) -> DataYaml:
    """Read ``path``; faults in ``names``/``nc`` are added to ``problems``, those that leave nothing
    to read (not YAML, not a map, no classes, a ``path`` that is not a folder) raise DatasetError."""
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise DatasetError(Problem(path, None, f"cannot read the dataset yaml ({exc})")) from None
    if not isinstance(data, dict):
        raise DatasetError(Problem(path, None, "not a YOLO dataset yaml: the top level is not a map"))
    folder = os.path.dirname(path)
    base = data.get("path")
    if base is None:
        base = folder
    elif not isinstance(base, str):
        raise DatasetError(Problem(path, "path", f"not a folder name: {base!r}"))
    else:
        base = os.path.normpath(os.path.join(folder, base))
        if not os.path.isdir(base):
            reason = f"{base} is not a folder (relative to the yaml's folder; leave out path to use that folder)"
            raise DatasetError(Problem(path, "path", reason))
    return DataYaml(path, base, data, _read_names(path, data, problems))


def _read_names(path: str, data: dict, problems: list[Problem]) -> dict[int, str]:
    """``names`` as ``{id: name}``; ids with gaps, repeated names and an ``nc`` that disagrees are problems."""
    names = data.get("names")
    nc = data.get("nc")
    if names is None and isinstance(nc, int) and not isinstance(nc, bool):
        names = [f"class_{k}" for k in range(nc)]  # Ultralytics' names for a yaml that gives only nc
    if isinstance(names, list):
        names = dict(enumerate(names))
    if not isinstance(names, dict):
        reason = f"expected a list or a map {{id: name}} of the classes, got {names!r}"
        raise DatasetError(Problem(path, "names", reason))
    by_id: dict[int, str] = {}
    for key, name in names.items():
        try:  # YAML reads `0: cat` as an int key, `"0": cat` as a string one: both are id 0
            by_id[int(key)] = str(name)
        except (TypeError, ValueError):
            problems.append(Problem(path, "names", f"class id {key!r} is not an integer"))
    by_id = dict(sorted(by_id.items()))
    if list(by_id) != list(range(len(by_id))):
        reason = f"class ids must be 0..{len(by_id) - 1} without gaps, got {list(by_id)}"
        problems.append(Problem(path, "names", reason))
    first_id: dict[str, int] = {}
    for k, name in by_id.items():
        if name in first_id:
            problems.append(Problem(path, "names", f"class name {name!r} given to ids {first_id[name]} and {k}"))
        first_id.setdefault(name, k)
    if nc is not None and nc != len(by_id):
        problems.append(Problem(path, "nc", f"nc is {nc!r} but names has {len(by_id)} classes"))
    return by_id


def _select_classes(
    config: DataYaml, class_names: Sequence[str] | None, problems: list[Problem]
) -> tuple[list[str], list[int]]:
    """(class names, their YOLO ids): all of ``names`` by id, or ``class_names`` in its order.

    A name ``names`` lacks is a problem (its id, -1, is never used: the problem refuses the dataset).
    """
    if class_names is None:
        return list(config.names.values()), list(config.names)
    id_of = {}
    for k, name in config.names.items():
        id_of.setdefault(name, k)
    for name in class_names:
        if name not in id_of:
            reason = f"class {name!r} of dataset.classes is not in names ({list(config.names.values())})"
            problems.append(Problem(config.file, "names", reason))
    return list(class_names), [id_of.get(name, -1) for name in class_names]


def _is_image(path: str) -> bool:
    return path.rpartition(".")[2].lower() in IMAGE_EXTENSIONS


def folder_images(folder: str) -> list[str]:
    """The image files under ``folder``, recursively, sorted by path. Hidden files and folders are
    left out, as Ultralytics' glob does (macOS leaves ``._a.jpg`` files that are not images)."""
    found = []
    for parent, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [os.path.join(parent, f) for f in files if not f.startswith(".") and _is_image(f)]
    return sorted(found)


def list_file_images(list_file: str, base: str, problems: list[Problem]) -> list[str]:
    """The image paths listed one a line in ``list_file`` (relative ones relative to ``base``);
    a line that does not name an image file is a problem."""
    try:
        with open(list_file, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(Problem(list_file, None, f"cannot read the image list ({exc})"))
        return []
    images = []
    for n, line in enumerate(lines, 1):
        entry = line.strip()
        if not entry:
            continue
        if not _is_image(entry):
            problems.append(Problem(list_file, f"line {n}", f"{entry!r} is not an image file (by its extension)"))
            continue
        images.append(os.path.normpath(os.path.join(base, entry)))
    return images


def split_images(config: DataYaml, key: str, problems: list[Problem]) -> list[str]:
    """The image paths of split ``key`` of the yaml, in order; a key not set or an entry that is
    neither a folder nor a list file is a problem."""
    value = config.data.get(key)
    if value is None:
        problems.append(Problem(config.file, key, "split not set in the dataset yaml"))
        return []
    entries = value if isinstance(value, list) else [value]
    images = []
    for entry in entries:
        if not isinstance(entry, str):
            problems.append(Problem(config.file, key, f"not a folder or list file name: {entry!r}"))
            continue
        path = os.path.normpath(os.path.join(config.base, entry))
        if not os.path.exists(path) and entry.startswith("../"):
            # Roboflow's exports write `train: ../train/images` for a yaml beside train/; Ultralytics
            # reads it as `train/images` when the first does not exist, and so does this.
            path = os.path.normpath(os.path.join(config.base, entry[3:]))
        if os.path.isdir(path):
            images += folder_images(path)
        elif os.path.isfile(path):
            images += list_file_images(path, config.base, problems)
        else:
            problems.append(Problem(config.file, key, f"{path}: no such folder or image list file"))
    return images


def labels_folder(folder: str) -> str | None:
    """Ultralytics' rule: the folder of ``folder``'s labels is ``folder`` with its last ``images``
    component made ``labels`` (None: no ``images`` component, labels beside the images)."""
    parts = folder.split(os.sep)
    if "images" not in parts:
        return None
    parts[len(parts) - 1 - parts[::-1].index("images")] = "labels"
    return os.sep.join(parts)


def label_path(image_path: str) -> str:
    """Ultralytics' label file of an image: in :func:`labels_folder` of the image's folder (or beside
    the image), with the extension ``.txt``."""
    folder, name = os.path.split(image_path)
    return os.path.join(labels_folder(folder) or folder, os.path.splitext(name)[0] + ".txt")


def displayed_size(path: str) -> tuple[int, int]:
    """(height, width) of an image as decoded (EXIF orientation applied), from its header only."""
    with Image.open(path) as image:
        width, height = image.size
        # The base class's getexif reads what the header holds; PNG's own would decode the pixels to
        # look for an eXIf chunk after them (such an image then fails the decoded-size check).
        orientation = Image.Image.getexif(image).get(EXIF_ORIENTATION)
    return (width, height) if orientation in TRANSPOSED_ORIENTATIONS else (height, width)


class _RowError(ValueError):
    """The reason a label row cannot be read."""


def _class_id(text: str, config: DataYaml) -> int:
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not value.is_integer():  # "3" and "3.0" are class 3 (Ultralytics reads floats)
        raise _RowError(f"class id {text!r} is not an integer")
    if int(value) not in config.names:
        raise _RowError(f"class id {int(value)} is not in names (ids {config.ids_text()})")
    return int(value)


# Pixels a normalised coordinate may fall outside the image by float rounding alone (_snap_to_image).
EDGE_TOLERANCE = 1e-3


def parse_row(values: Sequence[str], height: int, width: int, config: DataYaml) -> tuple[int, list[float]]:
    """(class id, box ``x1, y1, x2, y2`` in continuous 0-based pixels) of one label row."""
    if len(values) != 5 and (len(values) < 7 or len(values) % 2 == 0):
        raise _RowError(f"{len(values)} values; expected {ROW_SHAPES}")
    class_id = _class_id(values[0], config)
    coords = []
    for column, text in enumerate(values[1:], 2):
        try:
            coords.append(float(text))
        except ValueError:
            raise _RowError(f"non-numeric value {text!r} in column {column}") from None
    if len(coords) == 4:
        cx, cy, w, h = coords
        box = [(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height]
    else:
        xs, ys = coords[0::2], coords[1::2]
        box = [min(xs) * width, min(ys) * height, max(xs) * width, max(ys) * height]
    return class_id, _snap_to_image(box, height, width)


def _snap_to_image(box: list[float], height: int, width: int) -> list[float]:
    """``box`` with the coordinates within :data:`EDGE_TOLERANCE` px outside the image moved onto its
    edge: the rounding of normalised values (a box touching the edge written as ``cy - h/2 = -5e-8``),
    not an error of the labels; boxes farther out are left to ``dataset.invalid_boxes``."""
    limits = (width, height, width, height)
    return [
        min(max(v, 0.0), limit) if -EDGE_TOLERANCE <= v <= limit + EDGE_TOLERANCE else v
        for v, limit in zip(box, limits)
    ]


def read_labels(
    label_file: str, height: int, width: int, config: DataYaml, problems: list[Problem]
) -> list[tuple[str, list[float], bool, str]]:
    """The objects of a label file, for :meth:`ObjectTable.add_image`; every bad row is a problem."""
    try:
        with open(label_file, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return []  # an image without objects
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(Problem(label_file, None, f"cannot read the label file ({exc})"))
        return []
    objects = []
    for n, line in enumerate(lines, 1):
        values = line.split()
        if not values:
            continue
        try:
            class_id, box = parse_row(values, height, width, config)
        except _RowError as exc:
            problems.append(Problem(label_file, f"line {n}", str(exc)))
            continue
        objects.append((config.names[class_id], box, False, f"line {n}"))
    return objects


def parse_yolo(root: str, sets: Sequence[str], class_names: Sequence[str] | None = None) -> ParsedSplit:
    """The images of the split keys ``sets`` of the dataset yaml in ``root``, concatenated in order.

    ``class_names`` (default: all of ``names``, by id) selects and orders the classes by name; the
    category ids are the YOLO class ids. Image ids are the image paths relative to ``path``, without
    extension, with ``/``. Every fault found is a problem of the result (images that cannot be
    opened and listed twice are left out, and so are bad label rows); a missing or unreadable yaml
    raises DatasetError.
    """
    yaml_path = find_data_yaml(root)
    if yaml_path is None:
        names = ", ".join(DATA_YAML_NAMES)
        raise DatasetError(Problem(root, None, f"not a YOLO dataset: none of {names} found"))
    problems: list[Problem] = []
    config = load_data_yaml(yaml_path, problems)
    selected, category_ids = _select_classes(config, class_names, problems)
    images = [(key, image_path) for key in sets for image_path in split_images(config, key, problems)]
    # What the parse reads: the yaml, every image (its header) and its label file (absent: no objects).
    files = [yaml_path, *(path for _, image_path in images for path in (image_path, label_path(image_path)))]
    key = ["yolo", list(sets), list(class_names) if class_names is not None else None]
    parse = functools.partial(_parse, config, images, selected, category_ids, problems)
    if problems:  # found before the parse (a bad list-file line): a result that is never cached
        return parse()
    return cached_split(files, key, len(images), parse)


def _parse(
    config: DataYaml,
    images: list[tuple[str, str]],
    class_names: list[str],
    category_ids: list[int],
    problems: list[Problem],
) -> ParsedSplit:
    """The split of ``images`` ((split key, image path) pairs, in order) with these classes and their
    YOLO ids; ``problems`` holds those found so far."""
    table = ObjectTable.for_classes(class_names)
    table.problems = problems  # one list, in the order found
    seen: dict[str, tuple[str, str]] = {}  # image id -> (split, image path)
    for key, image_path in images:
        image_id = os.path.splitext(os.path.relpath(image_path, config.base))[0].replace(os.sep, "/")
        if image_id in seen:
            other_key, other = seen[image_id]
            also = f"split {other_key!r}" if other == image_path else other  # a.jpg beside a.png: one id
            problems.append(Problem(image_path, None, f"image id {image_id!r} listed twice (also in {also})"))
            continue
        seen[image_id] = key, image_path
        _add_image(table, config, image_id, image_path)
    return table.split(class_names, category_ids)


def _add_image(table: ObjectTable, config: DataYaml, image_id: str, image_path: str) -> None:
    """Add one image and its label file's objects; an image that cannot be opened is a problem."""
    try:
        height, width = displayed_size(image_path)
    except FileNotFoundError:
        table.problems.append(Problem(image_path, None, "image file not found"))
        return
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        table.problems.append(Problem(image_path, None, f"cannot open image ({exc})"))
        return
    label_file = label_path(image_path)
    objects = read_labels(label_file, height, width, config, table.problems)
    folder, file_name = os.path.split(image_path)
    table.add_image(image_id, folder, file_name, height, width, objects, label_file)


class YOLODetection(ReaderDetection):
    """YOLO-format dataset (:func:`parse_yolo`, arguments as :class:`ReaderDetection`'s); ``image_ids``
    are paths relative to the yaml's ``path`` and ``category_ids`` the YOLO class ids."""

    format_name = "yolo"
    parse = staticmethod(parse_yolo)
