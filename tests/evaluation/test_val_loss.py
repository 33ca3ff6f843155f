"""Validation loss through run_inference: the value, its determinism, and its gather over 2 ranks."""

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from frcnn.checkpoint.io import load_checkpoint
from frcnn.checkpoint.restore import model_from_checkpoint
from frcnn.data import build_test_loader
from frcnn.evaluation import DetectionEvaluator, run_inference
from frcnn.evaluation.val_loss import LOSS_TERMS, batch_seed, has_annotations, loss_targets, reseed

TERMS = [*LOSS_TERMS, "total"]


def tiny_model(tiny_checkpoint):
    path, cfg = tiny_checkpoint
    return model_from_checkpoint(load_checkpoint(path), cfg.model), cfg


def evaluate(model, cfg, batch_size, seed):
    loader = build_test_loader(cfg.dataset, batch_size, num_workers=0)
    return run_inference(model, loader, DetectionEvaluator(loader.dataset), "cpu", val_loss_seed=seed)


def test_validation_loss_is_the_image_weighted_mean_of_the_eval_mode_batch_losses(tiny_checkpoint):
    model, cfg = tiny_model(tiny_checkpoint)
    metrics = evaluate(model, cfg, batch_size=4, seed=3)  # 6 test images: batches of 4 and 2
    loader = build_test_loader(cfg.dataset, 4, num_workers=0)
    assert has_annotations(loader.dataset)
    model.eval()
    sums, images = torch.zeros(len(LOSS_TERMS)), 0
    with torch.no_grad():
        for batch in loader:
            reseed(batch_seed(3, batch.indices), torch.device("cpu"))
            _, losses = model(batch.images, batch.image_sizes, loss_targets(batch.targets))
            sums += len(batch) * torch.stack([losses[k] for k in LOSS_TERMS])
            images += len(batch)
    expected = (sums / images).tolist()
    assert list(metrics["val_loss"]) == TERMS
    assert [metrics["val_loss"][k] for k in LOSS_TERMS] == pytest.approx(expected, rel=1e-6)
    assert metrics["val_loss"]["total"] == pytest.approx(sum(expected), rel=1e-6)
    assert all(v > 0 for v in metrics["val_loss"].values())


def test_validation_loss_is_deterministic_leaves_the_rng_alone_and_not_the_detections(tiny_checkpoint):
    model, cfg = tiny_model(tiny_checkpoint)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = evaluate(model, cfg, batch_size=3, seed=0)
    assert torch.equal(torch.get_rng_state(), state)  # training's stream continues as if nothing ran
    again = evaluate(model, cfg, batch_size=3, seed=0)
    other = evaluate(model, cfg, batch_size=3, seed=1)
    loader = build_test_loader(cfg.dataset, 3, num_workers=0)
    without = run_inference(model, loader, DetectionEvaluator(loader.dataset), "cpu")
    assert first["val_loss"] == again["val_loss"]
    assert first["val_loss"] != other["val_loss"]  # the sampling is random: the seed matters
    assert "val_loss" not in without
    for key in ("voc07", "voc"):  # the same detections with the losses as without
        assert first[key]["mAP"] == pytest.approx(without[key]["mAP"])
    assert first["coco"] == pytest.approx(without["coco"])


def test_crowd_boxes_are_not_targets():
    targets = [
        {
            "boxes": torch.tensor([[0.0, 0, 4, 4], [1, 1, 5, 5], [2, 2, 6, 6]]),
            "labels": torch.tensor([1, 2, 3]),
            "iscrowd": torch.tensor([False, True, False]),
            "difficult": torch.tensor([False, False, True]),
        }
    ]
    assert loss_targets(targets)[0]["labels"].tolist() == [1, 3]
    assert loss_targets(targets, use_difficult=False)[0]["labels"].tolist() == [1]


def _rank_worker(rank, world_size, init_file, checkpoint, shapes_root, result_file):
    torch.set_num_threads(1)  # two processes on a small machine
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    from tests.helpers.checkpoints import tiny_config

    cfg = tiny_config(shapes_root)
    model = model_from_checkpoint(load_checkpoint(checkpoint), cfg.model)
    metrics = evaluate(model, cfg, batch_size=1, seed=0)  # this rank's shard: images rank::2
    torch.save(metrics, f"{result_file}.{rank}")
    dist.destroy_process_group()


@pytest.mark.slow
def test_validation_loss_is_gathered_over_two_processes(tiny_checkpoint, tmp_path):
    path, cfg = tiny_checkpoint
    mp.spawn(_rank_worker, args=(2, tmp_path / "init", path, cfg.dataset.root, tmp_path / "result"), nprocs=2)
    model, _ = tiny_model(tiny_checkpoint)
    single = evaluate(model, cfg, batch_size=1, seed=0)["val_loss"]
    for rank in range(2):
        gathered = torch.load(f"{tmp_path / 'result'}.{rank}", weights_only=False)["val_loss"]
        assert list(gathered) == TERMS
        assert [gathered[k] for k in TERMS] == pytest.approx([single[k] for k in TERMS], rel=1e-6)
