"""``compile=true`` end to end on the CPU: train.py, evaluate.py and predict.py run the compiled
detector, its checkpoint is the eager model's, and evaluate.py scores it as the eager model. The
compiling commands run in processes of their own (compiled graphs are cached per process)."""

import json

import pytest
import torch

from frcnn.utils.compile import cache_dir
from tests.helpers.commands import run_script

# Images of one size (64 x 64): one compiled graph per mode, no recompilation for another size.
ONE_SIZE = ("dataset.shapes.num_train=4", "dataset.shapes.num_test=2", "dataset.shapes.min_image_size=64",
            "dataset.shapes.max_image_size=64")  # fmt: skip


@pytest.mark.slow
def test_train_evaluate_and_predict_run_compiled(tmp_path, in_process):
    run, data = tmp_path / "run", tmp_path / "shapes"
    common = (f"dataset.root={data}", *ONE_SIZE, "device=cpu")
    run_script("train.py", "debug=tiny", *common, "compile=true", "train.max_iters=1", "train.eval_at_end=false",
               f"hydra.run.dir={run}", timeout=900)  # fmt: skip
    log = (run / "train.log").read_text()
    assert "iteration 1 took" in log and "with torch.compile's compilation" in log
    last = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert not any("_orig_mod" in key for key in last["model"])  # the eager model's names
    assert f"kernels cached in {cache_dir()}" in log and any(cache_dir().iterdir())  # kept for the next run

    checkpoint = run / "checkpoints" / "last.pt"
    scored = (f"checkpoint={checkpoint}", "device=cpu", "model.roi_head.score_thresh=0.0")
    in_process("evaluate.py", *scored, "compile=false", f"hydra.run.dir={tmp_path / 'eval_false'}")  # eager: here
    run_script("evaluate.py", *scored, "compile=true", f"hydra.run.dir={tmp_path / 'eval_true'}", timeout=600)
    metrics = {compiled: json.loads((tmp_path / f"eval_{compiled}" / "metrics.json").read_text())
               for compiled in ("false", "true")}  # fmt: skip
    assert metrics["true"]["voc07"]["mAP"] == pytest.approx(metrics["false"]["voc07"]["mAP"], abs=1e-6)

    output = tmp_path / "detections"
    run_script("predict.py", f"checkpoint={checkpoint}", "compile=true", "device=cpu", f"input={data / 'JPEGImages'}",
               f"output={output}", "score_threshold=0.0", "batch_size=2", timeout=600)  # fmt: skip
    predictions = json.loads((output / "predictions.json").read_text())
    assert predictions and {p["category_name"] for p in predictions} <= {"circle", "square", "triangle"}
