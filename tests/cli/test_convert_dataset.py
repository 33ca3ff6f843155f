"""scripts/convert_dataset.py: dataset=auto by default, one line per split written, a non-empty output
refused in one line (exit 2) unless overwrite=true, which keeps the folder's other files."""

import json
import shutil

import pytest
import yaml

from tests.helpers.formats import write_format


@pytest.fixture
def source(tiny_shapes_root, tmp_path):
    """The tiny shapes set (VOC layout, splits train and test) copied into the test's folder."""
    return write_format("voc", tiny_shapes_root, tmp_path / "source")


def error_line(run) -> str:
    """The one console line of a refused command (after checking there is no other and no traceback)."""
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stdout + run.stderr
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("convert_dataset.py: error: "), run.stderr
    return lines[0]


def test_converts_every_split_with_dataset_auto(source, tmp_path, in_process):
    run = in_process("convert_dataset.py", "dataset.root=source", "output=out", "format=coco", cwd=tmp_path)
    counts = {
        split: len(json.loads((tmp_path / "out" / "annotations" / f"{split}.json").read_text())["annotations"])
        for split in ("train", "val")
    }
    lines = run.stdout.splitlines()
    assert f"train: 12 images, {counts['train']} boxes -> out/annotations/train.json" in lines
    assert f"val: 6 images, {counts['val']} boxes -> out/annotations/val.json" in lines
    total = counts["train"] + counts["val"]
    assert lines[-1] == f"out: a coco dataset of 18 images, {total} boxes; read it with dataset.root=out"
    assert "holds a VOC layout (training split train, test split test)" in run.stdout
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["annotations", "images"]
    assert len(list((tmp_path / "out" / "images").iterdir())) == 18


def test_a_non_empty_output_is_refused_unless_overwrite(source, tmp_path, in_process):
    args = ("convert_dataset.py", "dataset.root=source", f"output={tmp_path}/out", "format=yolo")
    in_process(*args, cwd=tmp_path)
    (tmp_path / "out" / "notes.txt").write_text("mine")
    (tmp_path / "out" / "data.yaml").write_text("garbage")
    line = error_line(in_process(*args, cwd=tmp_path, check=False))
    assert f"output={tmp_path}/out is not empty" in line and "overwrite=true" in line
    assert (tmp_path / "out" / "data.yaml").read_text() == "garbage"  # nothing written

    run = in_process(*args, "overwrite=true", cwd=tmp_path)
    assert "train: 12 images" in run.stdout
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine"
    names = yaml.safe_load((tmp_path / "out" / "data.yaml").read_text())["names"]
    assert names == {0: "circle", 1: "square", 2: "triangle"}


def test_any_dataset_group_reads_the_source(tiny_shapes_root, tmp_path, in_process):
    source = tmp_path / "shapes"
    shutil.copytree(tiny_shapes_root, source)
    shutil.rmtree(source / "Annotations")  # not read: the COCO files are
    args = ["dataset=coco", f"dataset.root={source}", "dataset.train.images=JPEGImages"]
    args += ["dataset.train.annotations=coco/instances_train.json", "dataset.test.images=JPEGImages"]
    args += ["dataset.test.annotations=coco/instances_test.json"]
    run = in_process("convert_dataset.py", *args, "output=out", "format=voc", cwd=tmp_path)
    assert "-> out/ImageSets/Main/val.txt" in run.stdout
    assert len((tmp_path / "out" / "ImageSets" / "Main" / "val.txt").read_text().split()) == 6


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["dataset.root=source", "output=out", "format=xml"], "format=xml: Invalid value 'xml'"),
        (["dataset.root=source", "output=out"], "format is required: add format=VALUE"),
        (["dataset.root=missing", "output=out", "format=coco"], "missing: no such folder"),
        (["dataset.root=source", "output=source", "format=coco"], "is the dataset's own folder"),
    ],
)
def test_mistakes_end_in_one_line(arguments, expected, source, tmp_path, in_process):
    line = error_line(in_process("convert_dataset.py", *arguments, cwd=tmp_path, check=False))
    assert expected in line, line
    assert not (tmp_path / "out").exists()
