"""The detector's inference as one traceable graph with fixed-rank, padded outputs.

:class:`DetectorGraph` wraps a trained :class:`~frcnn.models.FasterRCNN` (its own submodules and
weights), C4 or FPN, and recomputes its eval-mode forward with operations that export to ONNX
with a dynamic batch size and image size: no Python numbers derived from tensor sizes, no
per-image loops, NMS as ONNX ``NonMaxSuppression`` and RoI pooling as ``RoiAlign`` /
``MaxRoiPool``. The detections equal the eager model's (same proposals in the same order, same
per-class NMS, same score order and tie-breaking).

Shapes: B images, L pyramid levels (1 for C4; P2..P6 for FPN), N_l anchors of level l per
image, k the RPN's pre-NMS top-N (per level), P proposals per image (``min(post, L * k)`` of the
RPN's test counts), R valid proposals in the batch, K object classes, D detections per image
(``min(detections_per_image, P * K)``). Boxes are ``(x1, y1, x2, y2)`` in input-image pixels.

Outputs (the exported model's, in this order):

- ``boxes [B, D, 4]`` float32, ``scores [B, D]`` float32 (decreasing), ``labels [B, D]`` int64
  in 1..K; rows ``num_detections[b]`` and beyond of image b are padding (zeros, label 0);
- ``num_detections [B]`` int64.

The stages are :meth:`DetectorGraph.propose` (features -> padded proposals),
:meth:`DetectorGraph.box_features` (RoIs -> the box head's vectors: one level, the FPN rule, or
the C4 RoIAlign head with layer4's first 1x1 convolutions before the pooling,
:mod:`frcnn.export.hoist`) and :meth:`DetectorGraph.detect` (proposals -> padded detections).
"""

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import roi_align

from frcnn.export.fold import fold_batch_norms
from frcnn.export.hoist import HoistedRes5Head, can_hoist
from frcnn.export.nms import LOWEST_SCORE, non_max_suppression
from frcnn.models import FasterRCNN
from frcnn.models.box_coder import clip_boxes
from frcnn.models.fpn import FPN_STRIDES, POOLED_LEVELS, MultiLevelRoIAlign
from frcnn.models.roi_head import MIN_BOX_SIZE

OUTPUT_NAMES = ("boxes", "scores", "labels", "num_detections")


class DetectorGraph(nn.Module):
    """Export-ready inference of a C4 or FPN :class:`FasterRCNN` (see the module docstring).

    ``forward(images [B, 3, H, W] float32 normalised and zero-padded, image_sizes [B, 2] int64
    unpadded (h, w))`` -> ``(boxes [B, D, 4], scores [B, D], labels [B, D], num_detections [B])``.
    The model is deep-copied, put in eval mode and its batch norms folded into the convolutions;
    ``hoist`` runs layer4's first 1x1 convolutions before RoIAlign where :func:`can_hoist` allows.
    """

    def __init__(self, model: FasterRCNN, fold_norms: bool = True, hoist: bool = True):
        super().__init__()
        model = copy.deepcopy(model).eval()
        if fold_norms:
            fold_batch_norms(model)
        self.backbone = model.backbone
        rpn, roi_head = model.rpn, model.roi_head
        self.rpn_head = rpn.head
        self.anchor_generators = rpn.anchor_generators
        self.min_size_after_top_n = rpn.min_size_after_top_n
        self.rpn_box_coder = rpn.box_coder
        self.pre_nms_top_n = rpn.pre_nms_top_n["test"]
        self.post_nms_top_n = min(rpn.post_nms_top_n["test"], self.pre_nms_top_n * len(self.anchor_generators))
        self.rpn_nms_thresh = rpn.nms_thresh
        self.min_size = rpn.min_size
        self.box_pooler, self.box_head = roi_head.box_pooler, roi_head.box_head
        hoistable = hoist and can_hoist(self.box_pooler, self.box_head)
        self.hoisted = HoistedRes5Head(self.box_pooler, self.box_head) if hoistable else None
        self.score, self.cls_loc = roi_head.score, roi_head.cls_loc
        self.box_coder = roi_head.box_coder
        self.num_classes = roi_head.score.out_features - 1
        self.score_thresh = roi_head.inference["score_thresh"]
        self.nms_thresh = roi_head.inference["nms_thresh"]
        self.detections_per_image = min(roi_head.inference["detections_per_image"], self.post_nms_top_n * self.num_classes)

    def forward(self, images: torch.Tensor, image_sizes: torch.Tensor):
        features = self.backbone(images)
        if isinstance(features, torch.Tensor):  # C4: one map
            features = [features]
        proposals, valid = self.propose(features, image_sizes)
        return self.detect(features, proposals, valid, image_sizes)

    def level_candidates(self, generator, feature: torch.Tensor, image_sizes: torch.Tensor):
        """One level's ``pre_nms_top_n`` best boxes ``[B, k, 4]`` and objectness ``[B, k]``,
        decreasing (-inf: dropped, too small, or padding where the level has fewer anchors)."""
        anchors = generator(feature.shape[-2:])  # (N_l, 4)
        pred_logits, pred_deltas = self.rpn_head(feature)
        boxes = clip_boxes(self.rpn_box_coder.decode(anchors[None], pred_deltas), image_sizes)  # (B, N_l, 4)
        scores = pred_logits.float()
        # Pad with k dropped (-inf) boxes, so that top-k takes a fixed k at any image size.
        scores = torch.cat([scores, torch.full_like(scores[:, :1], float("-inf")).expand(-1, self.pre_nms_top_n)], dim=1)
        boxes = torch.cat([boxes, torch.zeros_like(boxes[:, :1]).expand(-1, self.pre_nms_top_n, -1)], dim=1)

        def too_small(boxes):
            return ((boxes[..., 2:] - boxes[..., :2]) < self.min_size).any(dim=2)

        if not self.min_size_after_top_n:  # the size filter first, then top-k by objectness
            scores = scores.masked_fill(too_small(boxes), float("-inf"))
        scores, top = scores.topk(self.pre_nms_top_n, dim=1)  # (B, k)
        boxes = torch.gather(boxes, 1, top[:, :, None].expand(-1, -1, 4))
        if self.min_size_after_top_n:
            scores = scores.masked_fill(too_small(boxes), float("-inf"))
        return boxes, scores

    def propose(self, features: list[torch.Tensor], image_sizes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The RPN's proposal layer: ``boxes [B, P, 4]`` by decreasing objectness and ``valid
        [B, P]`` (False for padding), the valid ones equal to ``frcnn.models.rpn.propose``'s."""
        candidates = [self.level_candidates(g, f, image_sizes) for g, f in zip(self.anchor_generators, features)]
        levels, k = len(candidates), self.pre_nms_top_n
        boxes = torch.stack([b for b, _ in candidates], dim=1)  # (B, L, k, 4)
        scores = torch.stack([s for _, s in candidates], dim=1)  # (B, L, k)
        # NMS within each image and level: every (image, level) pair is one NMS batch.
        # Dropped boxes score -inf and are never selected; in eager PyTorch they take part but sort
        # last, so they never suppress a kept box: the kept sets are equal. No level keeps more
        # than P boxes that could make the image's top P.
        selected = non_max_suppression(
            boxes.reshape(-1, k, 4), scores.reshape(-1, 1, k), self.post_nms_top_n, self.rpn_nms_thresh, LOWEST_SCORE
        )
        kept = torch.zeros_like(scores.reshape(-1, k), dtype=torch.bool)  # (B*L, k)
        kept[selected[:, 0], selected[:, 2]] = True
        kept = kept.reshape(-1, levels * k)  # (B, L*k)
        boxes, scores = boxes.reshape(-1, levels * k, 4), scores.reshape(-1, levels * k)
        # The image's kept boxes first, by decreasing objectness across levels (kept scores are
        # finite). Top-k puts the lower index first on ties: within a level that is the eager
        # order; equal logits on two levels are ordered by level here, by an unstable sort there.
        order = torch.where(kept, scores, float("-inf")).topk(self.post_nms_top_n, dim=1).indices  # (B, P)
        return torch.gather(boxes, 1, order[:, :, None].expand(-1, -1, 4)), torch.gather(kept, 1, order)

    def box_features(self, features, rois, image_index, slot):
        """The box head's vectors ``[R, D]`` of ``rois [R, 4]`` of images ``image_index [R]`` at
        ``slot [R]``, and the ``(rois, image_index, slot)`` of its rows: in the same order for one
        level, grouped by level for FPN (:func:`roi_align_by_level`)."""
        if self.hoisted is not None:
            return self.hoisted(features, rois, image_index), rois, image_index, slot
        if isinstance(self.box_pooler, MultiLevelRoIAlign):
            pooled, (rois, image_index, slot) = roi_align_by_level(self.box_pooler, features, rois, image_index, slot)
        else:
            pooled = self.box_pooler(features, rois, image_index)
        return self.box_head(pooled), rois, image_index, slot

    def detect(self, features, proposals, valid, image_sizes):
        """Box head and post-processing of ``proposals [B, P, 4]`` / ``valid [B, P]``: the padded
        outputs of the module docstring, equal to ``frcnn.models.roi_head.postprocess_detections``'s."""
        num_classes, num_proposals = self.num_classes, self.post_nms_top_n
        # The box head runs on the valid proposals only (R of them).
        image_index, slot = valid.nonzero(as_tuple=True)
        hidden, rois, image_index, slot = self.box_features(features, proposals[image_index, slot], image_index, slot)
        probs = F.softmax(self.score(hidden).float(), dim=1)[:, 1:]  # (R, K)
        deltas = self.cls_loc(hidden).reshape(-1, num_classes + 1, 4)[:, 1:]
        boxes = clip_boxes(self.box_coder.decode(rois[:, None, :], deltas), image_sizes[image_index])  # (R, K, 4)
        # Degenerate boxes (wholly outside the image) are dropped, as in the eager model.
        probs = torch.where(((boxes[..., 2:] - boxes[..., :2]) >= MIN_BOX_SIZE).all(dim=-1), probs, 0.0)
        # Back to the padded layout (padding scores 0: never above the threshold).
        dense_scores = torch.zeros_like(proposals[:, :, :1]).expand(-1, -1, num_classes).contiguous()  # (B, P, K)
        dense_scores[image_index, slot] = probs
        dense_boxes = torch.zeros_like(proposals[:, :, None, :]).expand(-1, -1, num_classes, -1).contiguous()
        dense_boxes[image_index, slot] = boxes  # (B, P, K, 4)
        # Per-class NMS: every (image, class) pair is one NMS batch.
        # (B, P, K, 4) -> (B, K, P, 4) -> (B*K, P, 4); (B, P, K) -> (B*K, 1, P)
        nms_boxes = dense_boxes.permute(0, 2, 1, 3).reshape(-1, num_proposals, 4)
        nms_scores = dense_scores.permute(0, 2, 1).reshape(-1, 1, num_proposals)
        selected = non_max_suppression(nms_boxes, nms_scores, self.detections_per_image, self.nms_thresh, self.score_thresh)
        kept = torch.zeros_like(nms_scores[:, 0], dtype=torch.bool)  # (B*K, P)
        kept[selected[:, 0], selected[:, 2]] = True
        # (B*K, P) -> (B, K, P) -> (B, P, K) -> (B, P*K): candidate j is proposal j // K, class j % K + 1,
        # the eager model's order, by which top-k (lower index first on ties) breaks score ties.
        kept = kept.reshape(-1, num_classes, num_proposals).permute(0, 2, 1).reshape(-1, num_proposals * num_classes)
        ranked = torch.where(kept, dense_scores.reshape(-1, num_proposals * num_classes), -1.0)
        scores, top = ranked.topk(self.detections_per_image, dim=1)  # (B, D)
        num_detections = kept.sum(dim=1).clamp(max=self.detections_per_image)
        is_detection = torch.cumsum(torch.ones_like(scores), dim=1) <= num_detections[:, None]
        boxes = torch.gather(dense_boxes.reshape(-1, num_proposals * num_classes, 4), 1, top[:, :, None].expand(-1, -1, 4))
        labels = torch.remainder(top, num_classes) + 1
        return (
            torch.where(is_detection[:, :, None], boxes, 0.0),
            torch.where(is_detection, scores, 0.0),
            torch.where(is_detection, labels, 0),
            num_detections,
        )


def roi_align_by_level(
    pooler: MultiLevelRoIAlign, features: list[torch.Tensor], rois: torch.Tensor, image_index: torch.Tensor, *rows
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """``pooler``'s multi-level RoIAlign as one ``RoiAlign`` per level on that level's RoIs.

    ``features``: ``[P2, ...]``; ``rois [R, 4]`` of images ``image_index [R]``; ``rows``: more
    ``[R, ...]`` tensors that go with the RoIs. Returns ``pooled [R, C, S, S]`` with the rows
    grouped by level (P2's RoIs first, each level in the given order) and ``(rois, image_index,
    *rows)`` in that order. The eager pooler writes each level's result back into RoI order
    (boolean-mask assignment, which does not export); what follows it here is per RoI, so the
    order is carried along instead of restored.
    """
    level = pooler.levels(rois)
    order = torch.cat([(level == index).nonzero()[:, 0] for index in range(POOLED_LEVELS)])
    rois, image_index, level = rois[order], image_index[order], level[order]
    indexed = torch.cat([image_index[:, None].to(rois.dtype), rois], dim=1)
    pooled = []
    for index in range(POOLED_LEVELS):
        chosen = (level == index).nonzero()[:, 0]
        pooled.append(roi_align(features[index], indexed[chosen], pooler.output_size,
                                1.0 / FPN_STRIDES[index], pooler.sampling_ratio))  # fmt: skip
    return torch.cat(pooled), (rois, image_index, *(row[order] for row in rows))
