"""The detector compiles whole: TorchDynamo traces the C4 and FPN models, in training and in
eval mode, as one graph each (no graph break), and the compiled model gives the eager model's
detections and losses."""

import copy
from pathlib import Path

import pytest
import torch
import torch._dynamo
from omegaconf import OmegaConf
from torch._dynamo.testing import CompileCounter

from frcnn.config import group_option
from frcnn.models import ModelConfig, build_model
from frcnn.models.faster_rcnn import model_inputs
from frcnn.models.matching import pad_targets
from frcnn.models.nms import non_max_suppression
from frcnn.utils.compile import compile_model, configure_dynamo

FPN_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "model" / "resnet50_fpn.yaml"
TINY_FPN = {"fpn_channels": 32, "backbone.depth": 18, "backbone.weights": None, "rpn.conv_channels": 32,
            "rpn.pre_nms_top_n_train": 100, "rpn.post_nms_top_n_train": 60, "rpn.pre_nms_top_n_test": 100,
            "rpn.post_nms_top_n_test": 30, "rpn.batch_size_per_image": 64, "roi_head.batch_size_per_image": 16,
            "roi_head.mlp_dim": 64}  # fmt: skip

TARGETS = [
    {"boxes": torch.tensor([[10.0, 10.0, 50.0, 60.0]]), "labels": torch.tensor([1])},
    {"boxes": torch.tensor([[5.0, 5.0, 40.0, 30.0], [50.0, 20.0, 90.0, 70.0]]), "labels": torch.tensor([2, 3])},
]


def tiny_detector(tiny_model_config, arch: str) -> torch.nn.Module:
    """The tests' tiny ResNet-18 C4 detector, or the FPN preset on a ResNet-18 with few proposals."""
    if arch == "c4":
        cfg = tiny_model_config()
    else:
        cfg = OmegaConf.merge(OmegaConf.structured(ModelConfig), group_option("model", "resnet50_fpn"))
        for key, value in TINY_FPN.items():
            OmegaConf.update(cfg, key, value)
    torch.manual_seed(0)
    return build_model(cfg, num_classes=3)


def inputs(train: bool):
    images = torch.randn(2, 3, 96, 128, generator=torch.Generator().manual_seed(0))
    sizes = torch.tensor([[96, 128], [80, 100]])
    return (images, sizes, TARGETS) if train else (images, sizes)


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("arch", ["c4", "fpn"])
def test_the_detector_is_one_graph_without_breaks(tiny_model_config, arch, mode):
    configure_dynamo()
    model = tiny_detector(tiny_model_config, arch).train(mode == "train")
    explanation = torch._dynamo.explain(model)(*inputs(mode == "train"))
    reasons = [b.reason for b in explanation.break_reasons]
    assert explanation.graph_break_count == 0, reasons
    assert explanation.graph_count == 1


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["c4", "fpn"])
def test_compiled_and_eager_give_the_same_detections_and_losses(tiny_model_config, arch, monkeypatch):
    # Inductor draws random numbers its own way; the eager generator makes the RoI sampling equal.
    monkeypatch.setattr(torch._inductor.config, "fallback_random", True)
    eager = tiny_detector(tiny_model_config, arch)
    compiled = compile_model(copy.deepcopy(eager))
    frozen = compile_model(copy.deepcopy(eager), inference=True)  # as evaluate.py and predict.py compile
    assert compiled.state_dict().keys() == eager.state_dict().keys()  # checkpoints keep the eager names

    with torch.no_grad():
        want = eager.eval()(*inputs(False))
        for got in (compiled.eval()(*inputs(False)), frozen.eval()(*inputs(False))):
            for w, g in zip(want, got, strict=True):
                assert len(w["boxes"]) > 0 and w["labels"].tolist() == g["labels"].tolist()
                torch.testing.assert_close(g["boxes"], w["boxes"], rtol=0, atol=1e-3)
                torch.testing.assert_close(g["scores"], w["scores"], rtol=0, atol=1e-4)

    losses = {}
    for name, model in (("eager", eager.train()), ("compiled", compiled.train())):
        torch.manual_seed(1)
        images, sizes, targets = inputs(True)
        # Both get the targets padded as the compiled model gets them: the RoI sampling draws one
        # random number per candidate, padded ground-truth rows included, so the width changes the draws.
        losses[name] = model(images, sizes, pad_targets(targets, images.device, bucket=True))
        if arch == "c4":  # the backward graph once: it compiles alike for both designs
            sum(losses[name].values()).backward()
    for key, value in losses["eager"].items():
        torch.testing.assert_close(losses["compiled"][key], value, rtol=1e-4, atol=1e-5)
    for (name, w), g in zip(eager.named_parameters(), compiled.parameters(), strict=True):
        if w.grad is not None:
            torch.testing.assert_close(g.grad, w.grad, rtol=1e-3, atol=1e-4, msg=name)


@pytest.mark.slow
def test_model_inputs_bound_the_compiled_shapes(tiny_model_config):
    """Each image size in a list of sizes and each per-image object count is a value to compile
    for; made tensors outside the model (sizes) and padded to a bucketed width (targets), five
    batches of different sizes and counts in one padded shape compile twice (widths 16 and 32)."""
    configure_dynamo()
    images = inputs(False)[0]
    batches = [((96, 128), (80, 100), 1, 2), ((90, 120), (96, 128), 2, 1), ((64, 128), (96, 96), 3, 1),
               ((96, 100), (70, 128), 17, 4), ((50, 60), (96, 128), 2, 2)]  # fmt: skip
    frames = {}
    for prepared in (False, True):
        counter = CompileCounter()
        model = tiny_detector(tiny_model_config, "c4").train()
        model.compile(backend=counter)  # traced by TorchDynamo, not compiled by Inductor: fast
        for first, second, *counts in batches:
            sizes = [first, second]
            targets = [{"boxes": torch.tensor([[10.0, 10, 40, 40]] * n), "labels": torch.ones(n, dtype=torch.int64)}
                       for n in counts]  # fmt: skip
            model(images, *(model_inputs(model, sizes, targets, images.device) if prepared else (sizes, targets)))
        frames[prepared] = counter.frame_count
    assert frames == {False: len(batches), True: 2}


def test_compiled_nms_keeps_none_one_or_several_boxes():
    """torchvision declares NMS to keep at least 2 boxes; a compiled graph must take 0 and 1 too."""
    configure_dynamo()

    def nms(boxes, scores):
        return non_max_suppression(boxes, scores, max_output=5, iou_thresh=0.5, score_thresh=0.05)

    compiled = torch.compile(nms)
    boxes = torch.rand(2, 6, 4, generator=torch.Generator().manual_seed(0)) * 10
    boxes[..., 2:] += boxes[..., :2] + 1
    for count in (3, 0, 1):
        scores = torch.zeros(2, 1, 6)
        scores[0, 0, :count] = torch.linspace(0.9, 0.5, count)
        assert torch.equal(compiled(boxes, scores), nms(boxes, scores)), count
