"""The RoI head's detection stage, written once in fixed-shape form: eager inference, the
validation-loss pass, the ONNX export and ``torch.compile`` run this same code.

Shapes: B images, P proposals per image (padded, :class:`~frcnn.models.proposals.Proposals`),
R valid proposals in the batch (the box head runs on those only), K object classes (labels 1..K;
0 is background), D = ``min(detections_per_image, P * K)`` detections per image. Boxes are
``(x1, y1, x2, y2)`` in input-image pixels; ``image_sizes [B, 2]`` holds each image's unpadded
``(h, w)``.

The R predictions are spread back over the padded ``[B, P, K]`` layout (padding and dropped boxes
score -inf), per-class NMS runs on every (image, class) pair as one NMS batch, and the D best
kept boxes of each image come out padded, with their count.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from frcnn.models.box_coder import BoxCoder, clip_boxes
from frcnn.models.nms import NMS, non_max_suppression
from frcnn.models.proposals import Proposals
from frcnn.models.topk import top_k

MIN_BOX_SIZE = 1e-2  # pixels; torchvision's threshold for degenerate detections


@dataclass
class Detections:
    """Padded detections: ``boxes [B, D, 4]``, ``scores [B, D]`` (decreasing), ``labels [B, D]``
    int64 in 1..K; rows ``num_detections[b]`` and beyond of image b are zeros (label 0).
    ``num_detections [B]`` int64."""

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor
    num_detections: torch.Tensor

    def per_image(self) -> list[dict[str, torch.Tensor]]:
        """Per image ``{"boxes" [D_b, 4], "scores" [D_b], "labels" [D_b]}`` without the padding
        (the counts are read on the host: a device sync)."""
        counts = self.num_detections.tolist()
        return [
            {"boxes": self.boxes[b, :n], "scores": self.scores[b, :n], "labels": self.labels[b, :n]}
            for b, n in enumerate(counts)
        ]


def max_detections(detections_per_image: int, num_proposals: int, num_classes: int) -> int:
    """D, the detections per image: no more than the ``num_proposals * num_classes`` candidates."""
    return min(detections_per_image, num_proposals * num_classes)


def class_boxes(
    pred_logits: torch.Tensor,
    pred_deltas: torch.Tensor,
    rois: torch.Tensor,
    image_sizes: torch.Tensor,
    box_coder: BoxCoder,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax scores ``[R, K]`` (background dropped) and class-specific boxes ``[R, K, 4]``
    decoded from ``rois [R, 4]`` and clipped to ``image_sizes [R, 2]`` (each RoI's image).

    Boxes narrower or shorter than ``MIN_BOX_SIZE`` after clipping (wholly outside the image)
    score -inf, as torchvision drops them: they cannot match anything.
    """
    scores = F.softmax(pred_logits.float(), dim=1)[:, 1:]  # (R, K)
    boxes = clip_boxes(box_coder.decode(rois[:, None, :], pred_deltas[:, 1:]), image_sizes)  # (R, K, 4)
    degenerate = ((boxes[..., 2:] - boxes[..., :2]) < MIN_BOX_SIZE).any(dim=-1)
    return scores.masked_fill(degenerate, float("-inf")), boxes


@torch.no_grad()
def postprocess_detections(
    pred_logits: torch.Tensor,
    pred_deltas: torch.Tensor,
    proposals: Proposals,
    image_index: torch.Tensor,
    slot: torch.Tensor,
    image_sizes: torch.Tensor,
    box_coder: BoxCoder,
    *,
    score_thresh: float,
    nms_thresh: float,
    detections_per_image: int,
    nms: NMS = non_max_suppression,
) -> Detections:
    """Softmax, per-class decode, clip, score threshold (``> score_thresh``), per-class NMS, the
    D best per image.

    ``pred_logits [R, K+1]`` and ``pred_deltas [R, K+1, 4]`` predict the proposal at ``slot [R]``
    of image ``image_index [R]`` of ``proposals`` (the valid ones, or every slot: padding scores -inf).
    """
    num_slots, num_classes = proposals.boxes.shape[1], pred_logits.shape[1] - 1
    count = max_detections(detections_per_image, num_slots, num_classes)
    rois = proposals.boxes[image_index, slot]
    scores, boxes = class_boxes(pred_logits, pred_deltas, rois, image_sizes[image_index], box_coder)
    scores = scores.masked_fill(~proposals.valid[image_index, slot, None], float("-inf"))  # padding slots given
    # Back to the padded layout; padding scores -inf, never above the threshold.
    dense_scores = torch.full_like(proposals.boxes[:, :, :1], float("-inf")).expand(-1, -1, num_classes).contiguous()
    dense_scores[image_index, slot] = scores  # (B, P, K)
    dense_boxes = torch.zeros_like(proposals.boxes[:, :, None, :]).expand(-1, -1, num_classes, -1).contiguous()
    dense_boxes[image_index, slot] = boxes  # (B, P, K, 4)
    # Every (image, class) pair is one NMS batch: (B, P, K, 4) -> (B, K, P, 4) -> (B*K, P, 4),
    # (B, P, K) -> (B, K, P) -> (B*K, 1, P). The cap is a setting, not derived from a size, so
    # that the exported operator gets a constant.
    kept = nms(
        dense_boxes.permute(0, 2, 1, 3).reshape(-1, num_slots, 4),
        dense_scores.permute(0, 2, 1).reshape(-1, 1, num_slots),
        max_output=detections_per_image,
        iou_thresh=nms_thresh,
        score_thresh=score_thresh,
    )
    # (B*K, 1, P) -> (B, K, P) -> (B, P, K) -> (B, P*K): candidate j is proposal j // K, class
    # j % K + 1; equal scores are ranked by proposal, then class.
    kept = kept.reshape(-1, num_classes, num_slots).permute(0, 2, 1).reshape(-1, num_slots * num_classes)
    ranked = torch.where(kept, dense_scores.reshape(-1, num_slots * num_classes), float("-inf"))
    scores, top = top_k(ranked, count)  # (B, D)
    num_detections = kept.sum(dim=1).clamp(max=count)
    is_detection = torch.cumsum(torch.ones_like(top), dim=1) <= num_detections[:, None]
    boxes = torch.gather(dense_boxes.reshape(-1, num_slots * num_classes, 4), 1, top[:, :, None].expand(-1, -1, 4))
    return Detections(
        torch.where(is_detection[:, :, None], boxes, 0.0),
        torch.where(is_detection, scores, 0.0),
        torch.where(is_detection, torch.remainder(top, num_classes) + 1, 0),
        num_detections,
    )
