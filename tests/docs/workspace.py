"""The folder the documentation's blocks run in, with every file and placeholder they name.

    scripts/                 a link to the repository's scripts/ (commands run as from the repository root)
    outputs/run/             a debug=tiny training run (scripts/train.py debug=tiny): `outputs/<run>` in the docs
    data/shapes_tiny/        the tiny shapes set that run generated (debug=tiny's dataset.root)
    data/mydata/             a dozen shapes images renamed cat/dog/bird, in the VOC layout of docs/own-data.md
    data/mydata_coco/        the same in its COCO layout (category ids 11..13)
    data/mydata_yolo/, data/mydata_labelme/, data/mydata_cvat/   the same as YOLO, LabelMe and CVAT
    exported/                outputs/run/checkpoints/last.pt exported to ONNX
    photos/, photo.jpg       shapes test images

Each block gets its own copy (:func:`copy_workspace`): checkpoints are hard links (a checkpoint is
replaced by a rename, never written in place), everything else is copied.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from frcnn.data import generate_shapes
from frcnn.export import export_checkpoint
from tests.docs.blocks import REPO
from tests.helpers.formats import write_format

RENAMED = {"circle": "cat", "square": "dog", "triangle": "bird"}
# The datasets write_own_data lays out (docs/own-data.md's layouts): a config-only command naming one
# of them as its dataset.root is checked against it (test_config_only_block_reads_its_data).
OWN_DATASETS = ("data/mydata", "data/mydata_coco", "data/mydata_yolo", "data/mydata_labelme", "data/mydata_cvat")


def command_environment() -> dict[str, str]:
    """The environment of a block: ``python`` is this interpreter."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def train_tiny_run(root: Path) -> None:
    """``python scripts/train.py debug=tiny`` into ``root/outputs/run`` (6 iterations, checkpoints at 3 and 6)."""
    command = [sys.executable, "scripts/train.py", "debug=tiny", "hydra.run.dir=outputs/run"]
    result = subprocess.run(command, cwd=root, env=command_environment(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"the tiny run failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"


def write_own_data(root: Path) -> None:
    """Twelve shapes images with classes cat/dog/bird under root/data, in the layouts of
    docs/own-data.md: VOC, COCO, YOLO, LabelMe and CVAT (splits train and val)."""
    shapes = root / "own_shapes"
    generate_shapes(str(shapes), seed=0, num_train=8, num_test=4, min_image_size=64, max_image_size=96)
    voc = root / "data" / "mydata"
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    shutil.copytree(shapes / "JPEGImages", voc / "JPEGImages")
    shutil.copytree(shapes / "Annotations", voc / "Annotations")
    for xml in (voc / "Annotations").glob("*.xml"):
        text = xml.read_text()
        for old, new in RENAMED.items():
            text = text.replace(f"<name>{old}</name>", f"<name>{new}</name>")
        xml.write_text(text)
    shutil.copy(shapes / "ImageSets" / "Main" / "train.txt", voc / "ImageSets" / "Main" / "train.txt")
    shutil.copy(shapes / "ImageSets" / "Main" / "test.txt", voc / "ImageSets" / "Main" / "val.txt")
    coco = root / "data" / "mydata_coco"
    (coco / "annotations").mkdir(parents=True)
    shutil.copytree(shapes / "JPEGImages", coco / "images")
    for split, name in (("train", "train"), ("test", "val")):
        data = json.loads((shapes / "coco" / f"instances_{split}.json").read_text())
        for category in data["categories"]:
            category["name"] = RENAMED[category["name"]]
            category["id"] += 10  # any ids work
        for annotation in data["annotations"]:
            annotation["category_id"] += 10
        (coco / "annotations" / f"{name}.json").write_text(json.dumps(data))
        (shapes / "coco" / f"instances_{split}.json").write_text(json.dumps(data))  # renamed for the writers below
    for layout in ("yolo", "labelme", "cvat"):
        write_format(layout, shapes, root / "data" / f"mydata_{layout}")
    shutil.rmtree(shapes)


def build_workspace(root: Path) -> Path:
    """Fill ``root`` with the files of the module docstring; returns ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "scripts").symlink_to(REPO / "scripts", target_is_directory=True)
    train_tiny_run(root)
    export_checkpoint(root / "outputs" / "run" / "checkpoints" / "last.pt", root / "exported")
    images = sorted((root / "data" / "shapes_tiny" / "JPEGImages").glob("test_*.jpg"))[:3]
    (root / "photos").mkdir()
    for image in images:
        shutil.copy(image, root / "photos" / image.name)
    shutil.copy(images[0], root / "photo.jpg")
    write_own_data(root)
    return root


def _link_checkpoint_or_copy(source: str, destination: str) -> None:
    if source.endswith(".pt"):
        os.link(source, destination)
    else:
        shutil.copy2(source, destination)


def copy_workspace(template: Path, destination: Path) -> Path:
    """A copy of the workspace ``template`` at ``destination`` for one block; returns ``destination``."""
    shutil.copytree(template, destination, symlinks=True, copy_function=_link_checkpoint_or_copy)
    return destination
