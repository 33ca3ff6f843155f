"""Section ``val_loss``: what the validation loss adds to the evaluation forward.

The evaluation forward can return the detections and the four losses at once
(``model(images, image_sizes, targets)`` in eval mode, see :mod:`frcnn.evaluation.val_loss`);
this section times it against the detections alone on the same test batches.
"""

import torch

from frcnn.bench.timing import interleaved_times, medians
from frcnn.data import build_test_loader
from frcnn.evaluation.val_loss import loss_targets
from frcnn.models import build_model


def benchmark_val_loss(dataset_cfg, model_cfg, device: torch.device, batch_size: int = 4, num_batches: int = 5,
                       repeats: int = 3, seed: int = 0) -> dict:  # fmt: skip
    """Evaluation forward time without and with the validation loss (one forward for both).

    ``num_batches`` test batches of ``dataset_cfg`` are loaded once; a model of ``model_cfg`` with
    seeded random weights runs over all of them in eval mode, detections only then detections
    and losses, interleaved ``repeats`` times after one warm-up round. Medians of the seconds per
    pass; ``extra_fraction`` = with / without - 1.
    """
    loader = build_test_loader(dataset_cfg, batch_size, num_workers=0)
    batches = [batch.to(device) for _, batch in zip(range(num_batches), loader)]
    torch.manual_seed(seed)
    model = build_model(model_cfg, len(loader.dataset.class_names)).to(device).eval()
    targets = [loss_targets(batch.targets) for batch in batches]

    def detections() -> None:
        with torch.no_grad():
            for batch in batches:
                model(batch.images, batch.image_sizes)

    def detections_and_losses() -> None:
        with torch.no_grad():
            for batch, batch_targets in zip(batches, targets):
                model(batch.images, batch.image_sizes, batch_targets)

    runs = {"eval": {"detections": detections, "detections_and_losses": detections_and_losses}}
    times = interleaved_times(runs, 1, repeats, device)["eval"]
    median = medians({"eval": times})["eval"]
    return {
        "images": sum(len(batch) for batch in batches),
        "batch_size": batch_size,
        "device": str(device),
        "median_seconds": median,
        "extra_fraction": median["detections_and_losses"] / median["detections"] - 1,
        "times": times,
    }
