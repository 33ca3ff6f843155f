"""The README's "Your own data" commands, run as written on tiny datasets in both layouts."""

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from frcnn.data import generate_shapes

REPO = Path(__file__).resolve().parents[2]
RENAMED = {"circle": "cat", "square": "dog", "triangle": "bird"}
# Appended to the training command: a few iterations on small images, no weight download.
TINY = ["train.max_iters=2", "train.batch_size=2", "train.eval_batch_size=2", "train.checkpoint_period=2",
        "model.backbone.weights=null", "dataset.min_size=[64]", "dataset.test_min_size=64", "dataset.max_size=96",
        "dataset.num_workers=0", "train.eval_period=0", "train.log_period=1"]  # fmt: skip


def readme_commands(fmt: str) -> list[list[str]]:
    """The bash lines of the README's own-data section for ``fmt`` (voc | coco), split into arguments."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("### Your own data", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    block = next(b for b in blocks if f"dataset={fmt}" in b)
    return [shlex.split(line) for line in block.strip().splitlines()]


def make_own_data(root: Path, fmt: str) -> None:
    """A dozen shapes images with classes cat/dog/bird in the README's ``fmt`` layout under root/data."""
    shapes = root / "shapes"
    generate_shapes(str(shapes), seed=0, num_train=8, num_test=4, min_image_size=64, max_image_size=96)
    if fmt == "voc":
        target = root / "data" / "mydata"
        (target / "ImageSets" / "Main").mkdir(parents=True)
        shutil.copytree(shapes / "JPEGImages", target / "JPEGImages")
        shutil.copytree(shapes / "Annotations", target / "Annotations")
        for xml in (target / "Annotations").glob("*.xml"):
            text = xml.read_text()
            for old, new in RENAMED.items():
                text = text.replace(f"<name>{old}</name>", f"<name>{new}</name>")
            xml.write_text(text)
        shutil.copy(shapes / "ImageSets" / "Main" / "train.txt", target / "ImageSets" / "Main" / "train.txt")
        shutil.copy(shapes / "ImageSets" / "Main" / "test.txt", target / "ImageSets" / "Main" / "val.txt")
    else:
        target = root / "data" / "mydata_coco"
        (target / "annotations").mkdir(parents=True)
        shutil.copytree(shapes / "JPEGImages", target / "images")
        for split, name in (("train", "train"), ("test", "val")):
            data = json.loads((shapes / "coco" / f"instances_{split}.json").read_text())
            for category in data["categories"]:
                category["name"] = RENAMED[category["name"]]
                category["id"] += 10  # any ids work
            for annotation in data["annotations"]:
                annotation["category_id"] += 10
            (target / "annotations" / f"{name}.json").write_text(json.dumps(data))


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["voc", "coco"])
def test_readme_own_data_commands(fmt, tmp_path):
    make_own_data(tmp_path, fmt)
    check, train, predict = readme_commands(fmt)
    assert "experiment=custom_cpu" in train
    for command, extra in ((check, []), (train, TINY), (predict, ["device=cpu", "score_threshold=0.0"])):
        assert command[:2] == ["python", command[1]] and command[1].startswith("scripts/")
        result = subprocess.run([sys.executable, str(REPO / command[1]), *command[2:], *extra], cwd=tmp_path,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"{shlex.join(command)}\n{result.stderr[-3000:]}"
        assert "experiment=shapes_cpu" not in result.stderr  # no preset warning for own data
    run = tmp_path / "outputs" / ("mydata" if fmt == "voc" else "mydata_coco")
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["voc07"]["AP"]) == {"cat", "dog", "bird"}
    assert (run / "detections" / "predictions.json").is_file()
