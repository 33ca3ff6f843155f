"""Batched label assignment helpers shared by the RPN and the RoI head.

Ground truth comes as a list of per-image dicts; it is padded once per batch to
``[B, G, 4]`` boxes with a validity mask so that matching and sampling run as batched tensor
ops with no per-image Python loop and no host-device synchronisation.
"""

from dataclasses import dataclass

import torch


@dataclass
class GroundTruth:
    """Padded ground truth of a batch: ``boxes [B, G, 4]`` (x1, y1, x2, y2), ``labels [B, G]``
    int64 in 1..K (0 where padded), ``valid [B, G]`` bool. ``G >= 1`` even when every image is empty."""

    boxes: torch.Tensor
    labels: torch.Tensor
    valid: torch.Tensor


# The narrowest bucketed width: most images of VOC and COCO hold fewer objects, so a compiled
# model meets one width for most batches; the padded rows cost a [G, anchors] IoU each, nothing
# beside the convolutions.
MIN_BUCKET_WIDTH = 16


def pad_targets(targets: list[dict], device: torch.device, bucket: bool = False) -> GroundTruth:
    """Pad per-image ``{"boxes" [N_i, 4], "labels" [N_i]}`` into a :class:`GroundTruth` of
    width ``G = max(N_i)`` (at least 1), or with ``bucket`` the next power of two, at least
    :data:`MIN_BUCKET_WIDTH`: a compiled model then meets a handful of widths, each compiled
    once, instead of one per object count."""
    counts = [len(t["boxes"]) for t in targets]
    batch, width = len(targets), max(max(counts, default=0), 1)
    if bucket:
        width = max(MIN_BUCKET_WIDTH, 1 << (width - 1).bit_length())
    boxes = torch.zeros(batch, width, 4, device=device)
    labels = torch.zeros(batch, width, dtype=torch.int64, device=device)
    # Slot indices are computed on the host from the known counts: no device sync.
    lengths = torch.tensor(counts)
    valid = (torch.arange(width)[None, :] < lengths[:, None]).to(device)
    if sum(counts) > 0:
        image_index = torch.repeat_interleave(torch.arange(batch), lengths)
        slot = torch.arange(len(image_index)) - (lengths.cumsum(0) - lengths)[image_index]
        image_index, slot = image_index.to(device), slot.to(device)
        boxes[image_index, slot] = torch.cat([t["boxes"] for t in targets]).to(device=device, dtype=torch.float32)
        labels[image_index, slot] = torch.cat([t["labels"] for t in targets]).to(device=device, dtype=torch.int64)
    return GroundTruth(boxes, labels, valid)


def pairwise_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """IoU of every pair: ``boxes1 [..., N, 4]`` x ``boxes2 [..., M, 4]`` -> ``[..., N, M]``.

    Leading dimensions broadcast (e.g. shared anchors ``[1, N, 4]`` against ``[B, G, 4]``).
    Degenerate (zero-area) pairs give IoU 0 instead of NaN.
    """
    area1 = (boxes1[..., 2] - boxes1[..., 0]) * (boxes1[..., 3] - boxes1[..., 1])
    area2 = (boxes2[..., 2] - boxes2[..., 0]) * (boxes2[..., 3] - boxes2[..., 1])
    lt = torch.maximum(boxes1[..., :, None, :2], boxes2[..., None, :, :2])
    rb = torch.minimum(boxes1[..., :, None, 2:], boxes2[..., None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area1[..., :, None] + area2[..., None, :] - inter
    return inter / union.clamp(min=torch.finfo(union.dtype).eps)


def _random_choice(mask: torch.Tensor, counts: torch.Tensor, max_count: int) -> torch.Tensor:
    """Uniformly pick ``counts[b]`` of the True entries of each row of ``mask [B, N]``.

    Random keys are drawn for the candidates only (others get -1); the top ``max_count``
    keys of a row are a uniformly random ordering of its candidates, and the first
    ``counts[b]`` of them are kept. Returns a bool ``[B, N]``.
    """
    max_count = min(max_count, mask.shape[1])
    keys = torch.rand(mask.shape, device=mask.device).masked_fill_(~mask, -1.0)
    order = keys.topk(max_count, dim=1).indices  # (B, max_count), candidates first
    keep = torch.arange(max_count, device=mask.device)[None, :] < counts[:, None]
    return torch.zeros_like(mask).scatter_(1, order, keep)


def subsample_labels(
    positive: torch.Tensor, negative: torch.Tensor, num_samples: int, positive_fraction: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample at most ``num_samples`` entries per row, at most ``positive_fraction`` positive.

    ``positive``/``negative`` are disjoint bool masks ``[B, N]``; the negatives fill what the
    positives leave. Returns the sampled ``(positive, negative)`` bool masks ``[B, N]``.
    """
    max_positive = int(num_samples * positive_fraction)
    num_positive = positive.sum(dim=1).clamp(max=max_positive)
    num_negative = torch.minimum(negative.sum(dim=1), num_samples - num_positive)
    return (
        _random_choice(positive, num_positive, max_positive),
        _random_choice(negative, num_negative, num_samples),
    )
