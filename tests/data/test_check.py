"""scripts/check_dataset.py: every problem listed, per-class counts, non-zero exit on errors; the
warnings (duplicate boxes, YOLO labels without an image, classes without boxes or rare, the anchors'
fit), and training's refusal of a split without objects."""

import logging
import os

import pytest
import yaml
from omegaconf import OmegaConf

from frcnn.data import DatasetError, build_dataset
from frcnn.data.anchor_fit import AnchorSpec
from frcnn.data.check import check_dataset, check_training_set, format_report
from frcnn.data.config import DatasetConfig, DatasetFormat
from tests.helpers.datasets import write_image
from tests.helpers.formats import write_format


def _bad_voc(make_voc):
    root = make_voc({
        "a": (100, 80, [("dog", 1, 1, 50, 40, 0, 0), ("unicorn", 5, 5, 20, 20, 0, 0)]),
        "b": (100, 80, [("cat", 30, 10, 20, 40, 0, 0), ("cat", 10, 10, 20, 20, 1, 0)]),
        "c": (100, 80, []),
        "d": (64, 64, [("dog", 2, 2, 30, 30, 0, 0)]),
    })  # fmt: skip
    os.remove(root / "JPEGImages" / "c.jpg")
    (root / "JPEGImages" / "d.jpg").write_bytes(b"garbage")
    return root


def test_check_dataset_lists_every_problem_and_counts(make_voc):
    root = _bad_voc(make_voc)
    cfg = OmegaConf.structured(DatasetConfig(name="mine", root=str(root), classes=["cat", "dog"], train_sets=["train"]))
    (report,) = check_dataset(cfg, ["train"], images=True, num_workers=0)
    reasons = sorted(str(p) for p in report.errors)
    assert len(reasons) == 4
    assert any("a.xml: object 1 ('unicorn'): unknown class name" in r for r in reasons)
    assert any("b.xml: object 0 ('cat'): degenerate box" in r for r in reasons)
    assert any("c.jpg: image file not found" in r for r in reasons)
    assert any("d.jpg: cannot decode image" in r for r in reasons)
    assert report.objects.tolist() == [2, 2] and report.images.tolist() == [1, 2]
    assert report.difficult.tolist() == [1, 0]
    text = format_report(report)
    assert "    1  cat" in text and "error: " in text

    cfg.invalid_boxes = "drop"  # invalid boxes become warnings
    (report,) = check_dataset(cfg, ["train"], images=False)
    assert len(report.errors) == 1 and len(report.warnings) == 1
    assert "(invalid_boxes=drop)" in str(report.warnings[0])

    cfg.unlisted_classes = "ignore"  # the unicorn is left out and counted, no longer an error
    (report,) = check_dataset(cfg, ["train"], images=False)
    assert report.errors == [] and report.ignored == {"unicorn": 1}
    assert "ignored (not in dataset.classes, unlisted_classes=ignore): unicorn 1 objects" in format_report(report)


def test_check_dataset_clean_shapes(tiny_shapes_cfg):
    reports = check_dataset(tiny_shapes_cfg(), ["train", "test"], images=True, num_workers=0)
    assert [r.errors for r in reports] == [[], []]
    assert [r.num_images for r in reports] == [12, 6]
    assert reports[0].objects.sum() > 12


def test_check_dataset_script_exits_non_zero(make_voc, tmp_path, in_process):
    root = _bad_voc(make_voc)
    run = in_process("check_dataset.py", "dataset=voc", f"dataset.root={root}", "dataset.classes=[cat,dog]",
                     "dataset.train_sets=[train]", "dataset.test_sets=[train]", "num_workers=0", cwd=tmp_path,
                     check=False)  # fmt: skip
    assert run.returncode == 1, run.stderr
    assert "unknown class name 'unicorn'" in run.stdout and "label  class" in run.stdout
    assert not (tmp_path / "outputs").exists()  # a check leaves no run directory behind


def _voc_cfg(root, classes=("cat", "dog"), **overrides):
    cfg = DatasetConfig(name="mine", root=str(root), classes=list(classes), train_sets=["train"], **overrides)
    return OmegaConf.structured(cfg)


def test_duplicate_boxes_are_warnings_naming_both(make_voc, make_coco):
    box = (11, 11, 50, 40, 0, 0)
    root = make_voc({"a": (100, 80, [("cat", *box), ("dog", *box), ("cat", *box)]), "b": (100, 80, [("cat", *box)])})
    (report,) = check_dataset(_voc_cfg(root), ["train"], images=False)
    assert report.errors == [] and [str(p) for p in report.warnings] == [
        f"{root / 'Annotations' / 'a.xml'}: object 2 ('cat'): duplicate of object 0 ('cat'): the same class 'cat' "
        "and box [10, 10, 50, 40]"
    ]  # the dog on the same box and the cat of another image are no duplicates
    annotations = [{"id": k, "image_id": 1, "category_id": 1, "bbox": [5, 5, 20, 10], "area": 200, "iscrowd": 0}
                   for k in (7, 9)]  # fmt: skip
    path, images = make_coco({"images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}],
                              "annotations": annotations, "categories": [{"id": 1, "name": "cat"}]})  # fmt: skip
    cfg = OmegaConf.structured(DatasetConfig(format="coco", root=str(root), classes=None))
    cfg.train.annotations, cfg.train.images = path, images
    (report,) = check_dataset(cfg, ["train"], images=False)
    assert [str(p) for p in report.warnings] == [
        f"{path}: annotation id 9: duplicate of annotation id 7: the same class 'cat' and box [5, 5, 25, 15]"
    ]


def test_yolo_label_files_without_an_image_are_warnings(tmp_path):
    for rel in ("images/train/a.jpg", "images/train/sub/b.jpg", "images/val/c.jpg"):
        write_image(str(tmp_path / rel), 40, 30)
    labels = {"train/a.txt": "0 0.5 0.5 0.5 0.5\n", "train/sub/b.txt": "", "train/ghost.txt": "0 0.5 0.5 0.2 0.2\n",
              "train/sub/gone.txt": "", "val/c.txt": "", "val/orphan.txt": ""}  # fmt: skip
    for rel, text in labels.items():
        (tmp_path / "labels" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "labels" / rel).write_text(text)
    data = {"train": "images/train", "val": "images/val", "names": ["cat"]}
    (tmp_path / "data.yaml").write_text(yaml.safe_dump(data))
    cfg = OmegaConf.structured(DatasetConfig(format="yolo", root=str(tmp_path), classes=None, train_sets=["train"]))
    (report,) = check_dataset(cfg, ["train"], images=False)
    assert report.errors == [] and [str(p) for p in report.warnings] == [
        f"{tmp_path / 'labels/train/ghost.txt'}: label file without an image: no image ghost.* in "
        f"{tmp_path / 'images/train'}",
        f"{tmp_path / 'labels/train/sub/gone.txt'}: label file without an image: no image sub/gone.* in "
        f"{tmp_path / 'images/train'}",
    ]  # the val split's orphan is the val split's


def test_a_class_without_boxes_and_a_rare_class_are_warnings(make_voc):
    images = {f"c{i}": (100, 80, [("cat", 10, 10, 50, 50, 0, 0)]) for i in range(21)}
    images["d"] = (100, 80, [("dog", 10, 10, 50, 50, 0, 0), ("bird", 10, 10, 50, 50, 1, 0)])
    cfg = _voc_cfg(make_voc(images), classes=("cat", "dog", "bird"), use_difficult=False)
    (report,) = check_dataset(cfg, ["train"], images=False)
    assert report.errors == [] and [str(p) for p in report.warnings] == [
        "dataset.classes: 'bird': no box in the train split: the model cannot learn this class",  # only difficult
        "train split: class 'dog' has 1 box, under 1/20 of class 'cat''s 21: the model sees it rarely; "
        "dataset.sampler=repeat_factor repeats the images of rare classes",
    ]
    cfg.sampler, cfg.use_difficult = "repeat_factor", True
    (report,) = check_dataset(cfg, ["train"], images=False)
    assert len(report.warnings) == 1 and "repeat_factor already repeats" in str(report.warnings[0])


def test_a_training_split_without_objects_is_an_error(make_voc):
    cfg = _voc_cfg(make_voc({"a": (100, 80, []), "b": (64, 64, [])}))
    cfg.test_sets = ["train"]
    train, test = check_dataset(cfg, ["train", "test"], images=False)
    assert [str(p) for p in train.errors] == [
        "train split: no object to train on in its 2 images: training refuses this split"
    ]
    assert test.errors == []


def test_the_training_boxes_against_the_anchors(make_voc):
    # 64 x 80 px images at test_min_size 32: x0.5; a 40 px box -> 20 px, a 24 px one -> 12 px
    root = make_voc({"a": (64, 80, [("cat", 1, 1, 40, 40, 0, 0)]), "b": (64, 80, [("dog", 1, 1, 24, 24, 0, 0)])})
    cfg = _voc_cfg(root, test_min_size=32, max_size=64)
    cfg.test_sets = ["train"]
    spec = AnchorSpec(base_sizes=(4.0,), scales=(5.0,), ratios=(1.0,))  # one 20 px square
    train, test = check_dataset(cfg, ["train", "test"], images=False, anchors=spec)
    assert train.anchor_fit.box_sizes.tolist() == [20, 12] and test.anchor_fit is None
    assert train.anchor_fit.best_iou.tolist() == [1, 0.36]
    assert [str(p) for p in train.warnings] == [
        "model.anchors: 50.0% of the 2 boxes (1) have no anchor shape with IoU >= 0.7 (model.rpn.pos_iou_thresh), "
        "even centred on them: 1 smaller than the smallest anchor (20 px); model.anchors.scales=[3.536,5] "
        "would bring 1 of them to 0.7 (0.0% left under it)"
    ]
    text = format_report(train)
    assert "anchors: train boxes after the test resize (short side 32, long side <= 64) against model.anchors" in text
    assert "  under model.rpn.pos_iou_thresh 0.7: 1 of 2 boxes (50.0%)" in text


def test_check_dataset_script_compares_the_models_anchors(make_voc, tmp_path, in_process):
    root = make_voc({"a": (100, 80, [("cat", 11, 11, 50, 40, 0, 0)])})
    args = ("dataset=voc", f"dataset.root={root}", "dataset.classes=[cat]", "dataset.train_sets=[train]",
            "dataset.test_sets=[train]", "images=false")  # fmt: skip
    run = in_process("check_dataset.py", *args, cwd=tmp_path)
    assert "anchor sizes px: 128, 256, 512 (base_size 16 x scales [8, 16, 32]; ratios (h/w) [0.5, 1, 2])" in run.stdout
    run = in_process("check_dataset.py", *args, "model=resnet50_fpn", "model.anchors.scales=[1.0,1.5]", cwd=tmp_path)
    sizes = "32, 48, 64, 96, 128, 192, 256, 384, 512, 768"
    assert f"anchor sizes px: {sizes} (base_size 32, doubled at each of 5 levels, x scales [1, 1.5]" in run.stdout


def test_training_refuses_a_split_without_objects_and_warns_of_a_class_without_boxes(make_voc, caplog):
    root = make_voc({"a": (64, 64, [("cat", 5, 5, 30, 30, 0, 0)]), "b": (64, 64, [("dog", 5, 5, 30, 30, 1, 0)])})
    cfg = _voc_cfg(root, classes=("cat", "dog", "bird"))
    with caplog.at_level(logging.WARNING, logger="frcnn.data.check"):
        check_training_set(build_dataset(cfg, "train"), cfg)
    assert caplog.messages == ["mine train: class 'bird' has no box in the training split: the model cannot learn it"]

    cfg = _voc_cfg(root, classes=("dog",), unlisted_classes="ignore", use_difficult=False)  # one difficult dog
    with pytest.raises(DatasetError) as refused:
        check_training_set(build_dataset(cfg, "train"), cfg)
    assert str(refused.value) == (
        f"invalid dataset: dataset.root={root}, dataset.train_sets=[train]: the training split of dataset 'mine' has "
        "no object in its 2 images (1 crowd or difficult objects left out): nothing to train on"
    )


def test_a_layout_without_a_validation_split_is_checked_whole(tiny_shapes_root, tmp_path):
    root = write_format("labelme", tiny_shapes_root, tmp_path / "labelme")
    for path in (root / "val").iterdir():  # one flat folder: no validation split
        path.rename(root / "train" / path.name)
    (root / "val").rmdir()
    cfg = OmegaConf.structured(
        DatasetConfig(name="auto", format=DatasetFormat.auto, root=str(root / "train"), classes=None)
    )
    reports = check_dataset(cfg, images=False)
    assert [r.split for r in reports] == ["train"] and reports[0].num_images == 18 and not reports[0].errors
