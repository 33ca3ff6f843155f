"""scripts/export.py, then scripts/predict.py and scripts/evaluate.py with runtime=onnxruntime
against the PyTorch runtime (the commands run in the test process); the export benchmark section."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from frcnn.checkpoint.io import load_checkpoint
from frcnn.checkpoint.restore import model_from_checkpoint
from frcnn.data import build_test_loader
from frcnn.evaluation import DetectionEvaluator, run_inference


@pytest.mark.slow
def test_predict_with_onnxruntime_writes_what_pytorch_writes(exported, shapes_root, tmp_path, in_process):
    checkpoint, _, _ = exported("roi_align")
    in_process("export.py", f"checkpoint={checkpoint}", f"output={tmp_path / 'exported'}")
    assert sorted(p.name for p in (tmp_path / "exported").iterdir()) == ["model.json", "model.onnx"]
    images = tmp_path / "images"
    images.mkdir()
    for path in sorted((shapes_root / "JPEGImages").iterdir())[:3]:
        shutil.copy(path, images)
    common = [f"input={images}", "score_threshold=0.1", "batch_size=2"]
    in_process("predict.py", f"checkpoint={checkpoint}", f"output={tmp_path / 'torch'}", *common)
    in_process("predict.py", "runtime=onnxruntime", f"model={tmp_path / 'exported' / 'model.onnx'}",
               f"output={tmp_path / 'onnx'}", *common)  # fmt: skip

    expected = json.loads((tmp_path / "torch" / "predictions.json").read_text())
    got = json.loads((tmp_path / "onnx" / "predictions.json").read_text())
    assert expected and len(got) == len(expected)
    for want, have in zip(expected, got):
        assert (have["image_id"], have["category_id"]) == (want["image_id"], want["category_id"])
        assert np.abs(np.subtract(have["bbox"], want["bbox"])).max() <= 0.01
        assert abs(have["score"] - want["score"]) <= 1e-4
    for path in images.iterdir():
        drawn_torch = np.asarray(Image.open(tmp_path / "torch" / path.name))
        drawn_onnx = np.asarray(Image.open(tmp_path / "onnx" / path.name))
        assert np.array_equal(drawn_torch, drawn_onnx), path.name


@pytest.mark.slow
def test_evaluate_with_onnxruntime_gives_the_pytorch_metrics(exported, tmp_path, in_process):
    checkpoint, cfg, directory = exported("roi_align")
    model = model_from_checkpoint(load_checkpoint(checkpoint), cfg.model)
    loader = build_test_loader(cfg.dataset, batch_size=4, num_workers=0)
    expected = run_inference(model, loader, DetectionEvaluator(loader.dataset), "cpu")
    in_process("evaluate.py", f"onnx={directory / 'model.onnx'}", f"hydra.run.dir={tmp_path}")  # predict: model=
    got = json.loads((tmp_path / "metrics.json").read_text())
    assert expected["voc07"]["mAP"] > 0.01, "a trained model: equal mAPs are not both zero"
    assert abs(got["voc07"]["mAP"] - expected["voc07"]["mAP"]) <= 1e-4
    assert abs(got["voc"]["mAP"] - expected["voc"]["mAP"]) <= 1e-4
    for key, value in expected["coco"].items():
        assert abs(got["coco"][key] - value) <= 1e-4, key
