"""On-disk cache of parsed annotation indexes.

Decoding a large instances JSON dominates dataset start-up (COCO train2017: 448 MB, tens of
seconds, GBs of transient Python objects per process). For files of at least
``MIN_CACHED_BYTES`` the parsed, problem-free index is saved once as an ``.npz`` under
``$XDG_CACHE_HOME/frcnn/coco_index`` (default ``~/.cache``), keyed by the file's absolute
path, size, modification time and the class list, so an edited file is parsed again
(:func:`cached_parse`).

Folder layouts (YOLO, LabelMe) read one small file per image, so their start-up is the opening of
every file: tens of thousands of them on a real dataset. A split of at least ``MIN_CACHED_IMAGES``
images has its problem-free :class:`~frcnn.data.parsed.ParsedSplit` saved under
``$XDG_CACHE_HOME/frcnn/index`` (:func:`cached_split`), keyed by a fingerprint (absolute path, size,
modification time) of every file the parse reads, the sets, the class list and ``CACHE_VERSION``:
adding, removing, or editing any of them parses again. The per-box sources (file, object) are
stored too, so messages name the label line or JSON shape as the first parse did.

A file lock makes concurrent processes (distributed ranks) parse once and share the result.
Results with problems are never cached: they raise when used, and must keep doing so.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
from collections.abc import Callable, Iterable

import numpy as np

from frcnn.data.annotation_index import AnnotationIndex
from frcnn.utils.cache import frcnn_cache_dir

CACHE_VERSION = 2
MIN_CACHED_BYTES = 32 * 2**20
# Below 1000 images a folder layout parses in about 0.1 s (docs/benchmarks.md: 0.11-0.14 ms per YOLO
# image, 0.06-0.07 ms per LabelMe JSON on a 2-core Xeon), less than the cache could save is worth a
# file per split in the user's cache; and the small datasets of tests and examples are parsed as before.
MIN_CACHED_IMAGES = 1000

ParseResult = tuple[AnnotationIndex, list[str], list[int], list]  # index, names, category ids, problems


def cache_dir() -> str:
    """Where COCO indexes are cached: ``$XDG_CACHE_HOME/frcnn/coco_index``."""
    return frcnn_cache_dir("coco_index")


def split_cache_dir() -> str:
    """Where the splits of folder layouts are cached: ``$XDG_CACHE_HOME/frcnn/index``."""
    return frcnn_cache_dir("index")


def fingerprint(paths: Iterable[str]) -> str:
    """A digest of ``paths`` in order: each one's absolute path, size and modification time (or its
    absence: a file that is not there, such as the label file of an image without objects)."""
    digest = hashlib.sha1()
    for path in paths:
        try:
            stat = os.stat(path)
            item = f"{os.path.abspath(path)}\0{stat.st_size}\0{stat.st_mtime_ns}\n"
        except OSError:
            item = f"{os.path.abspath(path)}\0-\n"
        digest.update(item.encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def _locked(cache_path: str, load: Callable[[], object | None], compute: Callable[[], object]):
    """``load()`` of the entry at ``cache_path`` when there is one and it gives a result, else
    ``compute()`` (which saves it), under a lock file beside the entry: one process at a time."""
    os.makedirs(os.path.dirname(cache_path), exist_ok=True)
    with open(cache_path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released on close
        if os.path.exists(cache_path):
            result = load()
            if result is not None:
                return result
        return compute()


def _index_arrays(index: AnnotationIndex) -> dict[str, np.ndarray]:
    arrays = {f.name: getattr(index, f.name) for f in dataclasses.fields(index)}
    arrays["image_dirs"] = np.array(index.image_dirs, dtype=str)
    return arrays


def _load_index(data) -> AnnotationIndex:
    fields = {f.name: data[f.name] for f in dataclasses.fields(AnnotationIndex)}
    fields["image_dirs"] = tuple(fields["image_dirs"].tolist())
    return AnnotationIndex(**fields)


def _savez(cache_path: str, **arrays) -> None:
    tmp = f"{cache_path}.tmp{os.getpid()}.npz"  # written whole, then renamed: never half a file
    np.savez(tmp, **arrays)
    os.replace(tmp, cache_path)


def _cache_path(path: str, class_names) -> str:
    stat = os.stat(path)
    key = [CACHE_VERSION, os.path.abspath(path), stat.st_size, stat.st_mtime_ns, class_names]
    return os.path.join(cache_dir(), hashlib.sha1(json.dumps(key).encode()).hexdigest() + ".npz")


def _save(cache_path: str, result: ParseResult) -> None:
    index, class_names, category_ids, _ = result
    arrays = _index_arrays(index)
    _savez(cache_path, **arrays, class_names=np.array(class_names, dtype=str), category_ids=np.array(category_ids))


def _load(cache_path: str) -> ParseResult:
    with np.load(cache_path, allow_pickle=False) as data:
        return _load_index(data), data["class_names"].tolist(), data["category_ids"].tolist(), []


def cached_parse(path: str, class_names, parse: Callable[[], ParseResult]) -> ParseResult:
    """``parse()``, or its cached result for this version of ``path`` (large files only).

    Results with problems are never cached: they raise when used, and must keep doing so.
    """
    if not os.path.isfile(path) or os.path.getsize(path) < MIN_CACHED_BYTES:
        return parse()
    cache_path = _cache_path(path, class_names)

    def compute() -> ParseResult:
        result = parse()
        if not result[3]:
            _save(cache_path, result)
        return result

    return _locked(cache_path, lambda: _load(cache_path), compute)


def _image_paths(index: AnnotationIndex) -> list[str]:
    return [index.image_path(i) for i in range(index.num_images)]


def _save_split(cache_path: str, split, images_digest: str) -> None:
    sources = [split.describe(k) for k in range(split.index.num_boxes)]
    files = sorted({file for file, _ in sources})
    position = {file: k for k, file in enumerate(files)}
    _savez(
        cache_path,
        **_index_arrays(split.index),
        class_names=np.array(split.class_names, dtype=str),
        category_ids=np.array(split.category_ids, dtype=np.int64),
        source_files=np.array(files, dtype=str),
        source_file_of=np.array([position[file] for file, _ in sources], dtype=np.int64),
        source_objects=np.array([what for _, what in sources], dtype=str),
        images_digest=np.array(images_digest),
    )


def _load_split(cache_path: str, check_images: bool):
    from frcnn.data.parsed import ParsedSplit  # parsed imports the dataset modules: not at import time

    with np.load(cache_path, allow_pickle=False) as data:
        index = _load_index(data)
        if check_images and str(data["images_digest"]) != fingerprint(_image_paths(index)):
            return None  # an image file changed or went missing: parse again
        files = data["source_files"].tolist()
        file_of = data["source_file_of"].tolist()
        objects = data["source_objects"].tolist()
        class_names = data["class_names"].tolist()
        category_ids = [int(c) for c in data["category_ids"].tolist()]
    return ParsedSplit(index, class_names, category_ids, [], lambda k: (files[file_of[k]], objects[k]))


def cached_split(files: Iterable[str], key, num_images: int, parse: Callable[[], object], check_images: bool = False):
    """``parse()`` (a :class:`~frcnn.data.parsed.ParsedSplit`), or its cached result while none of
    ``files`` (every file the parse reads) has changed, for the same ``key`` (JSON-serialisable: the
    sets, the class list, ...). Splits under ``MIN_CACHED_IMAGES`` images are always parsed.

    check_images: also check, on reading the cache, that the index's image files are unchanged (for
    a layout whose image paths are only known once the annotations are read, as LabelMe's).
    """
    if num_images < MIN_CACHED_IMAGES:
        return parse()
    digest = hashlib.sha1(json.dumps([CACHE_VERSION, key, fingerprint(files)]).encode()).hexdigest()
    cache_path = os.path.join(split_cache_dir(), digest + ".npz")

    def compute():
        split = parse()
        if not split.problems:
            images_digest = fingerprint(_image_paths(split.index)) if check_images else ""
            _save_split(cache_path, split, images_digest)
        return split

    return _locked(cache_path, lambda: _load_split(cache_path, check_images), compute)
