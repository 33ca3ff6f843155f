"""Region Proposal Network: head, anchor targets and losses; its proposal layer is
:mod:`frcnn.models.proposals`, the same code in training, inference and the export.

Shapes: B images, A anchors per feature cell, L pyramid levels (1 for C4), N_l = H_l * W_l * A
anchors of level l per image and N = sum_l N_l, G padded ground-truth boxes per image, P
proposals per image. Boxes are ``(x1, y1, x2, y2)`` in input-image pixels; ``image_sizes [B, 2]``
holds each image's unpadded ``(h, w)``.
"""

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops.misc import Conv2dNormActivation

from frcnn.models.anchors import AnchorGenerator
from frcnn.models.box_coder import BoxCoder
from frcnn.models.config import LevelSizes
from frcnn.models.matching import GroundTruth, pairwise_iou, subsample_labels
from frcnn.models.nms import NMS, non_max_suppression
from frcnn.models.proposals import Proposals, propose

RPN_LOSSES = ("rpn_cls", "rpn_loc")  # the RPN's loss terms: objectness, box regression


class RPNHead(nn.Module):
    """``conv_depth`` 3x3 convs + ReLU, then 1x1 convs to A objectness logits and 4A deltas per
    cell; one head shared by every pyramid level.

    One conv is ``conv`` itself (the seed's and ``fasterrcnn_resnet50_fpn``'s, key ``conv.weight``);
    several are torchvision's ``conv_depth=2`` layout, ``conv.<i>.0.weight``, with a ReLU after
    each but the last: the last one's is applied in :meth:`forward` for any depth, so
    ``relu(head.conv(x))`` is the hidden map either way.
    """

    def __init__(self, in_channels: int, conv_channels: int, num_anchors: int, conv_depth: int = 1):
        super().__init__()
        if conv_depth < 1:
            raise ValueError(f"rpn.conv_depth must be >= 1, got {conv_depth}")
        if conv_depth == 1:
            self.conv = nn.Conv2d(in_channels, conv_channels, 3, padding=1)
        else:
            self.conv = nn.Sequential(*[
                Conv2dNormActivation(in_channels if i == 0 else conv_channels, conv_channels, 3, norm_layer=None,
                                     activation_layer=nn.ReLU if i < conv_depth - 1 else None)
                for i in range(conv_depth)
            ])  # fmt: skip
        self.objectness = nn.Conv2d(conv_channels, num_anchors, 1)
        self.deltas = nn.Conv2d(conv_channels, 4 * num_anchors, 1)
        for layer in self.modules():
            if isinstance(layer, nn.Conv2d):
                nn.init.normal_(layer.weight, std=0.01)
                nn.init.zeros_(layer.bias)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``features [B, C, H, W]`` -> ``pred_logits [B, N]``, ``pred_deltas [B, N, 4]``."""
        batch = features.shape[0]
        hidden = F.relu(self.conv(features))
        # (B, A, H, W) -> (B, H, W, A) -> (B, H*W*A): the anchor grid's row order
        logits = self.objectness(hidden).permute(0, 2, 3, 1).reshape(batch, -1)
        # (B, A*4, H, W) -> (B, H, W, A*4) -> (B, H*W*A, 4)
        deltas = self.deltas(hidden).permute(0, 2, 3, 1).reshape(batch, -1, 4)
        return logits, deltas


@torch.no_grad()
def anchor_targets(
    anchors: torch.Tensor,
    gt: GroundTruth,
    image_sizes: torch.Tensor,
    *,
    pos_iou_thresh: float,
    neg_iou_thresh: float,
    num_samples: int,
    positive_fraction: float,
    boundary_thresh: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Label and sample anchors ``[N, 4]`` against the padded ground truth.

    With ``boundary_thresh >= 0``, anchors reaching more than ``boundary_thresh`` pixels beyond
    an image's border are ignored (the seed's rule, with 0); with -1 every anchor takes part
    (torchvision's and detectron2's default). Among the kept anchors, an anchor is positive
    when its best IoU is >= ``pos_iou_thresh`` or it is (one of) the best anchor(s) of some gt
    box (IoU > 0); negative when its best IoU is < ``neg_iou_thresh`` and it is not positive.
    ``num_samples`` are then drawn per image, at most ``positive_fraction`` of them positive.

    Returns ``gt_labels [B, N]`` int64 (1 positive, 0 negative, -1 not sampled / ignored) and
    ``gt_boxes [B, N, 4]``, the box each anchor is matched with (meaningful for positives).
    """
    heights, widths = image_sizes[:, 0:1], image_sizes[:, 1:2]
    if boundary_thresh >= 0:
        t = boundary_thresh
        inside = (
            (anchors[None, :, 0] >= -t)
            & (anchors[None, :, 1] >= -t)
            & (anchors[None, :, 2] <= widths + t)
            & (anchors[None, :, 3] <= heights + t)
        )  # (B, N)
    else:
        inside = torch.ones(len(image_sizes), len(anchors), dtype=torch.bool, device=anchors.device)
    iou = pairwise_iou(anchors[None], gt.boxes)  # (1, N, 4) x (B, G, 4) -> (B, N, G)
    iou = iou.masked_fill(~gt.valid[:, None, :], -1.0).masked_fill(~inside[:, :, None], -1.0)
    max_iou, matched = iou.max(dim=2)  # (B, N)
    best_per_gt = iou.max(dim=1, keepdim=True).values  # (B, 1, G)
    is_best = ((iou == best_per_gt) & (best_per_gt > 0)).any(dim=2)
    positive = inside & (is_best | (max_iou >= pos_iou_thresh))
    negative = inside & ~positive & (max_iou < neg_iou_thresh)
    positive, negative = subsample_labels(positive, negative, num_samples, positive_fraction)
    gt_labels = torch.where(positive, 1, torch.where(negative, 0, -1))
    gt_boxes = torch.gather(gt.boxes, 1, matched[:, :, None].expand(-1, -1, 4))
    return gt_labels, gt_boxes


def rpn_losses(
    pred_logits: torch.Tensor,
    pred_deltas: torch.Tensor,
    gt_labels: torch.Tensor,
    gt_deltas: torch.Tensor,
    sigma: float,
) -> dict[str, torch.Tensor]:
    """Objectness BCE over sampled anchors and smooth-L1 (``beta = 1 / sigma^2``) over positives,
    both normalised by the number of sampled anchors in the batch (0 box loss without positives).

    ``pred_logits [B, N]``, ``pred_deltas [B, N, 4]``, ``gt_labels [B, N]`` in {-1, 0, 1},
    ``gt_deltas [B, N, 4]`` (finite; zero where not positive).
    """
    sampled = gt_labels >= 0
    normaliser = sampled.sum().clamp(min=1)
    cls = F.binary_cross_entropy_with_logits(pred_logits.float(), gt_labels.clamp(min=0).float(), reduction="none")
    loc = F.smooth_l1_loss(pred_deltas.float(), gt_deltas, beta=1.0 / sigma**2, reduction="none").sum(dim=2)
    cls_name, loc_name = RPN_LOSSES
    return {
        cls_name: torch.where(sampled, cls, 0.0).sum() / normaliser,
        loc_name: torch.where(gt_labels == 1, loc, 0.0).sum() / normaliser,
    }


class RegionProposalNetwork(nn.Module):
    """RPN over one feature map (C4) or a pyramid (FPN, one anchor generator per level, the
    head shared): proposals always, losses in training. ``nms`` is the proposal layer's NMS
    (:mod:`frcnn.models.nms`; the export swaps in the ONNX operator's)."""

    def __init__(
        self,
        *,
        head: RPNHead,
        anchor_generators: list[AnchorGenerator],
        box_coder: BoxCoder,
        pre_nms_top_n: dict[str, int],
        post_nms_top_n: dict[str, int],
        nms_thresh: float,
        min_size: float,
        batch_size_per_image: int,
        positive_fraction: float,
        pos_iou_thresh: float,
        neg_iou_thresh: float,
        loc_sigma: float,
        boundary_thresh: float = 0.0,
        min_size_after_top_n: bool = False,
        score_thresh: float = 0.0,
        stride_from_size: bool = False,
        nms: NMS = non_max_suppression,
    ):
        super().__init__()
        self.head = head
        self.anchor_generators = nn.ModuleList(anchor_generators)
        self.box_coder = box_coder
        self.pre_nms_top_n = pre_nms_top_n  # {"train": n, "test": n}
        self.post_nms_top_n = post_nms_top_n
        self.nms_thresh = nms_thresh
        self.min_size = min_size
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction
        self.pos_iou_thresh = pos_iou_thresh
        self.neg_iou_thresh = neg_iou_thresh
        self.loc_sigma = loc_sigma
        self.boundary_thresh = boundary_thresh
        self.min_size_after_top_n = min_size_after_top_n
        self.score_thresh = score_thresh
        self.stride_from_size = stride_from_size
        self.nms = nms

    def forward(
        self, features: list[torch.Tensor], image_sizes: torch.Tensor, gt: GroundTruth | None = None
    ) -> tuple[Proposals, dict[str, torch.Tensor]]:
        """``features``: one ``[B, C, H_l, W_l]`` map per level -> proposals, and
        ``{"rpn_cls", "rpn_loc"}`` when ``gt`` is given."""
        input_size = self.input_size(features)
        anchors = [g(f.shape[-2:], input_size) for g, f in zip(self.anchor_generators, features)]  # [N_l, 4] each
        pred_logits, pred_deltas = zip(*[self.head(f) for f in features])  # [B, N_l] and [B, N_l, 4] each
        mode = "train" if self.training else "test"
        proposals = propose(
            anchors,
            list(pred_logits),
            list(pred_deltas),
            image_sizes,
            self.box_coder,
            pre_nms_top_n=self.pre_nms_top_n[mode],
            post_nms_top_n=self.post_nms_top_n[mode],
            nms_thresh=self.nms_thresh,
            min_size=self.min_size,
            min_size_after_top_n=self.min_size_after_top_n,
            score_thresh=self.score_thresh,
            nms=self.nms,
        )
        if gt is None:
            return proposals, {}
        anchors = torch.cat(anchors)  # (N, 4), the levels one after another
        pred_logits, pred_deltas = torch.cat(pred_logits, dim=1), torch.cat(pred_deltas, dim=1)  # (B, N), (B, N, 4)
        gt_labels, gt_boxes = anchor_targets(
            anchors,
            gt,
            image_sizes,
            pos_iou_thresh=self.pos_iou_thresh,
            neg_iou_thresh=self.neg_iou_thresh,
            num_samples=self.batch_size_per_image,
            positive_fraction=self.positive_fraction,
            boundary_thresh=self.boundary_thresh,
        )
        with torch.no_grad():
            # Encoding a padded (zero) gt box gives inf; only positives' deltas are used.
            gt_deltas = torch.where((gt_labels == 1)[:, :, None], self.box_coder.encode(anchors[None], gt_boxes), 0.0)
        return proposals, rpn_losses(pred_logits, pred_deltas, gt_labels, gt_deltas, self.loc_sigma)

    def input_size(self, features: list[torch.Tensor]) -> tuple[int, int] | None:
        """The padded input's ``(H, W)`` where the anchor strides follow from it (``stride_from_size``),
        else None: the first level's size times its stride, which is torchvision's padded size when
        the batch is padded to a multiple of that stride (frcnn's and torchvision's batches are
        padded to a multiple of 32)."""
        if not self.stride_from_size:
            return None
        height, width = features[0].shape[-2:]
        stride = self.anchor_generators[0].stride
        return height * stride, width * stride


def build_rpn(cfg, anchors_cfg, in_channels: int, strides: tuple[int, ...] | None = None) -> RegionProposalNetwork:
    """RPN from the ``model.rpn`` and ``model.anchors`` config nodes over feature maps of
    ``strides`` (None: one map of ``anchors.stride``). Level ``l``'s anchors are ``2^l`` times
    the base size (``anchors.level_sizes: doubling``) or the base size at every level (``same``)."""
    doubling = anchors_cfg.level_sizes == LevelSizes.doubling
    anchor_generators = [
        AnchorGenerator(
            base_size=anchors_cfg.base_size * (2**level if doubling else 1),
            scales=list(anchors_cfg.scales),
            ratios=list(anchors_cfg.ratios),
            stride=stride,
            offset=anchors_cfg.offset,
            round_to_pixels=anchors_cfg.round,
        )
        for level, stride in enumerate(strides or (anchors_cfg.stride,))
    ]
    return RegionProposalNetwork(
        head=RPNHead(in_channels, cfg.conv_channels, anchor_generators[0].num_anchors, cfg.conv_depth),
        anchor_generators=anchor_generators,
        box_coder=BoxCoder(cfg.bbox_std),
        pre_nms_top_n={"train": cfg.pre_nms_top_n_train, "test": cfg.pre_nms_top_n_test},
        post_nms_top_n={"train": cfg.post_nms_top_n_train, "test": cfg.post_nms_top_n_test},
        nms_thresh=cfg.nms_thresh,
        min_size=cfg.min_size,
        batch_size_per_image=cfg.batch_size_per_image,
        positive_fraction=cfg.positive_fraction,
        pos_iou_thresh=cfg.pos_iou_thresh,
        neg_iou_thresh=cfg.neg_iou_thresh,
        loc_sigma=cfg.loc_sigma,
        boundary_thresh=cfg.boundary_thresh,
        min_size_after_top_n=cfg.min_size_after_top_n,
        score_thresh=cfg.score_thresh,
        stride_from_size=anchors_cfg.stride_from_size,
    )
