"""frcnn/export/opset.py: the lowest opset of each model's graph, as ONNX Runtime runs it, and the
opsets refused in one line (scripts/export.py opset=11 exited 0 with a file ONNX Runtime refuses)."""

import numpy as np
import onnxruntime as ort
import pytest
import torch
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidGraph

from frcnn.config.export import ExportConfig
from frcnn.export.exporter import write_onnx
from frcnn.export.graph import DetectorGraph
from frcnn.export.opset import check_opset, minimum_opset
from frcnn.models import build_model
from frcnn.utils.settings import check_settings
from tests.helpers.checkpoints import VARIANTS, tiny_config

# Each test model's minimum (the module docstring has the measurements): 16 for a C4 RoIAlign head
# with aligned=true only; the FPN's RoIAlign pools unaligned whatever roi_head.aligned says.
MINIMUM = {name: 12 for name in VARIANTS} | {"roi_align_aligned": 16, "fpn_aligned": 12}
ALIGNED = ["model.roi_head.aligned=true"]
OVERRIDES = VARIANTS | {
    "roi_align_aligned": VARIANTS["roi_align"] + ALIGNED,
    "fpn_aligned": VARIANTS["fpn"] + ALIGNED,
}


@pytest.mark.parametrize("variant", sorted(MINIMUM))
def test_minimum_opset_of_each_model_from_its_config_or_the_model(shapes_root, variant):
    cfg = tiny_config(shapes_root, *OVERRIDES[variant]).model
    assert minimum_opset(cfg) == MINIMUM[variant]
    assert minimum_opset(build_model(cfg, num_classes=3)) == MINIMUM[variant]


def test_an_opset_below_the_minimum_is_refused_in_one_line(tiny_model_config):
    aligned = tiny_model_config(pooler="roi_align", aligned=True)
    with pytest.raises(ValueError) as refused:
        check_opset(15, aligned)
    message = str(refused.value)
    assert "\n" not in message
    assert message == (
        "opset=15 is below what this model's graph needs (16: RoIAlign with aligned=true); use opset>=16"
    )
    check_opset(16, aligned)
    with pytest.raises(ValueError, match=r"^opset=11 is below .* \(12: .*\); use opset>=12$"):
        check_opset(11, tiny_model_config())
    check_opset(12, tiny_model_config(pooler="roi_align"))


def test_the_config_refuses_an_opset_no_model_can_use():
    lowest = min(MINIMUM.values())
    with pytest.raises(ValueError, match=rf"^opset must be >= {lowest} .*, got {lowest - 1}$"):
        check_settings(ExportConfig(checkpoint="a.pt", output="out", opset=lowest - 1))
    check_settings(ExportConfig(checkpoint="a.pt", output="out", opset=lowest))


def test_export_script_refuses_opset_11_in_one_line(in_process, tmp_path):
    """opset=11 passed the config's range (>= 11) and exported a graph that ONNX Runtime refuses."""
    result = in_process("export.py", "checkpoint=missing.pt", f"output={tmp_path / 'out'}", "opset=11", check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "export.py: error: opset must be >= 12 (the lowest opset whose graph ONNX Runtime runs for any frcnn "
        "model), got 11"
    )
    assert not (tmp_path / "out").exists()


def run_exported(model, images, sizes, opset, path):
    """``model``'s graph exported at ``opset`` and run in ONNX Runtime on ``images``: its outputs."""
    write_onnx(DetectorGraph(model), (images, sizes), path, opset)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"images": images.numpy(), "image_sizes": sizes.numpy()})


def same_detections(outputs, expected) -> bool:
    """Whether ONNX Runtime's padded ``outputs`` hold the eval-mode model's ``expected`` detections."""
    boxes, scores, labels, counts = outputs
    for want, b, s, c, n in zip(expected, boxes, scores, labels, counts):
        if n != len(want["boxes"]) or not np.array_equal(c[:n], want["labels"].numpy()):
            return False
        if n and np.abs(b[:n] - want["boxes"].numpy()).max() > 0.01:
            return False
        if n and np.abs(s[:n] - want["scores"].numpy()).max() > 1e-4:
            return False
    return True


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::DeprecationWarning", "ignore::UserWarning")
@pytest.mark.parametrize("roi_head", [{}, {"pooler": "roi_align", "aligned": True}], ids=["roi_pool", "aligned"])
def test_onnxruntime_needs_the_minimum_opset(tiny_model_config, two_images, tmp_path, roi_head):
    """Below the minimum ONNX Runtime refuses the file (Clip of int64 at opset 11) or runs another
    model (unaligned RoIAlign below 16); at the minimum it runs the PyTorch model's detections."""
    torch.manual_seed(0)
    cfg = tiny_model_config(**roi_head)
    model = build_model(cfg, num_classes=3).eval()
    torch.nn.init.normal_(model.roi_head.score.weight, std=1e-3)  # no tied scores
    images, image_sizes, _ = two_images
    sizes = torch.tensor(image_sizes)
    with torch.no_grad():
        expected = model(images, image_sizes)
    assert all(len(e["boxes"]) for e in expected), "the comparison needs detections"
    minimum = minimum_opset(cfg)
    if minimum == 12:
        with pytest.raises(InvalidGraph, match="Clip"):
            run_exported(model, images, sizes, minimum - 1, tmp_path / "below.onnx")
    else:
        assert not same_detections(run_exported(model, images, sizes, minimum - 1, tmp_path / "below.onnx"), expected)
    assert same_detections(run_exported(model, images, sizes, minimum, tmp_path / "minimum.onnx"), expected)
