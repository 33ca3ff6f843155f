"""A detector scored on a dataset of some of its classes: detections renumbered by class name,
targets mapped back, class lists that do not match named."""

import pytest
import torch
from torch import nn

from frcnn.evaluation.class_subset import ClassSubset, check_classes, model_for_dataset

MODEL_CLASSES = ["cat", "N/A", "dog", "N/A", "bird"]


class FixedDetector(nn.Module):
    """Detects one box of every model label 1..5 (score 0.1 * label); returns the targets it got."""

    def forward(self, images, image_sizes, targets=None):
        labels = torch.arange(1, 6)
        detections = [{"boxes": torch.zeros(5, 4), "scores": labels * 0.1, "labels": labels}]
        return detections if targets is None else (detections, {"labels_seen": targets[0]["labels"]})


def test_detections_of_the_datasets_classes_are_kept_and_renumbered_by_name():
    subset = model_for_dataset(FixedDetector(), MODEL_CLASSES, ["bird", "cat"])
    assert isinstance(subset, ClassSubset)
    (detections,) = subset(torch.zeros(1, 3, 8, 8), [(8, 8)])
    assert detections["labels"].tolist() == [2, 1]  # model labels 1 (cat) and 5 (bird), in the model's order
    assert detections["scores"].tolist() == pytest.approx([0.1, 0.5])
    _, seen = subset(torch.zeros(1, 3, 8, 8), [(8, 8)], [{"labels": torch.tensor([1, 2, 2])}])
    assert seen["labels_seen"].tolist() == [5, 1, 1]  # dataset labels back in the model's


def test_the_same_classes_leave_the_model_as_is_and_others_are_named():
    model = FixedDetector()
    assert model_for_dataset(model, ["a", "b"], ("a", "b")) is model
    with pytest.raises(ValueError, match=r"not exactly once among the model's: \['fish', 'N/A'\]"):
        model_for_dataset(model, MODEL_CLASSES, ["cat", "fish", "N/A"])
    check_classes(["a", "b"], ("a", "b"))
    with pytest.raises(ValueError, match=r"the model's classes \['a', 'b'\] differ from the dataset's \['a'\]"):
        check_classes(["a", "b"], ["a"])
