"""Section val_loss (``frcnn.bench.val_loss_speed``): both evaluation forwards timed on the same batches."""

import torch

from frcnn.bench.val_loss_speed import benchmark_val_loss


def test_benchmark_val_loss_times_both_forwards(tiny_cfg):
    cfg = tiny_cfg("device=cpu")
    result = benchmark_val_loss(cfg.dataset, cfg.model, torch.device("cpu"), batch_size=2, num_batches=2, repeats=2)
    assert result["images"] == 4 and result["batch_size"] == 2 and result["device"] == "cpu"
    assert set(result["median_seconds"]) == set(result["times"]) == {"detections", "detections_and_losses"}
    assert all(len(times) == 2 and min(times) > 0 for times in result["times"].values())
    median = result["median_seconds"]
    assert median["detections"] == sum(result["times"]["detections"]) / 2  # the median of two
    assert result["extra_fraction"] == median["detections_and_losses"] / median["detections"] - 1
