"""scripts/evaluate.py and scripts/predict.py end to end on a tiny checkpoint (their commands run in the
test process); their arguments."""

import json

import pytest
from PIL import Image

from frcnn.config.commands import check_evaluate_source
from frcnn.data import build_dataset
from frcnn.inference.predictor import check_output_dir, list_images
from tests.helpers.configs import compose_config

COCO_KEYS = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]


@pytest.mark.slow
def test_evaluate_script_on_checkpoint_then_on_its_predictions(tiny_checkpoint, tmp_path, in_process):
    checkpoint, train_cfg = tiny_checkpoint
    run = tmp_path / "run"
    result = in_process("evaluate.py", f"checkpoint={checkpoint}", f"hydra.run.dir={run}", "device=cpu",
                        "model.roi_head.score_thresh=0.0", "voc_results_dir=voc",
                        f"tensorboard_dir={tmp_path / 'tb'}")  # fmt: skip
    metrics = json.loads((run / "metrics.json").read_text())
    predictions = json.loads((run / "predictions.json").read_text())
    test_set = build_dataset(train_cfg.dataset, "test")

    assert set(metrics) == {"voc07", "voc", "coco", "coco_per_class", "val_loss"}
    assert list(metrics["coco"]) == COCO_KEYS
    assert list(metrics["val_loss"]) == ["rpn_cls", "rpn_loc", "roi_cls", "roi_loc", "total"]
    assert all(value > 0 for value in metrics["val_loss"].values())
    assert "validation loss rpn_cls" in result.stderr
    for key in ("voc07", "voc"):
        assert list(metrics[key]["AP"]) == test_set.class_names
        assert 0.0 <= metrics[key]["mAP"] <= 1.0
    assert all(value == -1.0 or 0.0 <= value <= 1.0 for value in metrics["coco"].values())
    assert "AP(voc07)" in result.stderr and "circle" in result.stderr

    assert predictions, "score_thresh=0 leaves detections"
    sizes = {image_id: test_set.get_annotation(i) for i, image_id in enumerate(test_set.image_ids)}
    for p in predictions:
        assert set(p) == {"image_id", "category_id", "bbox", "score", "category_name"}
        assert p["category_name"] == test_set.class_names[test_set.category_ids.index(p["category_id"])]
        x, y, w, h = p["bbox"]
        size = sizes[p["image_id"]]
        assert 0 <= x <= x + w <= size["width"] and 0 <= y <= y + h <= size["height"]
    expected_files = [f"comp4_det_test_{c}.txt" for c in sorted(test_set.class_names)]
    assert sorted(path.name for path in (run / "voc").iterdir()) == expected_files
    assert any((tmp_path / "tb").iterdir())

    # the results file alone, against the same test split, gives the same numbers
    shapes = [f"dataset.shapes.{key}={value}" for key, value in train_cfg.dataset.shapes.items()]
    rescored = tmp_path / "rescored"
    in_process("evaluate.py", f"predictions={run / 'predictions.json'}", f"hydra.run.dir={rescored}",
               f"dataset.root={train_cfg.dataset.root}", *shapes)  # fmt: skip
    del metrics["val_loss"]  # needs the model
    assert json.loads((rescored / "metrics.json").read_text()) == metrics
    assert json.loads((rescored / "predictions.json").read_text()) == predictions


@pytest.mark.slow
def test_predict_script_on_a_folder(tiny_checkpoint, tmp_path, in_process):
    checkpoint, train_cfg = tiny_checkpoint
    test_set = build_dataset(train_cfg.dataset, "test")
    images = tmp_path / "images"
    images.mkdir()
    Image.open(test_set.image_path(0)).save(images / "a.jpg")
    Image.open(test_set.image_path(1)).save(images / "b.png")
    (images / "c.jpg").write_bytes(b"not an image")
    (images / "notes.txt").write_text("not an image either")
    output = tmp_path / "out"
    result = in_process("predict.py", f"checkpoint={checkpoint}", f"input={images}", f"output={output}",
                        "score_threshold=0.2", "batch_size=2", "device=cpu")  # fmt: skip

    assert sorted(path.name for path in output.iterdir()) == ["a.jpg", "b.png", "predictions.json"]
    assert Image.open(output / "b.png").size == Image.open(images / "b.png").size
    predictions = json.loads((output / "predictions.json").read_text())
    assert {p["image_id"] for p in predictions} <= {"a.jpg", "b.png"}
    assert all(p["score"] >= 0.2 and p["category_id"] in test_set.category_ids for p in predictions)
    names = dict(zip(test_set.category_ids, test_set.class_names))
    assert all(p["category_name"] == names[p["category_id"]] for p in predictions)
    assert "c.jpg" in result.stderr and "notes.txt" in result.stderr


def test_predict_refuses_to_draw_over_its_input(tmp_path):
    Image.new("RGB", (32, 32)).save(tmp_path / "a.png")
    Image.new("RGB", (32, 32)).save(tmp_path / "b.bmp")
    (tmp_path / "c.gif").write_bytes(b"GIF89a")
    paths = list_images(tmp_path)
    assert [p.name for p in paths] == ["a.png", "b.bmp"]
    assert list_images(tmp_path / "a.png") == [tmp_path / "a.png"]
    with pytest.raises(ValueError, match="would overwrite"):
        check_output_dir(paths, tmp_path)
    check_output_dir(paths, tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="missing"):
        list_images(tmp_path / "missing")


@pytest.mark.parametrize("arguments", [["checkpoint=null"], ["checkpoint=a.pt", "predictions=b.json"]])
def test_evaluate_needs_exactly_one_source(arguments):
    with pytest.raises(ValueError, match="exactly one of checkpoint=PATH"):
        check_evaluate_source(compose_config("evaluate", *arguments))
    check_evaluate_source(compose_config("evaluate", "predictions=b.json"))
