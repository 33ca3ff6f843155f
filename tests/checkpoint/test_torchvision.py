"""``checkpoint=torchvision:fasterrcnn_resnet50_fpn``: torchvision's COCO-trained detector used as
is (its 90 COCO labels, class names from the weights' metadata), also on a dataset holding some
of its classes. Offline: a randomly initialised detector's state dict is placed in the torch
cache under the weights' file name, as a download would leave it."""

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torchvision.models import resnet50
from torchvision.models.detection import FasterRCNN, FasterRCNN_ResNet50_FPN_Weights
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.ops.misc import FrozenBatchNorm2d

from frcnn.bench.reference import NoResizeTransform
from frcnn.checkpoint.io import load_checkpoint
from frcnn.checkpoint.restore import model_from_checkpoint
from frcnn.checkpoint.saved_config import saved_model_config
from frcnn.data.shapes import generate_shapes
from frcnn.evaluation.class_subset import ClassSubset, model_for_dataset
from tests.helpers.parity import assert_same_detections, unpadded
from tests.helpers.torch_cache import filled_torch_home

REPO = Path(__file__).resolve().parents[2]
WEIGHTS = FasterRCNN_ResNet50_FPN_Weights.COCO_V1
SOURCE = "torchvision:fasterrcnn_resnet50_fpn"


@pytest.fixture(scope="module")
def torch_home(tmp_path_factory):
    """A torch cache holding a random fasterrcnn_resnet50_fpn (frozen BatchNorm, 91 outputs, as
    COCO_V1) under COCO_V1's file name; the detector itself, for comparison."""
    torch.manual_seed(0)
    trunk = resnet50(weights=None, norm_layer=FrozenBatchNorm2d)
    for module in trunk.modules():  # non-trivial frozen statistics, as trained weights have
        if isinstance(module, FrozenBatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    reference = FasterRCNN(_resnet_fpn_extractor(trunk, 3), num_classes=91, box_score_thresh=0.0)
    with torch.no_grad():  # favour person, dog and chair (COCO ids 1, 18, 62), the classes of the script test
        reference.roi_heads.box_predictor.cls_score.bias[[1, 18, 62]] += 2.0
    reference.transform = NoResizeTransform()  # inputs come resized and normalised
    reference.eval()
    return filled_torch_home(
        tmp_path_factory.mktemp("torch_home"), reference.state_dict(), Path(WEIGHTS.url).name
    ), reference


@pytest.fixture
def cached(torch_home, monkeypatch):
    home, reference = torch_home
    monkeypatch.setenv("TORCH_HOME", str(home))
    return reference


def _model_cfg(checkpoint, **overrides):
    cfg = OmegaConf.structured(saved_model_config(checkpoint.config))
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value)
    return cfg


def test_checkpoint_holds_the_coco_layout_from_the_weights_metadata(cached):
    checkpoint = load_checkpoint(SOURCE)
    assert checkpoint.class_names == WEIGHTS.meta["categories"][1:]
    assert len(checkpoint.class_names) == 90 and checkpoint.category_ids == list(range(1, 91))
    assert checkpoint.class_names[0] == "person" and checkpoint.class_names[17] == "dog"  # COCO ids 1 and 18
    assert checkpoint.config["dataset"]["test_min_size"] == 800 and checkpoint.config["dataset"]["max_size"] == 1333
    assert checkpoint.config["model"]["architecture"] == "fpn"
    assert checkpoint.iteration == 0 and checkpoint.training is None  # weights only: evaluated, not resumed


def test_checkpoint_detects_as_torchvision_does(cached, two_images):
    images, sizes, _ = two_images
    checkpoint = load_checkpoint(SOURCE)
    model = model_from_checkpoint(checkpoint, _model_cfg(checkpoint, **{"roi_head.score_thresh": 0.0}))
    with torch.no_grad():
        ours = model(images, sizes)
        theirs = cached(unpadded(images, sizes))
    assert_same_detections(ours, theirs, min_count=50)
    assert any(d["labels"].max() > 80 for d in ours)  # COCO ids, not 80 contiguous labels


def test_a_dataset_of_some_of_its_classes_sees_those_classes_renumbered(cached, two_images):
    images, sizes, targets = two_images
    checkpoint = load_checkpoint(SOURCE)
    names = checkpoint.class_names
    model = model_from_checkpoint(checkpoint, _model_cfg(checkpoint, **{"roi_head.score_thresh": 0.0}))
    with torch.no_grad():
        theirs = cached(unpadded(images, sizes))
    # Two classes the detector does output, given in the reverse of the model's order.
    found = sorted({int(label) for d in theirs for label in d["labels"] if names[label - 1] != "N/A"})
    second, first = found[:2]  # dataset label 1 is the model's label `first`, 2 is `second`
    subset = model_for_dataset(model, names, [names[first - 1], names[second - 1]])
    assert isinstance(subset, ClassSubset)
    with torch.no_grad():
        ours = subset(images, sizes)
    for mine, full in zip(ours, theirs):
        keep = (full["labels"] == first) | (full["labels"] == second)
        expected = {"boxes": full["boxes"][keep], "scores": full["scores"][keep],
                    "labels": torch.where(full["labels"][keep] == first, 1, 2)}  # fmt: skip
        assert_same_detections([mine], [expected], min_count=0)
    assert sum(len(d["labels"]) for d in ours) > 0
    # Validation-loss targets are given in the dataset's labels and reach the model in its own.
    with torch.no_grad():
        detections, losses = subset(images, sizes, targets)
    assert set(losses) == {"rpn_cls", "rpn_loc", "roi_cls", "roi_loc"}
    assert subset.to_model[torch.tensor([1, 2])].tolist() == [first, second]
    assert all(set(d["labels"].tolist()) <= {1, 2} for d in detections)


def test_a_dataset_with_a_class_it_lacks_is_refused_naming_it(cached):
    checkpoint = load_checkpoint(SOURCE)
    model = model_from_checkpoint(checkpoint, _model_cfg(checkpoint))
    with pytest.raises(ValueError, match=r"not exactly once among the model's: \['unicorn'\]"):
        model_for_dataset(model, checkpoint.class_names, ["person", "unicorn"])
    with pytest.raises(ValueError, match=r"\['N/A'\]"):  # ambiguous: several of the model's labels
        model_for_dataset(model, checkpoint.class_names, ["N/A"])


def test_other_torchvision_detectors_are_refused_by_name():
    with pytest.raises(ValueError, match="retinanet_resnet50_fpn"):
        load_checkpoint("torchvision:retinanet_resnet50_fpn")


@pytest.mark.slow
def test_evaluate_script_scores_it_on_a_coco_file_of_some_of_its_classes(torch_home, tmp_path, in_process, monkeypatch):
    home, _ = torch_home
    root = Path(
        generate_shapes(str(tmp_path / "shapes"), num_train=1, num_test=4, min_image_size=80, max_image_size=96)
    )
    coco = json.loads((root / "coco" / "instances_test.json").read_text())
    # The shapes renamed as three COCO classes, with COCO's own ids.
    coco["categories"] = [{"id": 18, "name": "dog"}, {"id": 1, "name": "person"}, {"id": 62, "name": "chair"}]
    for annotation in coco["annotations"]:
        annotation["category_id"] = [18, 1, 62][annotation["category_id"] - 1]
    (root / "coco" / "instances_val.json").write_text(json.dumps(coco))
    run = tmp_path / "run"
    monkeypatch.setenv("TORCH_HOME", str(home))
    result = in_process("evaluate.py", f"checkpoint={SOURCE}", "dataset=coco", f"dataset.root={root}",
                        "dataset.test.images=JPEGImages", "dataset.test.annotations=coco/instances_val.json",
                        "dataset.test_min_size=96", "dataset.max_size=96", "model.roi_head.score_thresh=0.0",
                        "device=cpu", f"hydra.run.dir={run}")  # fmt: skip
    assert "the dataset's 3 classes are 3 of the model's 90" in result.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    predictions = json.loads((run / "predictions.json").read_text())
    assert set(metrics) >= {"voc07", "voc", "coco"} and 0.0 <= metrics["coco"]["AP"] <= 1.0
    assert predictions and {p["category_id"] for p in predictions} <= {1, 18, 62}
