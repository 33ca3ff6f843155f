"""Section ``zoo`` (``scripts/benchmark.py sections=[zoo]``): torchvision's four COCO-trained Faster
R-CNN detectors as frcnn builds them, with their published AP, parameter counts and a timing."""

import pytest
import torch
from torchvision.models import get_model_weights

from frcnn.bench.sections import run_sections
from frcnn.bench.zoo import benchmark_zoo, zoo_detector
from tests.helpers.configs import compose_config

ZOO = {  # torchvision detector -> (frcnn preset, COCO val2017 box AP of its weights, test size)
    "fasterrcnn_resnet50_fpn": ("resnet50_fpn", 37.0, [800, 1333]),
    "fasterrcnn_resnet50_fpn_v2": ("resnet50_fpn_v2", 46.7, [800, 1333]),
    "fasterrcnn_mobilenet_v3_large_fpn": ("mobilenet_v3_large_fpn", 32.8, [800, 1333]),
    "fasterrcnn_mobilenet_v3_large_320_fpn": ("mobilenet_v3_large_320_fpn", 22.8, [320, 640]),
}
SMALLEST = "fasterrcnn_mobilenet_v3_large_320_fpn"


@pytest.mark.parametrize("name", list(ZOO))
def test_each_row_is_the_same_network_as_torchvisions(name):
    model, row = zoo_detector(name)
    preset, box_ap, test_size = ZOO[name]
    assert (row["preset"], row["coco_box_ap"], row["test_size"]) == (preset, box_ap, test_size)
    # The parameter count of frcnn's model is the one torchvision publishes for its weights.
    assert row["params"] == get_model_weights(name).DEFAULT.meta["num_params"]
    assert row["input_hw"] == ([800, 1088] if test_size[0] == 800 else [320, 448])  # 4:3, padded to 32
    assert not model.training


def test_the_timing_runs_the_detector_on_its_test_size_and_refuses_unknown_names():
    rows = benchmark_zoo([SMALLEST], warmup_iters=0, timed_iters=2)
    assert list(rows) == [SMALLEST] and rows[SMALLEST]["seconds_per_image"] > 0
    with pytest.raises(ValueError, match="fasterrcnn_resnet101_fpn"):
        benchmark_zoo(["fasterrcnn_resnet101_fpn"], warmup_iters=0, timed_iters=1)


def test_the_section_lands_under_zoo(tmp_path):
    cfg = compose_config("benchmark", "sections=[zoo]", f"zoo.models=[{SMALLEST}]", "zoo.warmup_iters=0",
                         "zoo.timed_iters=1")  # fmt: skip
    result = run_sections(cfg, torch.device("cpu"), tmp_path, lambda partial: None)
    assert list(result) == ["machine", "zoo"] and list(result["zoo"]) == [SMALLEST]
    assert result["zoo"][SMALLEST]["params"] == 19386354
