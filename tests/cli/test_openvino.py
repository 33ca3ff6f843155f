"""scripts/export.py format=openvino, then predict.py and evaluate.py running the IR file, against the
ONNX export of the same checkpoint (commands run in the test process)."""

import json

import pytest
from PIL import Image

from frcnn.data import build_dataset


def same_predictions(expected: list[dict], got: list[dict]) -> None:
    """Equal as sets (OpenVINO may order detections of exactly equal score otherwise): the same image
    and category ids, boxes within 0.01 px, scores within 1e-4."""
    assert len(expected) == len(got)
    free = list(got)
    for want in expected:
        match = next(
            (have for have in free
             if have["image_id"] == want["image_id"] and have["category_id"] == want["category_id"]
             and abs(have["score"] - want["score"]) <= 1e-4
             and max(abs(a - b) for a, b in zip(have["bbox"], want["bbox"])) <= 0.01),
            None,
        )  # fmt: skip
        assert match is not None, f"no OpenVINO detection for {want}"
        free.remove(match)


@pytest.mark.slow
def test_openvino_export_predicts_and_evaluates_as_the_onnx_one(exported, tmp_path, in_process):
    checkpoint, cfg, onnx_dir = exported("roi_align")
    ov_dir = tmp_path / "ov"
    in_process("export.py", f"checkpoint={checkpoint}", f"output={ov_dir}", "format=openvino")
    assert sorted(path.name for path in ov_dir.iterdir()) == ["model.bin", "model.json", "model.xml"]
    meta = json.loads((ov_dir / "model.json").read_text())
    assert meta["openvino_file"] == "model.xml" and meta["onnx_file"] is None and meta["precision"] == "fp32"

    test_set = build_dataset(cfg.dataset, "test")
    images = tmp_path / "images"
    images.mkdir()
    for index in range(3):
        Image.open(test_set.image_path(index)).save(images / f"{index}.png")
    outputs = {}
    for name, model in (("onnx", f"onnx={onnx_dir / 'model.onnx'}"), ("openvino", f"model={ov_dir / 'model.xml'}")):
        outputs[name] = tmp_path / f"predicted_{name}"
        in_process("predict.py", model, f"input={images}", f"output={outputs[name]}", "score_threshold=0.05")
    assert sorted(p.name for p in outputs["onnx"].iterdir()) == sorted(p.name for p in outputs["openvino"].iterdir())
    onnx_predictions = json.loads((outputs["onnx"] / "predictions.json").read_text())
    assert onnx_predictions, "the comparison needs detections"
    same_predictions(onnx_predictions, json.loads((outputs["openvino"] / "predictions.json").read_text()))

    metrics = {}
    for name, model in (("onnx", f"onnx={onnx_dir / 'model.onnx'}"), ("openvino", f"model={ov_dir / 'model.xml'}")):
        result = in_process("evaluate.py", model, f"hydra.run.dir={tmp_path / f'eval_{name}'}")
        metrics[name] = json.loads((tmp_path / f"eval_{name}" / "metrics.json").read_text())
    assert "(OpenVINO)" in result.stderr
    for key in ("voc07", "voc"):
        assert metrics["openvino"][key]["mAP"] == pytest.approx(metrics["onnx"][key]["mAP"], abs=1e-4)

    refused = in_process("evaluate.py", "runtime=onnxruntime", f"model={ov_dir / 'model.xml'}",
                         f"hydra.run.dir={tmp_path / 'refused'}", check=False)  # fmt: skip
    assert refused.returncode == 2 and "runtime=openvino" in refused.stderr


def test_an_export_into_a_used_folder_needs_overwrite(exported, tmp_path, in_process):
    checkpoint, _, _ = exported("roi_align")
    used = tmp_path / "used"
    used.mkdir()
    (used / "notes.txt").write_text("mine")
    refused = in_process("export.py", f"checkpoint={checkpoint}", f"output={used}", check=False)
    assert refused.returncode == 2 and "overwrite=true" in refused.stderr and str(used) in refused.stderr
    assert [p.name for p in used.iterdir()] == ["notes.txt"]
    in_process("export.py", f"checkpoint={checkpoint}", f"output={used}", "overwrite=true")
    assert sorted(p.name for p in used.iterdir()) == ["model.json", "model.onnx", "notes.txt"]
    assert (used / "notes.txt").read_text() == "mine"
