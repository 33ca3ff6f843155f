"""Comparison helpers of the parity tests (frcnn vs torchvision's detector)."""

import torch

from frcnn.bench.reference import LOSS_NAMES, torchvision_detector


def unpadded(images: torch.Tensor, sizes) -> list[torch.Tensor]:
    """The images of a padded batch ``[B, 3, H, W]`` cut to their ``(h, w)``: torchvision's input."""
    return [image[:, :h, :w] for image, (h, w) in zip(images, sizes)]


def assert_same_sets(ours: torch.Tensor, theirs: torch.Tensor, atol: float, what: str) -> None:
    """Rows of ``ours [N, D]`` and ``theirs [N, D]`` pair up one to one within ``atol``
    (compared as sets: a near-tie may swap two rows' order)."""
    assert ours.shape == theirs.shape, f"{what}: {tuple(ours.shape)} vs {tuple(theirs.shape)}"
    distance = (ours[:, None, :] - theirs[None, :, :]).abs().amax(dim=2)  # (N, N)
    unmatched = torch.ones(len(theirs), dtype=torch.bool)
    for row in range(len(ours)):
        candidates = torch.nonzero((distance[row] <= atol) & unmatched).flatten()
        assert len(candidates) > 0, f"{what}: row {ours[row].tolist()} has no counterpart within {atol}"
        unmatched[candidates[0]] = False


def assert_same_proposals(proposals, their_proposals: list[torch.Tensor], min_count: int) -> None:
    """frcnn's padded ``Proposals`` equal torchvision's per-image boxes to 1e-3 px."""
    for i, theirs in enumerate(their_proposals):
        mine = proposals.boxes[i][proposals.valid[i]]
        assert len(mine) >= min_count
        assert_same_sets(mine, theirs, 1e-3, f"image {i} proposals")


def assert_same_detections(detections: list[dict], their_detections: list[dict], min_count: int) -> None:
    """Per image the same labels, boxes to 1e-3 px and scores to 1e-5."""
    for i, (mine, theirs) in enumerate(zip(detections, their_detections)):
        assert len(mine["boxes"]) >= min_count
        # Scores scaled by 100 so that one tolerance (1e-3) checks them to 1e-5; labels by 1000.
        rows = [
            torch.cat([d["boxes"], 100 * d["scores"][:, None], 1000 * d["labels"][:, None].float()], dim=1)
            for d in (mine, theirs)
        ]
        assert_same_sets(rows[0], rows[1], 1e-3, f"image {i} detections")


def assert_same_training_losses(ours, reference, images: torch.Tensor, sizes, targets: list[dict]) -> None:
    """frcnn's and torchvision's detector give the same, positive, training losses (1e-5) on the
    padded batch ``images`` of unpadded ``sizes`` (torchvision gets the unpadded images)."""
    ours.train(), reference.train()
    losses = ours(images, sizes, targets)
    their_losses = reference(unpadded(images, sizes), [dict(t) for t in targets])
    for ours_name, their_name in LOSS_NAMES.items():
        assert losses[ours_name] > 0
        torch.testing.assert_close(losses[ours_name], their_losses[their_name], rtol=0, atol=1e-5, msg=ours_name)


def assert_same_fpn_inference(ours, reference, images: torch.Tensor, sizes, min_proposals: int, min_detections: int):
    """Eval mode, ours (an FPN detector) against torchvision's ``reference`` on the same weights:
    the same pyramid features (exactly), proposals and detections (:func:`assert_same_proposals`,
    :func:`assert_same_detections`)."""
    ours.eval(), reference.eval()
    with torch.inference_mode():
        features = ours.backbone(images)
        their_features = reference.backbone(images)
        for mine, theirs in zip(features, their_features.values()):
            torch.testing.assert_close(mine, theirs, rtol=0, atol=0)
        proposals, _ = ours.rpn(features, torch.tensor(sizes))
        image_list, _ = reference.transform(unpadded(images, sizes))
        their_proposals, _ = reference.rpn(image_list, their_features)
        detections = ours(images, sizes)
        their_detections = reference(unpadded(images, sizes))
    assert_same_proposals(proposals, their_proposals, min_count=min_proposals)
    assert_same_detections(detections, their_detections, min_count=min_detections)


def assert_composed_reference_detects_alike(ours, cfg, images: torch.Tensor, sizes) -> None:
    """torchvision's detector composed from ``ours`` (built from the model config ``cfg``) by
    :func:`torchvision_detector`, the training-parity benchmark's reference, detects as ``ours``."""
    reference = torchvision_detector(ours.eval(), cfg).eval()
    with torch.inference_mode():
        detections, theirs = ours(images, sizes), reference(unpadded(images, sizes))
    assert_same_detections(detections, theirs, min_count=1)
