"""The training-parity benchmark (``scripts/benchmark.py sections=[accuracy]``) on the tiny
shapes set: frcnn variants and torchvision's composition trained per seed, summarised, resumable;
C4 and FPN."""

import json
import math

import pytest

from frcnn.bench import accuracy
from frcnn.bench.accuracy import benchmark_training_parity

SHORT = ("train.max_iters=3", "train.checkpoint_period=3", "train.val_loss=false", "model.roi_head.score_thresh=0.0")
TINY_FPN = ("model=resnet50_fpn", "model.backbone.depth=18", "model.backbone.weights=null",
            "model.anchors.scales=[0.5]", "model.rpn.pre_nms_top_n_train=100", "model.rpn.post_nms_top_n_train=50",
            "model.rpn.pre_nms_top_n_test=50", "model.rpn.post_nms_top_n_test=20",
            "model.roi_head.batch_size_per_image=16", "model.roi_head.mlp_dim=64")  # fmt: skip


@pytest.mark.slow
def test_every_variant_and_the_reference_train_per_seed_and_a_rerun_trains_nothing(tiny_cfg, tmp_path, monkeypatch):
    def compose(overrides):
        return tiny_cfg(*SHORT, *overrides)

    variants = {"ours": [], "offset_half": ["model.anchors.offset=0.5"]}
    progress = []
    result = benchmark_training_parity(compose, [0, 1], variants, True, tmp_path, progress.append)

    assert set(result["runs"]) == {"ours", "offset_half", "torchvision"}
    assert all(set(per_seed) == {"0", "1"} for per_seed in result["runs"].values())
    assert len(progress) == 6  # after every run, seed by seed
    for name in ("ours", "torchvision"):
        voc07 = [result["runs"][name][seed]["voc07_mAP"] for seed in ("0", "1")]
        assert result[name]["voc07_mAP"]["values"] == voc07
        assert math.isclose(result[name]["voc07_mAP"]["mean"], sum(voc07) / 2)
        assert result[name]["step_seconds"]["mean"] > 0
    means = {name: result[name]["voc07_mAP"]["mean"] for name in ("ours", "torchvision")}
    assert result["map_ratio"] == pytest.approx(means["ours"] / means["torchvision"])
    # The reference and the variant really are other runs of the same seed.
    assert result["runs"]["offset_half"]["0"] != result["runs"]["ours"]["0"]
    saved = json.loads((tmp_path / "torchvision_seed1" / "result.json").read_text())
    assert saved == result["runs"]["torchvision"]["1"]

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(accuracy, "train", no_training)
    again = benchmark_training_parity(compose, [0, 1], variants, True, tmp_path)
    assert again["runs"] == result["runs"] and again["map_ratio"] == result["map_ratio"]


@pytest.mark.slow
def test_the_fpn_pair_trains_alike(tiny_cfg, tmp_path):
    result = benchmark_training_parity(lambda overrides: tiny_cfg(*SHORT, *TINY_FPN, *overrides), [0], {"ours": []},
                                       True, tmp_path)  # fmt: skip
    assert set(result["runs"]) == {"ours", "torchvision"}
    for name in ("ours", "torchvision"):
        run = result["runs"][name]["0"]
        assert 0.0 <= run["voc07_mAP"] <= 1.0 and 0.0 <= run["coco_AP"] <= 1.0 and run["step_seconds"] > 0


@pytest.mark.slow
def test_an_ema_run_scores_its_average_beside_the_raw_weights_for_both_detectors(tiny_cfg, tmp_path):
    ema = ("train.ema_decay=0.5", "train.ema_warmup_iters=0")
    result = benchmark_training_parity(lambda overrides: tiny_cfg(*SHORT, *ema, *overrides), [0],
                                       {"ours": [], "plain": ["train.ema_decay=0"]}, True, tmp_path)  # fmt: skip
    for name in ("ours", "torchvision"):
        run = result["runs"][name]["0"]
        assert set(accuracy.EMA_METRICS) <= set(run) and 0.0 <= run["ema_voc07_mAP"] <= 1.0
        assert result[name]["ema_voc07_mAP"]["values"] == [run["ema_voc07_mAP"]]
    # Without EMA there is nothing to summarise; the average does not move the raw weights' path.
    plain = result["runs"]["plain"]["0"]
    assert not set(accuracy.EMA_METRICS) & set(plain) and "ema_voc07_mAP" not in result["summary"]["plain"]
    assert {k: plain[k] for k in accuracy.SCORES} == {k: result["runs"]["ours"]["0"][k] for k in accuracy.SCORES}
