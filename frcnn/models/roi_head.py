"""RoI head: proposal targets, box classification/regression over pooled RoIs, its losses, and
detections by the detection stage (:mod:`frcnn.models.postprocess`, the same code in eager
inference and the export); the C4 design's layer4 box head.

Shapes: B images, P proposals per image, G padded gt boxes, S sampled RoIs per image,
R RoIs in a flat batch, K object classes (labels 1..K; 0 is background). Boxes are
``(x1, y1, x2, y2)`` in input-image pixels.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from frcnn.models.box_coder import BoxCoder
from frcnn.models.matching import GroundTruth, pairwise_iou, subsample_labels
from frcnn.models.nms import NMS, non_max_suppression
from frcnn.models.poolers import RoIPooler
from frcnn.models.postprocess import Detections, postprocess_detections
from frcnn.models.proposals import Proposals

ROI_LOSSES = ("roi_cls", "roi_loc")  # the RoI head's loss terms: classification, box regression


@dataclass
class RoITargets:
    """Sampled RoIs of a batch: ``rois [B, S, 4]``, ``valid [B, S]`` (False where an image had
    fewer than S candidates), ``gt_labels [B, S]`` (0 background), ``gt_deltas [B, S, 4]``
    (encoded matched gt box, zero for background)."""

    rois: torch.Tensor
    valid: torch.Tensor
    gt_labels: torch.Tensor
    gt_deltas: torch.Tensor


@torch.no_grad()
def proposal_targets(
    proposals: Proposals,
    gt: GroundTruth,
    box_coder: BoxCoder,
    *,
    num_samples: int,
    positive_fraction: float,
    fg_iou_thresh: float,
    bg_iou_thresh_hi: float,
    bg_iou_thresh_lo: float,
) -> RoITargets:
    """Append the gt boxes to the proposals, label them by IoU and sample ``num_samples`` per image.

    Foreground: best IoU >= ``fg_iou_thresh`` (labelled with that gt's class); background: best
    IoU in ``[bg_iou_thresh_lo, bg_iou_thresh_hi)``. At most ``positive_fraction`` of the samples
    are foreground. An image without gt boxes has IoU 0 everywhere: all its RoIs are background.
    """
    boxes = torch.cat([proposals.boxes, gt.boxes], dim=1)  # (B, P+G, 4)
    valid = torch.cat([proposals.valid, gt.valid], dim=1)
    iou = pairwise_iou(boxes, gt.boxes).masked_fill(~gt.valid[:, None, :], 0.0)  # (B, P+G, G)
    max_iou, matched = iou.max(dim=2)
    foreground = valid & (max_iou >= fg_iou_thresh)
    background = valid & (max_iou < bg_iou_thresh_hi) & (max_iou >= bg_iou_thresh_lo)
    foreground, background = subsample_labels(foreground, background, num_samples, positive_fraction)
    # Gather exactly S rows per image, sampled ones first (fixed shapes, no device sync).
    priority = foreground.float() * 2 + background.float()
    priority, picked = priority.topk(min(num_samples, boxes.shape[1]), dim=1)  # (B, S)
    rois = torch.gather(boxes, 1, picked[:, :, None].expand(-1, -1, 4))
    matched = torch.gather(matched, 1, picked)
    is_foreground = priority == 2
    gt_labels = torch.where(is_foreground, torch.gather(gt.labels, 1, matched), 0)
    gt_boxes = torch.gather(gt.boxes, 1, matched[:, :, None].expand(-1, -1, 4))
    gt_deltas = torch.where(is_foreground[:, :, None], box_coder.encode(rois, gt_boxes), 0.0)
    return RoITargets(rois, priority > 0, gt_labels, gt_deltas)


def roi_losses(
    pred_logits: torch.Tensor,
    pred_deltas: torch.Tensor,
    gt_labels: torch.Tensor,
    gt_deltas: torch.Tensor,
    valid: torch.Tensor,
    sigma: float,
) -> dict[str, torch.Tensor]:
    """Cross-entropy over valid RoIs and smooth-L1 (``beta = 1 / sigma^2``) on the gt class's
    deltas of foreground RoIs, both normalised by the number of valid RoIs.

    ``pred_logits [R, K+1]``, ``pred_deltas [R, K+1, 4]``, ``gt_labels [R]``, ``gt_deltas [R, 4]``,
    ``valid [R]``.
    """
    normaliser = valid.sum().clamp(min=1)
    cls = F.cross_entropy(pred_logits.float(), gt_labels, reduction="none")
    pred_deltas = torch.gather(pred_deltas.float(), 1, gt_labels[:, None, None].expand(-1, 1, 4))[:, 0]
    loc = F.smooth_l1_loss(pred_deltas, gt_deltas, beta=1.0 / sigma**2, reduction="none").sum(dim=1)
    cls_name, loc_name = ROI_LOSSES
    return {
        cls_name: torch.where(valid, cls, 0.0).sum() / normaliser,
        loc_name: torch.where(valid & (gt_labels > 0), loc, 0.0).sum() / normaliser,
    }


class Res5BoxHead(nn.Module):
    """The C4 box head: ResNet layer4 (stride 2) + average pooling, ``[R, C4, S, S]`` -> ``[R, C5]``."""

    def __init__(self, layer4: nn.Module, out_channels: int):
        super().__init__()
        self.layer4 = layer4
        self.out_channels = out_channels

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.layer4(pooled).mean(dim=(2, 3))


class RoIHead(nn.Module):
    """Pools RoIs from the backbone's features (``box_pooler``), turns them into one vector
    each (``box_head``), predicts class scores and class-specific deltas; losses in training,
    detections in eval. C4: :class:`~frcnn.models.poolers.RoIPooler` + :class:`Res5BoxHead`; FPN:
    :class:`~frcnn.models.poolers.MultiLevelRoIAlign` + two fully connected layers, or convs and one
    (:mod:`frcnn.models.fpn`). ``nms`` is the detection stage's NMS (:mod:`frcnn.models.nms`;
    the export swaps in the ONNX operator's). ``sampled_rows_only``: in training the box head
    runs on the sampled RoIs alone (a host sync), not on every row of the fixed-shape ``[B * S]``
    batch, for a box head whose BatchNorm would count the padding rows in its statistics."""

    def __init__(
        self,
        *,
        box_pooler: nn.Module,
        box_head: nn.Module,
        num_classes: int,
        box_coder: BoxCoder,
        batch_size_per_image: int,
        positive_fraction: float,
        fg_iou_thresh: float,
        bg_iou_thresh_hi: float,
        bg_iou_thresh_lo: float,
        loc_sigma: float,
        score_thresh: float,
        nms_thresh: float,
        detections_per_image: int,
        sampled_rows_only: bool = False,
        nms: NMS = non_max_suppression,
    ):
        super().__init__()
        self.box_pooler = box_pooler
        self.box_head = box_head
        self.score = nn.Linear(box_head.out_channels, num_classes + 1)
        self.cls_loc = nn.Linear(box_head.out_channels, (num_classes + 1) * 4)
        nn.init.normal_(self.score.weight, std=0.01)
        nn.init.normal_(self.cls_loc.weight, std=0.001)
        nn.init.zeros_(self.score.bias)
        nn.init.zeros_(self.cls_loc.bias)
        self.box_coder = box_coder
        self.sampling = {
            "num_samples": batch_size_per_image,
            "positive_fraction": positive_fraction,
            "fg_iou_thresh": fg_iou_thresh,
            "bg_iou_thresh_hi": bg_iou_thresh_hi,
            "bg_iou_thresh_lo": bg_iou_thresh_lo,
        }
        self.loc_sigma = loc_sigma
        self.inference = {
            "score_thresh": score_thresh,
            "nms_thresh": nms_thresh,
            "detections_per_image": detections_per_image,
        }
        self.sampled_rows_only = sampled_rows_only
        self.nms = nms

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Checkpoints of the C4 model written before the box head was a part of its own hold
        # layer4 as "res5": they load unchanged.
        old = prefix + "res5."
        for key in [k for k in state_dict if k.startswith(old)]:
            state_dict[prefix + "box_head.layer4." + key[len(old) :]] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def predict(
        self, features: list[torch.Tensor], rois: torch.Tensor, image_index: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``pred_logits [R, K+1]`` and ``pred_deltas [R, K+1, 4]`` for ``rois [R, 4]``."""
        hidden = self.box_head(self.box_pooler(features, rois, image_index))  # (R, D)
        # (R, (K+1)*4) -> (R, K+1, 4); R stays a dynamic size when the export traces this
        return self.score(hidden), self.cls_loc(hidden).reshape(-1, self.score.out_features, 4)

    def detect(self, features: list[torch.Tensor], proposals: Proposals, image_sizes: torch.Tensor) -> Detections:
        """Padded detections of ``proposals`` (:mod:`frcnn.models.postprocess`); the box head runs
        on the R valid proposals only (compiled: on every slot, the padding masked, so that the
        compiler sees fixed shapes)."""
        if torch.compiler.is_compiling():
            image_index, slot = every_slot(proposals.valid)
        else:
            image_index, slot = proposals.valid.nonzero(as_tuple=True)
        pred_logits, pred_deltas = self.predict(features, proposals.boxes[image_index, slot], image_index)
        return self._postprocess(pred_logits, pred_deltas, proposals, image_index, slot, image_sizes)

    def _postprocess(self, pred_logits, pred_deltas, proposals, image_index, slot, image_sizes) -> Detections:
        """The detection stage with this head's box coder, settings and NMS."""
        return postprocess_detections(
            pred_logits, pred_deltas, proposals, image_index, slot, image_sizes, self.box_coder,
            nms=self.nms, **self.inference,
        )  # fmt: skip

    def forward(
        self,
        features: list[torch.Tensor],
        proposals: Proposals,
        image_sizes: torch.Tensor,
        gt: GroundTruth | None = None,
    ) -> dict[str, torch.Tensor] | list[dict[str, torch.Tensor]] | tuple[list[dict], dict[str, torch.Tensor]]:
        """Training (``gt`` given): ``{"roi_cls", "roi_loc"}``. Eval: per-image detections; eval
        with ``gt``: ``(detections, {"roi_cls", "roi_loc"})`` (see :meth:`detect_with_losses`)."""
        batch = features[0].shape[0]
        if gt is not None and not self.training:
            return self.detect_with_losses(features, proposals, image_sizes, gt)
        if gt is not None:
            targets = proposal_targets(proposals, gt, self.box_coder, **self.sampling)
            samples = targets.rois.shape[1]
            image_index = torch.arange(batch, device=features[0].device).repeat_interleave(samples)
            rois, gt_labels = targets.rois.reshape(-1, 4), targets.gt_labels.reshape(-1)
            gt_deltas, valid = targets.gt_deltas.reshape(-1, 4), targets.valid.reshape(-1)
            if self.sampled_rows_only:
                keep = valid.nonzero()[:, 0]  # (B*S,) -> (V,) the sampled rows
                rois, image_index, gt_labels, gt_deltas, valid = (
                    t[keep] for t in (rois, image_index, gt_labels, gt_deltas, valid)
                )
            pred_logits, pred_deltas = self.predict(features, rois, image_index)
            return roi_losses(pred_logits, pred_deltas, gt_labels, gt_deltas, valid, self.loc_sigma)
        return self.detect(features, proposals, image_sizes).per_image()

    def detect_with_losses(
        self, features: list[torch.Tensor], proposals: Proposals, image_sizes: torch.Tensor, gt: GroundTruth
    ) -> tuple[list[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
        """Detections and the training losses from one head pass (validation loss).

        The RoIs are sampled from these (test-time) proposals exactly as in training. A sampled
        RoI is a copy of a proposal or of a gt box, so the head runs once over the valid
        proposals followed by the valid gt boxes, and each sampled RoI takes the predictions of
        its copy; detections come from the proposal rows alone, as without ``gt``.
        """
        targets = proposal_targets(proposals, gt, self.box_coder, **self.sampling)
        image_index, slot = proposals.valid.nonzero(as_tuple=True)
        gt_image_index, gt_slot = gt.valid.nonzero(as_tuple=True)
        num_proposals = len(image_index)
        rois = torch.cat([proposals.boxes[image_index, slot], gt.boxes[gt_image_index, gt_slot]])
        pred_logits, pred_deltas = self.predict(features, rois, torch.cat([image_index, gt_image_index]))
        detections = self._postprocess(
            pred_logits[:num_proposals], pred_deltas[:num_proposals], proposals, image_index, slot, image_sizes
        ).per_image()
        rows = copy_rows(targets.rois, proposals, gt)[targets.valid]  # (V,) rows of the valid samples
        losses = roi_losses(
            pred_logits[rows],
            pred_deltas[rows],
            targets.gt_labels[targets.valid],
            targets.gt_deltas[targets.valid],
            torch.ones_like(rows, dtype=torch.bool),
            self.loc_sigma,
        )
        return detections, losses


def every_slot(valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(image_index, slot)``, each ``[B * P]``, of every slot of ``valid [B, P]``, image-major
    (as ``valid.nonzero`` orders the valid ones)."""
    batch, slots = valid.shape
    image_index = torch.arange(batch, device=valid.device).repeat_interleave(slots)
    return image_index, torch.arange(slots, device=valid.device).repeat(batch)


def copy_rows(rois: torch.Tensor, proposals: Proposals, gt: GroundTruth) -> torch.Tensor:
    """For sampled ``rois [B, S, 4]``, the row of an identical box in the flat list of the valid
    proposals (image-major) followed by the valid gt boxes: ``[B, S]`` int64 (meaningless, but
    in range, for rows that are not a copy of any valid box, i.e. padding)."""
    boxes = torch.cat([proposals.boxes, gt.boxes], dim=1)  # (B, P+G, 4)
    valid = torch.cat([proposals.valid, gt.valid], dim=1)
    # Flat row of every valid box: proposals first, then the gt boxes after all proposals.
    proposal_row = proposals.valid.flatten().cumsum(0).reshape(proposals.valid.shape) - 1
    gt_row = gt.valid.flatten().cumsum(0).reshape(gt.valid.shape) - 1 + proposals.valid.sum()
    row = torch.cat([proposal_row, gt_row], dim=1).clamp(min=0)  # (B, P+G)
    same = (rois[:, :, None, :] == boxes[:, None, :, :]).all(dim=3) & valid[:, None, :]  # (B, S, P+G)
    return torch.gather(row, 1, same.int().argmax(dim=2))  # the first identical box


def build_roi_head(
    cfg, box_pooler: nn.Module, box_head: nn.Module, num_classes: int, sampled_rows_only: bool = False
) -> RoIHead:
    """RoI head from the ``model.roi_head`` config node; ``num_classes`` excludes background."""
    return RoIHead(
        box_pooler=box_pooler,
        box_head=box_head,
        num_classes=num_classes,
        box_coder=BoxCoder(cfg.bbox_std),
        batch_size_per_image=cfg.batch_size_per_image,
        positive_fraction=cfg.positive_fraction,
        fg_iou_thresh=cfg.fg_iou_thresh,
        bg_iou_thresh_hi=cfg.bg_iou_thresh_hi,
        bg_iou_thresh_lo=cfg.bg_iou_thresh_lo,
        loc_sigma=cfg.loc_sigma,
        score_thresh=cfg.score_thresh,
        nms_thresh=cfg.nms_thresh,
        detections_per_image=cfg.detections_per_image,
        sampled_rows_only=sampled_rows_only,
    )


def build_c4_box_parts(cfg, layer4: nn.Module, layer4_channels: int, stride: int) -> tuple[RoIPooler, Res5BoxHead]:
    """The C4 design's pooler (``roi_head.pooler``, ``roi_size``, ...) and layer4 box head."""
    pooler = RoIPooler(cfg.pooler, cfg.roi_size, 1.0 / stride, cfg.sampling_ratio, cfg.aligned)
    return pooler, Res5BoxHead(layer4, layer4_channels)
