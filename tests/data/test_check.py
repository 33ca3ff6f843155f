"""scripts/check_dataset.py: every problem listed, per-class counts, non-zero exit on errors."""

import os

from omegaconf import OmegaConf

from frcnn.data.check import check_dataset, format_report
from frcnn.data.config import DatasetConfig


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
