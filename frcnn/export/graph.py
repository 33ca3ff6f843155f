"""The detector's inference as one traceable graph with fixed-rank, padded outputs.

:class:`DetectorGraph` wraps a trained :class:`~frcnn.models.FasterRCNN` (a copy of it), C4 or
FPN, and runs the model's own eval-mode stages, :meth:`FasterRCNN.detect
<frcnn.models.faster_rcnn.FasterRCNN.detect>`: backbone -> the RPN's proposal layer
(:mod:`frcnn.models.proposals`) -> box features of the valid proposals -> the detection stage
(:mod:`frcnn.models.postprocess`). Those stages are written in the fixed-shape form that exports
with a dynamic batch size and image size, so the detections equal the eager model's. What is
ONNX's own is swapped in here: NMS as the ONNX ``NonMaxSuppression`` operator
(:mod:`frcnn.export.nms`), batch norms folded into the convolutions (:mod:`frcnn.export.fold`)
and, for a C4 RoIAlign head, layer4's first 1x1 convolutions run before the pooling
(:mod:`frcnn.export.hoist`).

Shapes: B images, K object classes, P proposals per image
(:func:`~frcnn.models.proposals.num_proposals` of the RPN's test settings), D detections per
image (:func:`~frcnn.models.postprocess.max_detections`). Boxes are ``(x1, y1, x2, y2)`` in
input-image pixels.

Outputs (the exported model's, in this order):

- ``boxes [B, D, 4]`` float32, ``scores [B, D]`` float32 (decreasing), ``labels [B, D]`` int64
  in 1..K; rows ``num_detections[b]`` and beyond of image b are padding (zeros, label 0);
- ``num_detections [B]`` int64.
"""

import copy

import torch
from torch import nn

from frcnn.export.fold import fold_batch_norms
from frcnn.export.hoist import HoistedRes5Head, can_hoist
from frcnn.export.nms import onnx_non_max_suppression
from frcnn.models import FasterRCNN
from frcnn.models.postprocess import max_detections
from frcnn.models.proposals import num_proposals

OUTPUT_NAMES = ("boxes", "scores", "labels", "num_detections")


class DetectorGraph(nn.Module):
    """Export-ready inference of a C4 or FPN :class:`FasterRCNN` (see the module docstring).

    ``forward(images [B, 3, H, W] float32 normalised and zero-padded, image_sizes [B, 2] int64
    unpadded (h, w))`` -> ``(boxes [B, D, 4], scores [B, D], labels [B, D], num_detections [B])``.
    The model is deep-copied, put in eval mode and its batch norms folded into the convolutions;
    ``hoist`` replaces the C4 pooler and box head by :class:`HoistedRes5Head` where
    :func:`can_hoist` allows. The RPN's test settings and the counts P and D are attributes
    (``pre_nms_top_n``, ``post_nms_top_n`` = P, ``rpn_nms_thresh``, ``detections_per_image`` = D).
    """

    def __init__(self, model: FasterRCNN, fold_norms: bool = True, hoist: bool = True):
        super().__init__()
        model = copy.deepcopy(model).eval()
        if fold_norms:
            fold_batch_norms(model)
        rpn, roi_head = model.rpn, model.roi_head
        rpn.nms = roi_head.nms = onnx_non_max_suppression
        if hoist and can_hoist(roi_head.box_pooler, roi_head.box_head):
            hoisted = HoistedRes5Head(roi_head.box_pooler, roi_head.box_head)
            roi_head.box_pooler, roi_head.box_head = hoisted, nn.Identity()
        self.model = model
        self.pre_nms_top_n = rpn.pre_nms_top_n["test"]
        self.post_nms_top_n = num_proposals(self.pre_nms_top_n, rpn.post_nms_top_n["test"], len(rpn.anchor_generators))
        self.rpn_nms_thresh = rpn.nms_thresh
        num_classes = roi_head.score.out_features - 1
        self.detections_per_image = max_detections(
            roi_head.inference["detections_per_image"], self.post_nms_top_n, num_classes
        )

    @property
    def hoisted(self) -> HoistedRes5Head | None:
        """The hoisted C4 head, or None where the model's own pooler and box head run."""
        pooler = self.model.roi_head.box_pooler
        return pooler if isinstance(pooler, HoistedRes5Head) else None

    def forward(self, images: torch.Tensor, image_sizes: torch.Tensor):
        detections = self.model.detect(images, image_sizes)
        return detections.boxes, detections.scores, detections.labels, detections.num_detections
