"""Test doubles of the DATA API for the evaluation tests: a dataset without images, batches, outputs."""

from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.distributed as dist

from frcnn.data.ground_truth import coco_ground_truth, ground_truth_arrays
from frcnn.evaluation.evaluator import DetectionEvaluator


class FakeDataset:
    """image_ids / class_names / category_ids / get_annotation(i) / ground_truth() / coco_gt(), as the DATA API.

    annotations: per image dict(height, width, boxes [N, 4] 0-based continuous, labels [N] 1..K,
    difficult [N], iscrowd [N]). ground_truth() and coco_gt() are built by the DATA conversion
    (:mod:`frcnn.data.ground_truth`), as a dataset's are.
    """

    def __init__(self, annotations, class_names, category_ids, image_ids):
        self.annotations = annotations
        self.class_names = class_names
        self.category_ids = category_ids
        self.image_ids = image_ids
        self._ground_truth = self._coco = None

    def __len__(self):
        return len(self.image_ids)

    def get_annotation(self, index):
        return dict(self.annotations[index], image_id=self.image_ids[index])

    def ground_truth(self):
        if self._ground_truth is None:
            self._ground_truth = ground_truth_arrays(self)
        return self._ground_truth

    def coco_dict(self):
        return self.coco_gt().dataset

    def coco_gt(self):
        if self._coco is None:
            images = [
                {"id": i, "height": a["height"], "width": a["width"]} for i, a in zip(self.image_ids, self.annotations)
            ]
            self._coco = coco_ground_truth(self.ground_truth(), images, self.category_ids, self.class_names)
        return self._coco


def make_fake_dataset(
    num_images=12, seed=0, image_ids=None, category_ids=(3, 7, 12), class_names=("cat", "dog", "bird")
):
    rng = np.random.default_rng(seed)
    annotations = []
    for _ in range(num_images):
        height, width = (int(v) for v in rng.integers(80, 200, size=2))
        count = int(rng.integers(0, 5))
        x1 = rng.uniform(0, width * 0.6, count)
        y1 = rng.uniform(0, height * 0.6, count)
        w = rng.uniform(8, width * 0.4, count)
        h = rng.uniform(8, height * 0.4, count)
        boxes = np.stack([x1, y1, np.minimum(x1 + w, width), np.minimum(y1 + h, height)], axis=1)
        annotations.append(
            {
                "height": height,
                "width": width,
                "boxes": torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                "labels": torch.as_tensor(rng.integers(1, len(class_names) + 1, count), dtype=torch.int64),
                "difficult": torch.as_tensor(rng.random(count) < 0.15),
                "iscrowd": torch.as_tensor(rng.random(count) < 0.1),
            }
        )
    # every class has at least one ordinary object
    annotations[0]["boxes"] = torch.cat(
        [annotations[0]["boxes"], torch.tensor([[2.0, 2.0, 40.0, 40.0]] * len(class_names))]
    )
    annotations[0]["labels"] = torch.cat([annotations[0]["labels"], torch.arange(1, len(class_names) + 1)])
    annotations[0]["difficult"] = torch.cat(
        [annotations[0]["difficult"], torch.zeros(len(class_names), dtype=torch.bool)]
    )
    annotations[0]["iscrowd"] = torch.cat([annotations[0]["iscrowd"], torch.zeros(len(class_names), dtype=torch.bool)])
    ids = list(image_ids) if image_ids is not None else [int(i) for i in 100 + 7 * np.arange(num_images)]
    return FakeDataset(annotations, list(class_names), list(category_ids), ids)


@dataclass
class FakeBatch:
    images: torch.Tensor
    image_sizes: list
    indices: list
    orig_sizes: list
    scales: torch.Tensor

    def to(self, device, non_blocking=False):
        return self


def batch_of(dataset, indices, scale=(1.0, 1.0)):
    sizes = [(dataset.annotations[i]["height"], dataset.annotations[i]["width"]) for i in indices]
    resized = [(round(h * scale[1]), round(w * scale[0])) for h, w in sizes]
    return FakeBatch(
        torch.zeros(len(indices), 3, 8, 8), resized, list(indices), sizes, torch.tensor([scale] * len(indices))
    )


def gt_detections(dataset, indices, scale=(1.0, 1.0), noise=0.0, seed=0):
    """Every object as a detection in resized coordinates, optionally with noisy boxes/scores."""
    rng = np.random.default_rng(seed)
    out = []
    for i in indices:
        ann = dataset.annotations[i]
        boxes = ann["boxes"] * torch.tensor([scale[0], scale[1], scale[0], scale[1]])
        boxes = boxes + torch.as_tensor(rng.normal(0, noise, boxes.shape), dtype=torch.float32)
        scores = torch.as_tensor(rng.uniform(0.5, 1.0, len(boxes)), dtype=torch.float32)
        out.append({"boxes": boxes, "scores": scores, "labels": ann["labels"].clone()})
    return out


def evaluate_on_rank(rank, world_size, init_file, result_file):
    """One rank of a gloo process group: evaluates its shard of the fake dataset, saves the result."""
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    dataset = make_fake_dataset()
    evaluator = DetectionEvaluator(dataset)
    indices = list(range(rank, len(dataset), world_size))  # the test loader's shard
    evaluator.process(
        batch_of(dataset, indices, (2.0, 0.5)), gt_detections(dataset, indices, (2.0, 0.5), noise=4.0, seed=0)
    )
    metrics = evaluator.evaluate()
    torch.save({"metrics": metrics, "predictions": len(evaluator.predictions())}, f"{result_file}.{rank}")
    dist.destroy_process_group()


@pytest.fixture
def fake_dataset():
    return make_fake_dataset()
