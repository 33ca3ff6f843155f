"""Eval mode with targets: detections and validation losses from one forward."""

import torch

from frcnn.models import build_model
from frcnn.models.matching import pad_targets
from frcnn.models.roi_head import proposal_targets, roi_losses


def separate_eval_losses(model, images, sizes, targets):
    """The eval-mode losses computed on their own: the RPN's losses and the RoI head's sampled
    RoIs pooled and predicted directly, as in training, with the model in eval mode."""
    image_sizes = torch.as_tensor(sizes)
    features = [model.backbone(images)]  # C4: one map
    gt = pad_targets(targets, images.device)
    proposals, losses = model.rpn(features, image_sizes, gt)
    head = model.roi_head
    sampled = proposal_targets(proposals, gt, head.box_coder, **head.sampling)
    batch, samples = sampled.rois.shape[:2]
    image_index = torch.arange(batch).repeat_interleave(samples)
    pred_logits, pred_deltas = head.predict(features, sampled.rois.reshape(-1, 4), image_index)
    losses.update(
        roi_losses(
            pred_logits,
            pred_deltas,
            sampled.gt_labels.reshape(-1),
            sampled.gt_deltas.reshape(-1, 4),
            sampled.valid.reshape(-1),
            head.loc_sigma,
        )
    )
    return losses


def trained_a_little(tiny_model_config, two_images, steps=8):
    """A tiny model after a few SGD steps (non-trivial predictions and BN running statistics)."""
    torch.manual_seed(0)
    model = build_model(tiny_model_config(), num_classes=2).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    images, sizes, targets = two_images
    for _ in range(steps):
        optimizer.zero_grad()
        sum(model(images, sizes, targets).values()).backward()
        optimizer.step()
    return model.eval()


def test_eval_with_targets_returns_the_detections_and_the_separately_computed_losses(tiny_model_config, two_images):
    model = trained_a_little(tiny_model_config, two_images)
    images, sizes, targets = two_images
    with torch.no_grad():
        plain = model(images, sizes)
        torch.manual_seed(3)
        detections, losses = model(images, sizes, targets)
        torch.manual_seed(3)
        expected = separate_eval_losses(model, images, sizes, targets)
    assert set(losses) == {"rpn_cls", "rpn_loc", "roi_cls", "roi_loc"}
    for name, value in expected.items():
        assert value > 0
        torch.testing.assert_close(losses[name], value, rtol=1e-5, atol=1e-6, msg=name)
    assert len(detections) == len(plain) == 2
    for got, want in zip(detections, plain):
        assert len(want["boxes"]) > 0
        for key in ("boxes", "scores", "labels"):
            torch.testing.assert_close(got[key], want[key], rtol=1e-5, atol=1e-4)


def test_normalisation_layers_use_their_running_statistics(tiny_model_config, two_images):
    model = trained_a_little(tiny_model_config, two_images)
    images, sizes, targets = two_images
    bn = model.backbone.bn1
    running_mean = bn.running_mean.clone()
    with torch.no_grad():
        torch.manual_seed(0)
        _, losses = model(images, sizes, targets)
        model.train()
        torch.manual_seed(0)
        train_losses = model(images, sizes, targets)
    model.eval()
    assert not bn.training
    assert not torch.equal(bn.running_mean, running_mean)  # the train-mode pass updated them ...
    assert losses["rpn_cls"] != train_losses["rpn_cls"]  # ... the eval-mode pass used the old ones


def test_same_seed_same_losses_other_seed_other_samples(tiny_model_config, two_images):
    model = trained_a_little(tiny_model_config, two_images, steps=2)
    images, sizes, targets = two_images

    def losses_with_seed(seed):
        torch.manual_seed(seed)
        with torch.no_grad():
            return model(images, sizes, targets)[1]

    first, again, other = losses_with_seed(5), losses_with_seed(5), losses_with_seed(6)
    assert first == again
    assert first != other


def test_images_without_objects_give_zero_box_losses_in_eval(tiny_model_config, two_images):
    model = trained_a_little(tiny_model_config, two_images, steps=2)
    images, sizes, _ = two_images
    empty = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}] * 2
    with torch.no_grad():
        detections, losses = model(images, sizes, empty)
    assert losses["rpn_loc"] == 0.0 and losses["roi_loc"] == 0.0
    assert losses["rpn_cls"] > 0 and losses["roi_cls"] > 0
    assert len(detections) == 2
