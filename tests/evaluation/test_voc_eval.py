"""VOC AP: hand-computed cases and equality with a loop transcription of the devkit."""

import numpy as np
import pytest

from frcnn.evaluation.voc_eval import Detections, GroundTruth, voc_ap, voc_metrics, voc_pr_curves


def reference_voc_ap(rec, prec, use_07_metric):
    """py-faster-rcnn's voc_ap, loop for loop."""
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            p = 0 if np.sum(rec >= t) == 0 else np.max(prec[rec >= t])
            ap = ap + p / 11.0
        return ap
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = np.maximum(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])


def reference_voc_eval(class_recs, image_ids, confidence, boxes, use_07_metric, ovthresh=0.5):
    """py-faster-rcnn's voc_eval on devkit (1-based inclusive) boxes, one class.

    class_recs: {image: {"bbox": [n, 4], "difficult": [n] bool}}. The overlap test is the
    official VOCevaldet.m's ``ovmax >= minoverlap`` (py-faster-rcnn writes ``>``), and the
    ranking is stable like MATLAB's sort.
    """
    npos = sum(int((~rec["difficult"]).sum()) for rec in class_recs.values())
    detected = {image: np.zeros(len(rec["bbox"]), dtype=bool) for image, rec in class_recs.items()}
    sorted_ind = np.argsort(-confidence, kind="stable")
    BB = boxes[sorted_ind, :]
    image_ids = [image_ids[x] for x in sorted_ind]
    nd = len(image_ids)
    tp = np.zeros(nd)
    fp = np.zeros(nd)
    for d in range(nd):
        R = class_recs.get(image_ids[d], {"bbox": np.zeros((0, 4)), "difficult": np.zeros(0, dtype=bool)})
        bb = BB[d, :].astype(float)
        ovmax = -np.inf
        BBGT = R["bbox"].astype(float)
        if BBGT.size > 0:
            ixmin = np.maximum(BBGT[:, 0], bb[0])
            iymin = np.maximum(BBGT[:, 1], bb[1])
            ixmax = np.minimum(BBGT[:, 2], bb[2])
            iymax = np.minimum(BBGT[:, 3], bb[3])
            iw = np.maximum(ixmax - ixmin + 1.0, 0.0)
            ih = np.maximum(iymax - iymin + 1.0, 0.0)
            inters = iw * ih
            uni = (
                (bb[2] - bb[0] + 1.0) * (bb[3] - bb[1] + 1.0)
                + (BBGT[:, 2] - BBGT[:, 0] + 1.0) * (BBGT[:, 3] - BBGT[:, 1] + 1.0)
                - inters
            )
            overlaps = inters / uni
            ovmax = np.max(overlaps)
            jmax = np.argmax(overlaps)
        if ovmax >= ovthresh:
            if not R["difficult"][jmax]:
                if not detected[image_ids[d]][jmax]:
                    tp[d] = 1.0
                    detected[image_ids[d]][jmax] = True
                else:
                    fp[d] = 1.0
        else:
            fp[d] = 1.0
    fp = np.cumsum(fp)
    tp = np.cumsum(tp)
    rec = tp / float(npos)
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return reference_voc_ap(rec, prec, use_07_metric)


def _arrays(image_index, labels, boxes, scores=None, ignore=None):
    image_index = np.asarray(image_index, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if scores is not None:
        return Detections(image_index, labels, np.asarray(scores, dtype=np.float64), boxes)
    return GroundTruth(image_index, labels, boxes, np.asarray(ignore, dtype=bool))


def test_hand_computed_difficult_duplicate_and_miss():
    # image 0: A, B (difficult), C (missed); image 1: D
    gts = _arrays(
        [0, 0, 0, 1],
        [1, 1, 1, 1],
        [[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50], [0, 0, 20, 20]],
        ignore=[False, True, False, False],
    )
    dets = _arrays(
        [0, 0, 0, 1, 1],
        [1, 1, 1, 1, 1],
        [[0, 0, 10, 10], [0, 0, 10, 9], [20, 20, 30, 30], [0, 0, 20, 20], [50, 50, 60, 60]],
        scores=[0.9, 0.8, 0.7, 0.6, 0.5],  # TP, duplicate FP, difficult (ignored), TP, FP
    )
    (curve,) = voc_pr_curves(dets, gts, num_classes=1)
    assert curve.num_positives == 3
    assert curve.tp.tolist() == [True, False, True, False]
    np.testing.assert_allclose(curve.precision, [1, 1 / 2, 2 / 3, 1 / 2])
    np.testing.assert_allclose(curve.recall, [1 / 3, 1 / 3, 2 / 3, 2 / 3])
    # area: 1/3 * 1 + 1/3 * 2/3; 11-point: t = 0..0.3 -> 1, t = 0.4..0.6 -> 2/3, t >= 0.7 -> 0
    metrics = voc_metrics([curve], ["a"])
    assert metrics["voc"]["AP"]["a"] == pytest.approx(5 / 9)
    assert metrics["voc07"]["AP"]["a"] == pytest.approx(6 / 11)
    assert metrics["voc"]["mAP"] == pytest.approx(5 / 9)


def test_iou_exactly_at_threshold_is_a_match():
    # devkit boxes (1,1,10,10) and (1,1,10,5): 50 / 100 inclusive pixels
    gts = _arrays([0], [1], [[0, 0, 10, 10]], ignore=[False])
    dets = _arrays([0], [1], [[0, 0, 10, 5]], scores=[0.5])
    (curve,) = voc_pr_curves(dets, gts, num_classes=1)
    assert curve.tp.tolist() == [True]


def test_class_without_ground_truth_is_undefined_and_left_out_of_the_mean():
    gts = _arrays([0], [1], [[0, 0, 10, 10]], ignore=[False])
    dets = _arrays([0, 0], [1, 2], [[0, 0, 10, 10], [5, 5, 9, 9]], scores=[0.9, 0.8])
    metrics = voc_metrics(voc_pr_curves(dets, gts, num_classes=2), ["a", "b"])
    assert metrics["voc"]["AP"] == {"a": 1.0, "b": -1.0}
    assert metrics["voc"]["mAP"] == 1.0


def test_voc_ap_without_detections_is_zero():
    assert voc_ap(np.zeros(0), np.zeros(0), use_07_metric=True) == 0.0
    assert voc_ap(np.zeros(0), np.zeros(0), use_07_metric=False) == 0.0


def _random_split(rng, num_images, num_classes):
    """XML-style integer gt boxes with difficult flags, and noisy detections around them."""
    gt_image, gt_label, gt_xml, gt_difficult = [], [], [], []
    for image in range(num_images):
        for _ in range(rng.integers(0, 6)):
            x1, y1 = rng.integers(1, 200, size=2)
            w, h = rng.integers(5, 120, size=2)
            gt_image.append(image)
            gt_label.append(rng.integers(1, num_classes + 1))
            gt_xml.append([x1, y1, x1 + w, y1 + h])
            gt_difficult.append(rng.random() < 0.15)
    gt_xml = np.asarray(gt_xml, dtype=np.float64)
    gts = _arrays(gt_image, gt_label, gt_xml - [1, 1, 0, 0], ignore=gt_difficult)

    # jittered copies of gts (several per object: duplicates), plus background boxes
    copies = rng.integers(0, len(gt_image), size=4 * len(gt_image))
    jitter = rng.normal(0, 6, size=(len(copies), 4))
    near = gts.boxes[copies] + jitter
    num_random = 3 * num_images
    xy = rng.uniform(0, 250, size=(num_random, 2))
    far = np.concatenate([xy, xy + rng.uniform(4, 100, size=(num_random, 2))], axis=1)
    det_boxes = np.concatenate([near, far])
    det_boxes[:, 2:] = np.maximum(det_boxes[:, 2:], det_boxes[:, :2] + 1)
    labels = np.concatenate([gts.labels[copies], rng.integers(1, num_classes + 1, size=num_random)])
    # some copies get a wrong class
    wrong = rng.random(len(copies)) < 0.1
    labels[: len(copies)][wrong] = rng.integers(1, num_classes + 1, size=int(wrong.sum()))
    images = np.concatenate([gts.image_index[copies], rng.integers(0, num_images, size=num_random)])
    dets = _arrays(images, labels, det_boxes, scores=rng.random(len(labels)))
    return dets, gts, gt_xml


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_devkit_transcription_on_random_detections(seed):
    rng = np.random.default_rng(seed)
    num_images, num_classes = 40, 4
    dets, gts, gt_xml = _random_split(rng, num_images, num_classes)
    curves = voc_pr_curves(dets, gts, num_classes)
    metrics = voc_metrics(curves, [f"c{k}" for k in range(1, num_classes + 1)])
    for label in range(1, num_classes + 1):
        in_class = gts.labels == label
        class_recs = {
            image: {
                "bbox": gt_xml[in_class & (gts.image_index == image)],
                "difficult": gts.ignore[in_class & (gts.image_index == image)],
            }
            for image in range(num_images)
        }
        det_rows = dets.labels == label
        # detection results files hold devkit (1-based) boxes
        devkit_det = dets.boxes[det_rows] + [1, 1, 0, 0]
        image_ids = dets.image_index[det_rows].tolist()
        for key, use_07 in (("voc07", True), ("voc", False)):
            expected = reference_voc_eval(class_recs, image_ids, dets.scores[det_rows], devkit_det, use_07)
            assert metrics[key]["AP"][f"c{label}"] == pytest.approx(expected, abs=1e-12)
