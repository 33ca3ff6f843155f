"""The detector on ``FRCNN_TEST_DEVICE`` (default cpu) and under bf16 autocast, as ``train.amp=bf16`` runs it."""

import torch
from torchvision.ops import box_iou

from frcnn.models import build_model


def _on(device, images, targets):
    return images.to(device), [{k: v.to(device) for k, v in t.items()} for t in targets]


def test_inference_on_the_test_device_matches_the_cpu(two_images, tiny_model_config, test_device):
    torch.manual_seed(0)
    cfg = tiny_model_config()
    cfg.roi_head.score_thresh = 0.0
    model = build_model(cfg, num_classes=2).eval()
    images, sizes, targets = two_images
    with torch.no_grad():
        expected = model(images, sizes)
        images_d, _ = _on(test_device, images, targets)
        got = model.to(test_device)(images_d, sizes)
    for e, g in zip(expected, got):
        assert g["boxes"].device.type == test_device.type
        assert len(e["boxes"]) > 0
        # Kernels differ between devices: compare the strongest detections, which are far from ties.
        top = min(5, len(e["boxes"]))
        torch.testing.assert_close(g["scores"][:top].cpu(), e["scores"][:top], atol=1e-3, rtol=1e-3)
        torch.testing.assert_close(g["boxes"][:top].cpu(), e["boxes"][:top], atol=1e-2, rtol=1e-3)
        assert torch.equal(g["labels"][:top].cpu(), e["labels"][:top])


def test_bf16_autocast_training_step_and_inference(two_images, tiny_model_config, test_device):
    """Every op of the forward pass runs under bf16 autocast: finite losses, finite gradients on every
    trainable parameter, and detections in float32 that match full precision's top box."""
    torch.manual_seed(0)
    cfg = tiny_model_config()
    cfg.roi_head.score_thresh = 0.0
    model = build_model(cfg, num_classes=2).to(test_device).train()
    images, sizes, targets = two_images
    images, targets = _on(test_device, images, targets)
    with torch.autocast(test_device.type, dtype=torch.bfloat16):
        losses = model(images, sizes, targets)
    assert set(losses) == {"rpn_cls", "rpn_loc", "roi_cls", "roi_loc"}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values()), losses
    sum(losses.values()).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)

    model.eval()
    with torch.no_grad():
        full = model(images, sizes)
        with torch.autocast(test_device.type, dtype=torch.bfloat16):
            mixed = model(images, sizes)
    for f, m in zip(full, mixed):
        assert m["boxes"].dtype == torch.float32 and m["scores"].dtype == torch.float32
        assert len(m["boxes"]) > 0
        assert box_iou(m["boxes"][:1], f["boxes"][:1]).item() > 0.9
