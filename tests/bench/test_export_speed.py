"""Section export (``frcnn.bench.export_speed``): every runtime timed, ratios of its medians (tiny sizes)."""

import pytest

from frcnn.bench.export_speed import benchmark_export, padded_test_size
from tests.helpers.checkpoints import VARIANTS


def test_the_default_image_is_a_padded_4_3_test_image():
    assert padded_test_size(600, 1000, 32) == (608, 800)  # 600x800, height padded to a multiple of 32
    assert padded_test_size(128, 256, 32) == (128, 192)  # 128x171 -> width padded


@pytest.mark.parametrize("variant", ["c4_r50", "fpn"])
def test_export_benchmark_reports_every_runtime(tiny_cfg, variant):
    # C4: a ResNet-50 head with an even RoIAlign size, whose 1x1 convolutions move before RoIAlign.
    overrides = {"c4_r50": ["model.backbone.depth=50", "model.roi_head.pooler=roi_align", "model.roi_head.roi_size=8"],
                 "fpn": VARIANTS["fpn"]}[variant]  # fmt: skip
    result = benchmark_export(tiny_cfg(*overrides).model, (64, 96), batch_size=2, num_classes=3,
                              warmup_iters=0, timed_iters=1)  # fmt: skip
    levels = ("disable", "basic", "extended")  # and "all", the headline "onnxruntime"
    runners = {"pytorch", "torchvision", "onnxruntime", *(f"onnxruntime_{level}" for level in levels)}
    if variant == "c4_r50":
        runners.add("onnxruntime_per_roi")
    for case in ("single", "batch"):
        times = result["median_seconds"][case]
        assert set(times) == runners
        assert all(t > 0 for t in times.values())
    single, batch = result["median_seconds"]["single"], result["median_seconds"]["batch"]
    assert result["onnx_infer_ratio"] == single["onnxruntime"] / single["torchvision"]
    assert result["onnx_infer_ratio_batch"] == batch["onnxruntime"] / batch["torchvision"]
    assert result["pytorch_ratio"] == single["pytorch"] / single["torchvision"]
    assert result["image_size"] == [64, 96] and result["optimization"] == "all"
    assert result["architecture"] == ("c4" if variant == "c4_r50" else "fpn")
