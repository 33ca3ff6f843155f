"""On-disk cache of parsed COCO annotation indexes.

Decoding a large instances JSON dominates dataset start-up (COCO train2017: 448 MB, tens of
seconds, GBs of transient Python objects per process). For files of at least
``MIN_CACHED_BYTES`` the parsed, problem-free index is saved once as an ``.npz`` under
``$XDG_CACHE_HOME/frcnn/coco_index`` (default ``~/.cache``), keyed by the file's absolute
path, size, modification time and the class list, so an edited file is parsed again.
A file lock makes concurrent processes (distributed ranks) parse once and share the result.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
from collections.abc import Callable

import numpy as np

from frcnn.data.annotation_index import AnnotationIndex

CACHE_VERSION = 1
MIN_CACHED_BYTES = 32 * 2**20

ParseResult = tuple[AnnotationIndex, list[str], list[int], list]  # index, names, category ids, problems


def cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "frcnn", "coco_index")


def _cache_path(path: str, class_names) -> str:
    stat = os.stat(path)
    key = [CACHE_VERSION, os.path.abspath(path), stat.st_size, stat.st_mtime_ns, class_names]
    return os.path.join(cache_dir(), hashlib.sha1(json.dumps(key).encode()).hexdigest() + ".npz")


def _save(cache_path: str, result: ParseResult) -> None:
    index, class_names, category_ids, _ = result
    arrays = {f.name: getattr(index, f.name) for f in dataclasses.fields(index)}
    arrays["image_dirs"] = np.array(index.image_dirs, dtype=str)
    tmp = f"{cache_path}.tmp{os.getpid()}.npz"
    np.savez(tmp, **arrays, class_names=np.array(class_names, dtype=str), category_ids=np.array(category_ids))
    os.replace(tmp, cache_path)


def _load(cache_path: str) -> ParseResult:
    with np.load(cache_path, allow_pickle=False) as data:
        fields = {f.name: data[f.name] for f in dataclasses.fields(AnnotationIndex)}
        fields["image_dirs"] = tuple(fields["image_dirs"].tolist())
        return AnnotationIndex(**fields), data["class_names"].tolist(), data["category_ids"].tolist(), []


def cached_parse(path: str, class_names, parse: Callable[[], ParseResult]) -> ParseResult:
    """``parse()``, or its cached result for this version of ``path`` (large files only).

    Results with problems are never cached: they raise when used, and must keep doing so.
    """
    if not os.path.isfile(path) or os.path.getsize(path) < MIN_CACHED_BYTES:
        return parse()
    cache_path = _cache_path(path, class_names)
    os.makedirs(os.path.dirname(cache_path), exist_ok=True)
    with open(cache_path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released on close
        if os.path.exists(cache_path):
            return _load(cache_path)
        result = parse()
        if not result[3]:
            _save(cache_path, result)
        return result
