"""The checkpoint format: one dataclass to and from the on-disk dict, keys unchanged, what a
checkpoint lacks named in one line."""

import pytest
import torch

from frcnn.checkpoint.format import Checkpoint, CheckpointError, TrainingState
from frcnn.checkpoint.io import load_checkpoint, save_checkpoint
from tests.helpers.checkpoints import stand_in_checkpoint

# What the trainer wrote before the format had a type (last.pt and best.pt), key for key.
LAST_KEYS = {"model", "optimizer", "scheduler", "scaler", "iteration", "rng", "config", "class_names",
             "category_ids", "best_metric"}  # fmt: skip
BEST_KEYS = {"model", "iteration", "config", "class_names", "category_ids", "best_metric"}


def test_a_training_checkpoint_round_trips_through_a_file(tmp_path):
    checkpoint = stand_in_checkpoint(7, weight=2.5, resumable=True)
    checkpoint.best_metric = 0.25
    save_checkpoint(checkpoint, tmp_path / "last.pt")
    assert set(torch.load(tmp_path / "last.pt", weights_only=True)) == LAST_KEYS | {"checksum"}

    loaded = load_checkpoint(tmp_path / "last.pt")
    assert (loaded.iteration, loaded.best_metric, loaded.class_names, loaded.category_ids) == (
        7,
        0.25,
        ["a", "b"],
        [1, 2],
    )
    assert torch.equal(loaded.model["w"], torch.full((2,), 2.5)) and loaded.config == checkpoint.config
    assert loaded.training.scheduler == {"last_epoch": 7} and torch.equal(
        loaded.training.rng[0]["torch"], checkpoint.training.rng[0]["torch"]
    )
    assert loaded.training.optimizer["param_groups"] == checkpoint.training.optimizer["param_groups"]


def test_weights_only_is_the_best_checkpoint_layout():
    checkpoint = stand_in_checkpoint(3, resumable=True)
    assert set(checkpoint.weights_only().to_dict()) == BEST_KEYS
    assert checkpoint.training is not None  # the original keeps its training state
    assert Checkpoint.from_dict(checkpoint.weights_only().to_dict()).training is None


def test_a_dict_as_the_trainer_wrote_it_before_still_loads(tmp_path):
    """A last.pt of the untyped format, written with torch.save directly (rng: one state per rank)."""
    weight = torch.arange(4.0)
    old = {"model": {"head.weight": weight}, "optimizer": {"state": {}, "param_groups": []},
           "scheduler": {"last_epoch": 12}, "scaler": {}, "iteration": 12, "rng": [{"torch": torch.get_rng_state()}],
           "config": {"model": {"architecture": "c4"}, "dataset": {"name": "shapes"}, "train": {}, "seed": 0},
           "class_names": ["circle", "square"], "category_ids": [1, 2], "best_metric": None}  # fmt: skip
    torch.save(old, tmp_path / "old.pt")
    checkpoint = load_checkpoint(tmp_path / "old.pt")
    assert checkpoint.iteration == 12 and checkpoint.training.scheduler == {"last_epoch": 12}
    assert torch.equal(checkpoint.model["head.weight"], weight)
    assert checkpoint.to_dict().keys() == old.keys()  # written back with the same keys


@pytest.mark.parametrize(
    "drop, named",
    [
        (("class_names",), "lacks class_names: not an frcnn checkpoint"),
        (("config", "iteration"), "lacks config, iteration: not an frcnn checkpoint"),
        (("scaler",), "lacks scaler: an incomplete frcnn checkpoint"),  # a training state is whole or absent
    ],
)
def test_a_missing_key_is_named_in_one_line_with_the_file(tmp_path, drop, named):
    state = {k: v for k, v in stand_in_checkpoint(4, resumable=True).to_dict().items() if k not in drop}
    torch.save(state, tmp_path / "cut.pt")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path / "cut.pt")
    assert str(info.value).startswith(f"{tmp_path / 'cut.pt'} {named}") and "\n" not in str(info.value)


def test_a_config_without_its_model_or_dataset_node_and_a_foreign_model_entry_are_named():
    state = stand_in_checkpoint(1).to_dict()
    with pytest.raises(CheckpointError, match=r"^x.pt lacks config.dataset: an incomplete frcnn checkpoint$"):
        Checkpoint.from_dict({**state, "config": {"model": {}}}, "x.pt")
    with pytest.raises(CheckpointError, match=r"x.pt is not an frcnn checkpoint: its 'model' entry is not a state"):
        Checkpoint.from_dict({**state, "model": {"w": [1.0, 2.0]}}, "x.pt")
    with pytest.raises(CheckpointError, match=r"x.pt is not an frcnn checkpoint \(it holds a list, not a dict\)"):
        Checkpoint.from_dict([state], "x.pt")


def test_training_state_fields_are_the_on_disk_keys():
    training = TrainingState(optimizer={"state": {}}, scheduler={}, scaler={"scale": 2.0}, rng=[])
    checkpoint = Checkpoint(
        model={}, config={"model": {}, "dataset": {}}, class_names=[], category_ids=[], training=training
    )
    state = checkpoint.to_dict()
    assert (state["optimizer"], state["scaler"], state["rng"]) == ({"state": {}}, {"scale": 2.0}, [])
    assert Checkpoint.from_dict(state) == checkpoint
