"""``compile=true`` end to end on the CPU: train.py, evaluate.py and predict.py run the compiled
detector, its checkpoint is the eager model's, and the scores match the training's own evaluation."""

import json

import pytest
import torch

from tests.helpers.commands import run_script

# Images of one size (64 x 64): one compiled graph per mode, no recompilation for another size.
ONE_SIZE = ("dataset.shapes.num_train=4", "dataset.shapes.num_test=2", "dataset.shapes.min_image_size=64",
            "dataset.shapes.max_image_size=64")  # fmt: skip


@pytest.mark.slow
def test_train_evaluate_and_predict_run_compiled(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))  # the scripts inherit it
    run, data = tmp_path / "run", tmp_path / "shapes"
    common = (f"dataset.root={data}", *ONE_SIZE, "device=cpu", "compile=true")
    run_script("train.py", "debug=tiny", *common, "train.max_iters=2", "train.checkpoint_period=2",
               f"hydra.run.dir={run}", timeout=900)  # fmt: skip
    log = (run / "train.log").read_text()
    assert "iteration 1 took" in log and "with torch.compile's compilation" in log
    last = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert not any("_orig_mod" in key for key in last["model"])  # the eager model's names
    trained = json.loads((run / "metrics.json").read_text())
    assert any((tmp_path / "inductor").iterdir())  # the kernels are kept for the next run

    checkpoint = run / "checkpoints" / "last.pt"
    evaluation = tmp_path / "eval"
    run_script("evaluate.py", f"checkpoint={checkpoint}", "compile=true", "device=cpu", f"hydra.run.dir={evaluation}",
               timeout=600)  # fmt: skip
    evaluated = json.loads((evaluation / "metrics.json").read_text())
    assert evaluated["voc07"]["mAP"] == pytest.approx(trained["voc07"]["mAP"], abs=1e-6)

    output = tmp_path / "detections"
    run_script("predict.py", f"checkpoint={checkpoint}", "compile=true", "device=cpu", f"input={data / 'JPEGImages'}",
               f"output={output}", "score_threshold=0.0", "batch_size=2", timeout=600)  # fmt: skip
    predictions = json.loads((output / "predictions.json").read_text())
    assert predictions and {p["category_name"] for p in predictions} <= {"circle", "square", "triangle"}
