"""scripts/analyze.py and evaluate.py analysis=true end to end on a tiny checkpoint: analysis.json,
the report folder, metrics.json's analysis summary and the printed headline."""

import json

import pytest
from PIL import Image

from frcnn.data import build_dataset


@pytest.mark.slow
def test_analyze_script_then_evaluate_analysis_on_its_predictions(tiny_checkpoint, tmp_path, in_process):
    checkpoint, train_cfg = tiny_checkpoint
    run = tmp_path / "run"
    result = in_process("analyze.py", f"checkpoint={checkpoint}", f"hydra.run.dir={run}", "device=cpu",
                        "model.roi_head.score_thresh=0.0", "evaluation.analysis.worst_images=2")  # fmt: skip
    analysis = json.loads((run / "analysis.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    test_set = build_dataset(train_cfg.dataset, "test")

    assert set(analysis["tide"]) == {"ap", "cls", "loc", "both", "dupe", "bkg", "miss", "fp", "fn"}
    assert analysis["confusion_matrix"]["classes"] == [*test_set.class_names, "background"]
    assert list(analysis["per_class"]) == test_set.class_names
    assert metrics["analysis"]["tide"] == analysis["tide"]
    assert {"voc07", "voc", "coco", "coco_per_class", "val_loss"} <= set(metrics)
    assert (run / "analyze.log").exists() and (run / "predictions.json").exists()
    index = run / "report" / "index.html"
    assert index.exists()
    assert len(analysis["worst_images"]) == 2
    for entry in analysis["worst_images"]:
        assert Image.open(run / "report" / entry["file"]).size[0] >= 480  # enlarged to be read
    assert "TIDE dAP" in result.stderr and str(index) in result.stderr

    # evaluate.py analysis=true on the results file writes the same analysis (no model needed)
    shapes = [f"dataset.shapes.{key}={value}" for key, value in train_cfg.dataset.shapes.items()]
    rescored = tmp_path / "rescored"
    in_process("evaluate.py", f"predictions={run / 'predictions.json'}", f"hydra.run.dir={rescored}",
               f"dataset.root={train_cfg.dataset.root}", "analysis=true", "evaluation.analysis.worst_images=2",
               *shapes)  # fmt: skip
    assert json.loads((rescored / "analysis.json").read_text()) == analysis
    assert (rescored / "report" / "index.html").exists()


def test_analysis_keys_are_checked(tmp_path, in_process):
    result = in_process("analyze.py", "predictions=missing.json", f"hydra.run.dir={tmp_path}",
                        "evaluation.analysis.score_threshold=1.5", check=False)  # fmt: skip
    assert result.returncode == 2
    assert "evaluation.analysis.score_threshold" in result.stderr and "[0, 1]" in result.stderr
