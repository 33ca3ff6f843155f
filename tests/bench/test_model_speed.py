"""``scripts/benchmark.py sections=[model]``: ours vs torchvision's detector, C4 and FPN, with and without autocast."""

import copy
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from frcnn.models import build_model
from frcnn.bench.reference import torchvision_detector

REPO = Path(__file__).resolve().parents[2]
TINY = ("model.backbone.depth=18", "model.rpn.pre_nms_top_n_train=200", "model.rpn.post_nms_top_n_train=50",
        "model.rpn.pre_nms_top_n_test=100", "model.rpn.post_nms_top_n_test=20", "model.roi_head.batch_size_per_image=8",
        "compare.batch_size=1", "compare.image_size=[96,128]", "compare.boxes_per_image=2", "compare.warmup_iters=0",
        "compare.timed_iters=1")  # fmt: skip


def _benchmark_module():
    spec = importlib.util.spec_from_file_location("frcnn_benchmark_script", REPO / "scripts" / "benchmark.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_model_section_writes_both_pairs_ratios(tmp_path):
    command = [sys.executable, "scripts/benchmark.py", "sections=[model]", "device=cpu", "compare.amp=fp16",
               f"hydra.run.dir={tmp_path}", *TINY]  # fmt: skip
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "benchmark.json").read_text())
    assert report["device"] == "cpu" and report["device_name"] == "cpu"
    assert report["amp"] == "off"  # as train.amp: float16 mixed precision on CUDA only, with a warning
    assert "compare.amp=fp16 ignored" in result.stdout + result.stderr
    for phase in ("train", "infer"):
        assert set(report["median_seconds"][phase]) == {"ours", "ours_roi_pool", "torchvision", "fpn", "fpn_torchvision"}
    for key in ("train_ratio", "infer_ratio", "fpn_train_ratio", "fpn_infer_ratio"):
        assert report[key] > 0
    assert report["train_ratio"] == pytest.approx(report["median_seconds"]["train"]["ours"]
                                                  / report["median_seconds"]["train"]["torchvision"])  # fmt: skip


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_an_autocast_training_step_updates_both_models(two_images, tiny_model_config, dtype):
    """The timed step under autocast (fp16 through a GradScaler) is a real step for ours and torchvision's."""
    bench = _benchmark_module()
    torch.manual_seed(0)
    cfg = tiny_model_config(pooler="roi_align")  # as the benchmark's like-for-like pair
    ours = build_model(cfg, num_classes=2)
    models = {"ours": ours, "torchvision": torchvision_detector(copy.deepcopy(ours), cfg)}
    images, sizes, targets = two_images
    for name, model in models.items():
        model.train()
        score = model.roi_head.score if name == "ours" else model.roi_heads.box_predictor.cls_score
        before = score.weight.clone()
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
        scaler = torch.amp.GradScaler("cpu") if dtype == torch.float16 else None
        bench._train_step(name, model, optimizer, images, sizes, targets, dtype, scaler)
        assert torch.isfinite(score.weight).all() and not torch.equal(score.weight, before), name
        model.eval()
        detections = bench._infer(name, model, images, sizes, dtype)
        assert len(detections) == 2 and all(torch.isfinite(d["boxes"]).all() for d in detections)
        if name == "ours":  # torchvision returns autocast's dtype
            assert all(d["boxes"].dtype == d["scores"].dtype == torch.float32 for d in detections)
