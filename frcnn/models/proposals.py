"""The RPN's proposal layer, written once in fixed-shape form: eager training and inference, the
ONNX export and ``torch.compile`` run this same code.

Shapes: B images, L pyramid levels (1 for C4), N_l anchors of level l per image, k the pre-NMS
top-N (per level), P = ``min(post_nms_top_n, L * k)`` proposals per image. Boxes are
``(x1, y1, x2, y2)`` in input-image pixels; ``image_sizes [B, 2]`` holds each image's unpadded
``(h, w)``.

Every shape follows from the settings alone, never from the image size or the data: each level's
candidates are padded with k dropped boxes before its top-k (so k is fixed even where a level has
fewer anchors), boxes too small score -inf instead of being removed, NMS returns a mask
(:mod:`frcnn.models.nms`), and the proposals come padded to P with a validity mask. Equal
objectness is ranked by index (:mod:`frcnn.models.topk`), in PyTorch as in ONNX Runtime.
"""

from dataclasses import dataclass

import torch

from frcnn.models.box_coder import BoxCoder, clip_boxes
from frcnn.models.nms import LOWEST_SCORE, NMS, non_max_suppression
from frcnn.models.topk import top_k

PAD_BOX = (0.0, 0.0, 1.0, 1.0)  # the padding candidates' box (they score -inf)


@dataclass
class Proposals:
    """Padded proposals: ``boxes [B, P, 4]`` sorted by decreasing objectness within each
    image, ``valid [B, P]`` bool (False for padding when fewer than P survive NMS)."""

    boxes: torch.Tensor
    valid: torch.Tensor


def num_proposals(pre_nms_top_n: int, post_nms_top_n: int, num_levels: int) -> int:
    """P, the proposals per image: no more than the ``num_levels * pre_nms_top_n`` candidates."""
    return min(post_nms_top_n, num_levels * pre_nms_top_n)


def level_candidates(
    anchors: torch.Tensor,
    pred_logits: torch.Tensor,
    pred_deltas: torch.Tensor,
    image_sizes: torch.Tensor,
    box_coder: BoxCoder,
    *,
    k: int,
    min_size: float,
    min_size_after_top_n: bool,
    score_thresh: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One level's ``k`` best boxes ``[B, k, 4]`` (decoded, clipped to the image) and objectness
    ``[B, k]`` by decreasing score; -inf marks a dropped box (narrower or shorter than
    ``min_size``, or padding where the level has fewer than k anchors).

    ``anchors [N_l, 4]``, ``pred_logits [B, N_l]``, ``pred_deltas [B, N_l, 4]``. By default boxes
    too small are dropped before the top-k; ``min_size_after_top_n`` drops them among the top k
    (torchvision's order), so that fewer than k may remain. Among the top k, a box whose
    objectness probability is below ``score_thresh`` is dropped too (torchvision's
    ``rpn_score_thresh``).
    """
    boxes = clip_boxes(box_coder.decode(anchors[None], pred_deltas), image_sizes)  # (B, N_l, 4)
    scores = pred_logits.float()
    # k dropped boxes of padding: top-k then takes a fixed k at any image size. They are all one
    # box, so that eager NMS keeps the first and suppresses the rest at once (zero-area boxes
    # would never suppress each other, and each would be compared with every later box).
    padding = torch.zeros_like(boxes[:, :1]) + boxes.new_tensor(PAD_BOX)
    scores = torch.cat([scores, torch.full_like(scores[:, :1], float("-inf")).expand(-1, k)], dim=1)
    boxes = torch.cat([boxes, padding.expand(-1, k, -1)], dim=1)  # (B, N_l + k, 4)

    def drop_small(scores, boxes):
        too_small = ((boxes[..., 2:] - boxes[..., :2]) < min_size).any(dim=2)
        return scores.masked_fill(too_small, float("-inf"))

    if not min_size_after_top_n:
        scores = drop_small(scores, boxes)
    scores, top = top_k(scores, k)  # (B, k)
    boxes = torch.gather(boxes, 1, top[:, :, None].expand(-1, -1, 4))
    if min_size_after_top_n:
        scores = drop_small(scores, boxes)
    if score_thresh > 0:
        scores = scores.masked_fill(torch.sigmoid(scores) < score_thresh, float("-inf"))
    return boxes, scores


@torch.no_grad()
def propose(
    anchors: list[torch.Tensor],
    pred_logits: list[torch.Tensor],
    pred_deltas: list[torch.Tensor],
    image_sizes: torch.Tensor,
    box_coder: BoxCoder,
    *,
    pre_nms_top_n: int,
    post_nms_top_n: int,
    nms_thresh: float,
    min_size: float,
    min_size_after_top_n: bool = False,
    score_thresh: float = 0.0,
    nms: NMS = non_max_suppression,
) -> Proposals:
    """Proposal layer: per level, the ``pre_nms_top_n`` best boxes (:func:`level_candidates`),
    NMS within each image and level, then the P best of all levels per image.

    One entry per level: ``anchors [N_l, 4]``, ``pred_logits [B, N_l]``, ``pred_deltas [B, N_l, 4]``.
    """
    candidates = [
        level_candidates(a, logits, deltas, image_sizes, box_coder, k=pre_nms_top_n, min_size=min_size,
                         min_size_after_top_n=min_size_after_top_n, score_thresh=score_thresh)
        for a, logits, deltas in zip(anchors, pred_logits, pred_deltas)
    ]  # fmt: skip
    levels, k = len(candidates), pre_nms_top_n
    count = num_proposals(pre_nms_top_n, post_nms_top_n, levels)
    boxes = torch.stack([b for b, _ in candidates], dim=1)  # (B, L, k, 4)
    scores = torch.stack([s for _, s in candidates], dim=1)  # (B, L, k)
    # Every (image, level) pair is one NMS batch; dropped (-inf) boxes are never kept. No level
    # keeps more than P boxes that could make the image's top P.
    kept = nms(boxes.reshape(-1, k, 4), scores.reshape(-1, 1, k), max_output=count, iou_thresh=nms_thresh,
               score_thresh=LOWEST_SCORE)  # fmt: skip
    kept = kept.reshape(-1, levels * k)  # (B*L, 1, k) -> (B, L*k)
    boxes, scores = boxes.reshape(-1, levels * k, 4), scores.reshape(-1, levels * k)
    # The image's kept boxes first, by decreasing objectness across levels (kept scores are
    # finite), equal scores by level, then by rank within the level.
    _, order = top_k(torch.where(kept, scores, float("-inf")), count)  # (B, P)
    return Proposals(torch.gather(boxes, 1, order[:, :, None].expand(-1, -1, 4)), torch.gather(kept, 1, order))
