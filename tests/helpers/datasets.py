"""Tiny datasets written to tmp_path in VOC and COCO format, and a tiny shapes set."""

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from frcnn.data.config import DatasetConfig, ShapesConfig
from frcnn.data.shapes import generate_shapes

TINY_SHAPES = dict(num_train=12, num_test=6, seed=3, min_image_size=64, max_image_size=96)


@pytest.fixture(scope="session")
def tiny_shapes_root(tmp_path_factory) -> Path:
    """A shapes dataset of 12 train + 6 test images of 64-96 px (generated once per session)."""
    root = tmp_path_factory.mktemp("shapes")
    generate_shapes(str(root), **TINY_SHAPES)
    return root


def shapes_config(root, **overrides):
    """DictConfig of the tiny shapes dataset at ``root`` (matching TINY_SHAPES)."""
    params = {k: v for k, v in TINY_SHAPES.items() if k != "seed"}
    cfg = OmegaConf.structured(DatasetConfig(root=str(root), seed=TINY_SHAPES["seed"], shapes=ShapesConfig(**params)))
    cfg.min_size, cfg.test_min_size, cfg.max_size, cfg.num_workers = [64], 64, 128, 0
    return OmegaConf.merge(cfg, overrides)


@pytest.fixture
def tiny_shapes_cfg(tiny_shapes_root):
    """tiny_shapes_cfg(root=None, **overrides): the tiny shapes config (default: the session's set)."""
    return lambda root=None, **overrides: shapes_config(root or tiny_shapes_root, **overrides)


def write_image(path, width, height, mode="RGB", **save_kwargs):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    if mode != "RGB":
        image = image.convert(mode)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image.save(path, **save_kwargs)


def voc_xml(filename, width, height, objects) -> str:
    """objects: (name, xmin, ymin, xmax, ymax, difficult, truncated) in VOC 1-based pixels."""
    ann = ET.Element("annotation")
    ET.SubElement(ann, "filename").text = filename
    size = ET.SubElement(ann, "size")
    ET.SubElement(size, "width").text = str(width)
    ET.SubElement(size, "height").text = str(height)
    ET.SubElement(size, "depth").text = "3"
    for name, x1, y1, x2, y2, difficult, truncated in objects:
        obj = ET.SubElement(ann, "object")
        ET.SubElement(obj, "name").text = name
        ET.SubElement(obj, "truncated").text = str(truncated)
        ET.SubElement(obj, "difficult").text = str(difficult)
        box = ET.SubElement(obj, "bndbox")
        for key, value in zip(("xmin", "ymin", "xmax", "ymax"), (x1, y1, x2, y2)):
            ET.SubElement(box, key).text = str(value)
    return ET.tostring(ann, encoding="unicode")


@pytest.fixture
def make_voc(tmp_path):
    """Write a VOC folder: make_voc({stem: (w, h, objects)}, split="train", folder=None) -> root.

    ``folder`` (e.g. "VOC2007") puts the tree in root/<folder>, else in root itself.
    """

    def make(images: dict, split: str = "train", folder: str | None = None) -> Path:
        base = tmp_path / folder if folder else tmp_path
        for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        for stem, (width, height, objects) in images.items():
            (base / "Annotations" / f"{stem}.xml").write_text(voc_xml(f"{stem}.jpg", width, height, objects))
            write_image(str(base / "JPEGImages" / f"{stem}.jpg"), width, height)
        with open(base / "ImageSets" / "Main" / f"{split}.txt", "a") as f:
            f.writelines(f"{stem}\n" for stem in images)
        return tmp_path

    return make


@pytest.fixture
def make_coco(tmp_path):
    """Write images + a COCO json: make_coco(data_dict, name) -> (json path, images dir)."""

    def make(data: dict, name: str = "instances.json") -> tuple[str, str]:
        images_dir = tmp_path / "images"
        for im in data.get("images", []):
            write_image(str(images_dir / im["file_name"]), im["width"], im["height"])
        images_dir.mkdir(exist_ok=True)
        path = tmp_path / name
        path.write_text(json.dumps(data))
        return str(path), str(images_dir)

    return make
