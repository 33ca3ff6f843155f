import torch
from omegaconf import OmegaConf

from frcnn.models import build_model
from frcnn.models.reference import torchvision_c4


def test_torchvision_composition_mirrors_ours_and_runs(tiny_model_config, two_images):
    torch.manual_seed(0)
    cfg = OmegaConf.structured(tiny_model_config(pooler="roi_align"))
    cfg.backbone.frozen_stages = 2
    cfg.backbone.norm = "frozen_bn"
    ours = build_model(cfg, num_classes=2)
    reference = torchvision_c4(ours, cfg)

    def trainable(model):
        return sorted(p.numel() for p in model.parameters() if p.requires_grad)

    assert trainable(reference) == trainable(ours)
    torch.testing.assert_close(reference.roi_heads.box_predictor.bbox_pred.weight, ours.roi_head.cls_loc.weight)
    torch.testing.assert_close(reference.backbone.layer3[0].conv1.weight, ours.backbone.layer3[0].conv1.weight)
    assert reference.rpn.anchor_generator.num_anchors_per_location() == [ours.rpn.anchor_generator.num_anchors]
    images, _, targets = two_images
    losses = reference.train()(list(images), targets)
    assert set(losses) == {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"}
    with torch.inference_mode():
        detections = reference.eval()(list(images))
    assert all(d["boxes"].shape[1] == 4 for d in detections)
    # Its transform must not resize the inputs: equal image sizes in, no rescaling out.
    transformed, _ = reference.transform(list(images))
    assert transformed.image_sizes == [(128, 128), (128, 128)]
