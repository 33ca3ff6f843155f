"""frcnn/engine/periodic_evaluation.py: evaluation during training runs as the training does."""

import torch

from frcnn.engine.trainer import train
from frcnn.models import build_model


class RecordsAutocast(torch.nn.Module):
    """A detector that records the autocast dtype of each of its forward passes, by mode."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model
        self.seen = {"train": set(), "eval": set()}

    def forward(self, images, image_sizes, targets=None):
        device = images.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
        self.seen["train" if self.training else "eval"].add(dtype)
        return self.model(images, image_sizes, targets)


def test_a_bf16_run_is_evaluated_in_bf16(tiny_cfg, tmp_path):
    """train.amp=bf16: training and its evaluation both autocast to bfloat16 (evaluation used to
    autocast to the device's default dtype, float16 on CUDA). On the CPU, as bf16 autocast runs there."""
    built = []

    def build(model_cfg, num_classes):
        built.append(RecordsAutocast(build_model(model_cfg, num_classes)))
        return built[0]

    cfg = tiny_cfg("train.max_iters=2", "train.eval_period=1", "train.amp=bf16", "device=cpu")
    metrics = train(cfg, tmp_path, build=build)
    assert metrics is not None
    assert built[0].seen == {"train": {torch.bfloat16}, "eval": {torch.bfloat16}}


def test_test_images_are_drawn_large_enough_to_read(tiny_shapes_cfg):
    """The shapes test images are 64-96 px: drawn at that size their legend and captions could not be read."""
    from frcnn.data import build_dataset
    from frcnn.engine.periodic_evaluation import VIS_MIN_SIDE, draw_test_images

    dataset = build_dataset(tiny_shapes_cfg(), "test")
    (drawn,) = draw_test_images(dataset, [], 1)
    height, width = dataset.get_annotation(0)["height"], dataset.get_annotation(0)["width"]
    assert min(drawn.shape[1:]) == VIS_MIN_SIDE and abs(drawn.shape[2] / drawn.shape[1] - width / height) < 0.02
