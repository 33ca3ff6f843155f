"""Section ``zoo``: the model zoo table, torchvision's COCO-trained Faster R-CNN detectors as frcnn
builds them (``checkpoint=torchvision:<name>``, ``model.weights=torchvision:<name>``).

Per detector: the frcnn model preset that is the same network, torchvision's published COCO
val2017 box AP and GFLOPs of its weights (the weights' metadata, nothing downloaded), the
parameter count of frcnn's model for COCO's 91 classes (background included; equal to the
metadata's ``num_params``), and the inference time per image at torchvision's test size (a 4:3
image: 800 x 1067 px, or 320 x 427 for the 320 model, padded to 800 x 1088 and 320 x 448),
batch 1, ``torch.inference_mode``, on the benchmark's device.

The timed models have random weights, so nothing is downloaded: the time is the network's.
Trained weights change only how many detections pass the 0.05 score threshold (at most 100 per
image, a small part of the time). The detectors are timed interleaved, round by round
(:func:`frcnn.bench.timing.interleaved_times`), so a change in the machine's load hits all alike.
"""

import logging

import torch
from torchvision.models import get_model_weights

from frcnn.bench.export_speed import padded_test_size
from frcnn.bench.timing import interleaved_times, medians
from frcnn.checkpoint.saved_config import saved_model_config
from frcnn.checkpoint.torchvision import TORCHVISION_MODEL_CONFIGS, torchvision_config
from frcnn.models import build_model

log = logging.getLogger(__name__)


def zoo_detector(name: str) -> tuple[torch.nn.Module, dict]:
    """Torchvision detector ``name`` as frcnn builds it (random weights, eval mode, COCO's 90
    classes) and its table row without the timing: ``preset`` (the ``model=`` value),
    ``coco_box_ap`` and ``gflops`` (torchvision's metadata), ``params`` (frcnn's model),
    ``test_size`` ([min, max] side) and ``input_hw`` (the timed image's padded (h, w))."""
    meta = get_model_weights(name).DEFAULT.meta
    config = torchvision_config(name)
    dataset = config["dataset"]
    model = build_model(saved_model_config(config), num_classes=len(meta["categories"]) - 1).eval()
    row = {
        "preset": TORCHVISION_MODEL_CONFIGS[name],
        "coco_box_ap": meta["_metrics"]["COCO-val2017"]["box_map"],
        "gflops": meta["_ops"],
        "params": sum(p.numel() for p in model.parameters()),
        "test_size": [dataset["test_min_size"], dataset["max_size"]],
        "input_hw": list(padded_test_size(dataset["test_min_size"], dataset["max_size"], dataset["size_divisibility"])),
    }
    return model, row


def _inference(model: torch.nn.Module, input_hw: list[int], generator: torch.Generator, device: torch.device):
    """A call that runs ``model`` (moved to ``device``) on one random image of ``input_hw``."""
    model.to(device)
    images = torch.randn(1, 3, *input_hw, generator=generator).to(device)
    image_sizes = torch.tensor([input_hw], device=device)

    def run():
        with torch.inference_mode():
            return model(images, image_sizes)

    return run


def benchmark_zoo(
    names: list[str], warmup_iters: int, timed_iters: int, device: torch.device | None = None, seed: int = 0
) -> dict:
    """``{name: row}`` for each torchvision detector in ``names`` (keys of
    :data:`TORCHVISION_MODEL_CONFIGS`): :func:`zoo_detector`'s row and ``seconds_per_image``, the
    median of ``timed_iters`` interleaved rounds on ``device`` (default the CPU) after ``warmup_iters``."""
    device = device or torch.device("cpu")
    unknown = [name for name in names if name not in TORCHVISION_MODEL_CONFIGS]
    if unknown:
        raise ValueError(f"zoo.models: frcnn builds {sorted(TORCHVISION_MODEL_CONFIGS)}, not {unknown}")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    detectors = {name: zoo_detector(name) for name in names}
    runs = {"inference": {name: _inference(model, row["input_hw"], generator, device)
                          for name, (model, row) in detectors.items()}}  # fmt: skip
    seconds = medians(interleaved_times(runs, warmup_iters, timed_iters, device))["inference"]
    rows = {}
    for name, (_, row) in detectors.items():
        rows[name] = {**row, "seconds_per_image": seconds[name]}
        log.info("zoo: %s %s", name, rows[name])
    return rows
