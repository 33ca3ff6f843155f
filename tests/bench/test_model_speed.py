"""Section model (``frcnn.bench.model_speed``): ours vs torchvision's detector, C4 and FPN, with and
without autocast."""

import json
import subprocess
import sys

import pytest
import torch
from omegaconf import OmegaConf

from frcnn.bench import model_speed
from frcnn.bench.config import CompareConfig
from frcnn.bench.model_speed import Contender, benchmark_models, build_contenders, synthetic_batch
from frcnn.data.batching import Batch
from tests.helpers.configs import REPO

TINY = ("model.backbone.depth=18", "model.rpn.pre_nms_top_n_train=200", "model.rpn.post_nms_top_n_train=50",
        "model.rpn.pre_nms_top_n_test=100", "model.rpn.post_nms_top_n_test=20", "model.roi_head.batch_size_per_image=8",
        "compare.batch_size=1", "compare.image_size=[96,128]", "compare.boxes_per_image=2", "compare.warmup_iters=0",
        "compare.timed_iters=1", "compare.compiled=false")  # fmt: skip
CONTENDERS = {"ours", "ours_roi_pool", "torchvision"}


def _compare(**settings) -> CompareConfig:
    tiny = dict(batch_size=1, image_size=[96, 128], num_classes=2, boxes_per_image=2, warmup_iters=0, timed_iters=1,
                compiled=False)  # fmt: skip
    return OmegaConf.structured(CompareConfig(**{**tiny, **settings}))


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
    assert report["settings"]["amp"] == "fp16" and report["settings"]["image_size"] == [96, 128]
    for phase in ("train", "infer"):
        assert set(report["median_seconds"][phase]) == CONTENDERS | {"fpn", "fpn_torchvision"}
    medians = report["median_seconds"]
    for key, (phase, ours, theirs) in {"fpn_train_ratio": ("train", "fpn", "fpn_torchvision"),
                                       "fpn_infer_ratio": ("infer", "fpn", "fpn_torchvision"),
                                       "train_ratio": ("train", "ours", "torchvision"),
                                       "infer_ratio": ("infer", "ours", "torchvision")}.items():  # fmt: skip
        assert report[key] == pytest.approx(medians[phase][ours] / medians[phase][theirs]), key


def test_the_report_holds_every_ratio_of_its_medians_and_the_profiles(tiny_model_config, tmp_path):
    compare = _compare(profile=True, amp="bf16")
    result = benchmark_models(tiny_model_config(pooler="roi_align"), compare, torch.device("cpu"), tmp_path)
    assert result["amp"] == "bfloat16" and result["settings"]["amp"] == "bf16"
    assert result["device"] == "cpu" and result["threads"] == torch.get_num_threads()
    medians = result["median_seconds"]
    for phase in ("train", "infer"):
        assert set(result["times"][phase]) == set(medians[phase]) == CONTENDERS
        assert all(len(times) == 1 for times in result["times"][phase].values())
        assert result[f"{phase}_ratio"] == medians[phase]["ours"] / medians[phase]["torchvision"]
        assert result[f"{phase}_ratio_roi_pool"] == medians[phase]["ours_roi_pool"] / medians[phase]["torchvision"]
    assert "fpn_train_ratio" not in result  # no FPN config, no FPN pair
    assert set(result["profiles"]) == {f"{name}_{phase}" for name in CONTENDERS for phase in ("train", "infer")}
    for name in result["profiles"].values():
        assert "Self CPU" in (tmp_path / name).read_text()
    json.dumps(result)  # benchmark.json takes it as it is


def test_compiled_contenders_are_timed_beside_the_rest_with_their_compile_time(tiny_model_config, tmp_path,
                                                                               monkeypatch):  # fmt: skip
    compiled = []
    monkeypatch.setattr(model_speed, "compile_model", lambda model, inference=False: compiled.append(model) or model)
    result = benchmark_models(tiny_model_config(pooler="roi_align"), _compare(compiled=True), torch.device("cpu"),
                              tmp_path)  # fmt: skip
    assert len(compiled) == 2 and set(result["median_seconds"]["train"]) == CONTENDERS | {"ours_compiled"}
    medians, report = result["median_seconds"], result["compiled"]
    assert report["train_ratio"] == medians["train"]["ours_compiled"] / medians["train"]["torchvision"]
    assert report["infer_speedup"] == medians["infer"]["ours"] / medians["infer"]["ours_compiled"]
    assert set(report["compile_seconds"]) == {"ours_train", "ours_infer"} and "fpn_train_ratio" not in report


def test_the_synthetic_batch_has_boxes_inside_its_images():
    batch = synthetic_batch(_compare(batch_size=3, boxes_per_image=5, num_classes=4), torch.device("cpu"),
                            torch.Generator().manual_seed(0))  # fmt: skip
    assert isinstance(batch, Batch) and batch.images.shape == (3, 3, 96, 128)
    assert batch.image_sizes == [(96, 128)] * 3
    for target in batch.targets:
        boxes, labels = target["boxes"], target["labels"]
        assert boxes.shape == (5, 4) and labels.shape == (5,)
        sides = boxes[:, 2:] - boxes[:, :2]
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 128).all() and (boxes[:, 3] <= 96).all()
        assert (sides >= 32).all() and (sides <= 48).all()  # 32..min(H, W)/2
        assert labels.min() >= 1 and labels.max() <= 4


def test_the_contenders_share_the_weights_and_differ_in_pooling(tiny_model_config):
    cfg = tiny_model_config(pooler="roi_align")
    torch.manual_seed(0)
    models = build_contenders(cfg, 2, torch.device("cpu"))
    assert list(models) == ["ours", "ours_roi_pool", "torchvision"]
    ours, roi_pool, reference = models.values()
    assert ours.roi_head.box_pooler.kind == "roi_align" and roi_pool.roi_head.box_pooler.kind == "roi_pool"
    torch.testing.assert_close(roi_pool.roi_head.score.weight, ours.roi_head.score.weight)
    torch.testing.assert_close(reference.reference.roi_heads.box_predictor.cls_score.weight, ours.roi_head.score.weight)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_an_autocast_training_step_updates_both_models(two_images, tiny_model_config, dtype):
    """The timed step under autocast (fp16 through a GradScaler) is a real step for ours and torchvision's.
    On the two images at half size with few proposals and RoIs: the CPU's float16 convolutions are slow."""
    images, sizes, targets = two_images
    images = torch.nn.functional.interpolate(images, scale_factor=0.5)
    sizes = [(height // 2, width // 2) for height, width in sizes]
    targets = [{"boxes": target["boxes"] / 2, "labels": target["labels"]} for target in targets]
    batch = Batch(images, sizes, targets, image_ids=[0, 1], indices=[0, 1], orig_sizes=sizes, scales=torch.ones(2, 2))
    cfg = tiny_model_config(pooler="roi_align", batch_size_per_image=4)
    cfg.rpn.post_nms_top_n_train, cfg.rpn.post_nms_top_n_test = 16, 8
    torch.manual_seed(0)
    models = build_contenders(cfg, 2, torch.device("cpu"))
    for name in ("ours", "torchvision"):
        contender = Contender.of(models[name], lr=0.01, amp=dtype)
        assert contender.scaler.is_enabled() == (dtype == torch.float16)
        model = contender.model
        score = model.roi_head.score if name == "ours" else model.reference.roi_heads.box_predictor.cls_score
        before = score.weight.clone()
        contender.step(batch, dtype)
        assert torch.isfinite(score.weight).all() and not torch.equal(score.weight, before), name
        detections = contender.infer(batch, dtype)
        assert not model.training
        assert len(detections) == 2 and all(torch.isfinite(d["boxes"]).all() for d in detections)
        if name == "ours":  # torchvision returns autocast's dtype
            assert all(d["boxes"].dtype == d["scores"].dtype == torch.float32 for d in detections)
