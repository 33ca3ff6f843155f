"""``model.json``: what a program needs besides ``model.onnx`` to run an exported detector.

Written beside the ONNX file by :func:`frcnn.export.export_checkpoint`; plain JSON so that any
language can read it. Keys:

- ``format`` ("frcnn-onnx") and ``format_version``; ``frcnn_version``; ``onnx_file`` (``model.onnx``)
  or ``openvino_file`` (``model.xml``, with ``model.bin``): the model file, the other null; ``opset``;
- ``precision`` (``fp32`` | ``int8``) and, for int8, ``quantization``: ``{"precision", "map_fp32",
  "map_int8", "drop", "calibration_images"}`` (VOC07 mAP on the test split, measured at export);
- ``architecture`` (``c4`` | ``fpn``) and ``pooler`` (``roi_align`` | ``roi_pool``; FPN: multi-level ``roi_align``);
- ``class_names`` (label l is ``class_names[l - 1]``) and ``category_ids`` (the dataset's id of
  label l, as predictions.json writes it);
- ``inputs`` / ``outputs``: name -> dtype and shape, in the graph's order;
- ``preprocessing``: ``min_size`` (short side after resizing), ``max_size`` (long-side cap),
  ``mean`` / ``std`` (per RGB channel, applied to pixels scaled to [0, 1]),
  ``size_divisibility`` (zero-pad the batch's height and width to a multiple of it);
- ``postprocessing``: ``score_thresh``, ``nms_thresh``, ``detections_per_image`` (baked into
  the graph) and the RPN's ``pre_nms_top_n`` / ``post_nms_top_n`` / ``nms_thresh``;
- ``checkpoint`` (path and iteration it was exported from) and ``config`` (its training config).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

FORMAT = "frcnn-onnx"
FORMAT_VERSION = 1
METADATA_FILE = "model.json"
ONNX_FILE = "model.onnx"
OPENVINO_FILE = "model.xml"  # with model.bin beside it
# Keys added after format_version 1's first files: a model.json without them is read with their defaults.
OPTIONAL_KEYS = ("precision", "openvino_file", "quantization")

INPUTS = {
    "images": "float32 [B, 3, H, W]: resized, normalised, zero-padded at the bottom and right",
    "image_sizes": "int64 [B, 2]: each image's (height, width) before padding",
}
OUTPUTS = {
    "boxes": "float32 [B, D, 4]: (x1, y1, x2, y2) in input pixels; rows >= num_detections are zeros",
    "scores": "float32 [B, D]: decreasing; 0 for padding",
    "labels": "int64 [B, D]: 1..K (class_names[label - 1]); 0 for padding",
    "num_detections": "int64 [B]: valid rows of each image",
}


@dataclass
class Preprocessing:
    min_size: int
    max_size: int
    mean: list[float]
    std: list[float]
    size_divisibility: int


@dataclass
class ExportMetadata:
    """The contents of ``model.json`` (see the module docstring)."""

    architecture: str
    pooler: str
    opset: int
    class_names: list[str]
    category_ids: list
    preprocessing: Preprocessing
    postprocessing: dict
    checkpoint: dict
    config: dict
    frcnn_version: str
    onnx_file: str | None = ONNX_FILE
    inputs: dict = field(default_factory=lambda: dict(INPUTS))
    outputs: dict = field(default_factory=lambda: dict(OUTPUTS))
    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    precision: str = "fp32"
    openvino_file: str | None = None
    quantization: dict | None = None

    @property
    def model_file(self) -> str:
        """The model file's name: ``model.xml`` for OpenVINO IR, else ``model.onnx``."""
        return self.openvino_file or self.onnx_file

    def write(self, directory: str | Path) -> Path:
        path = Path(directory) / METADATA_FILE
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path


def read_metadata(path: str | Path) -> ExportMetadata:
    """``model.json`` at ``path`` (the file, its folder, or the model file beside it: ``model.onnx``,
    ``model.xml``).

    Raises FileNotFoundError when it is missing and ValueError, naming the file and the key,
    when it is not an frcnn export description."""
    path = Path(path)
    if path.is_dir():
        path = path / METADATA_FILE
    elif path.suffix != ".json":
        path = path.with_name(METADATA_FILE)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: it is written beside model.onnx by scripts/export.py")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f'{path} is not an frcnn export description (no "format": "{FORMAT}")')
    if data.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path} has format_version {data.get('format_version')}; this frcnn reads {FORMAT_VERSION}")
    missing = [f.name for f in fields(ExportMetadata) if f.name not in data and f.name not in OPTIONAL_KEYS]
    missing += [f"preprocessing.{f.name}" for f in fields(Preprocessing) if f.name not in data.get("preprocessing", {})]
    if missing:
        raise ValueError(f"{path} lacks the key(s) {', '.join(missing)}")
    data["preprocessing"] = Preprocessing(**{f.name: data["preprocessing"][f.name] for f in fields(Preprocessing)})
    return ExportMetadata(**{f.name: data[f.name] for f in fields(ExportMetadata) if f.name in data})
