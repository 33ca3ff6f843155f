"""Resume with the run's saved overrides, or from a checkpoint file with its saved config; a changed
config stops the resume, naming the keys."""

import pytest
from omegaconf import OmegaConf

from frcnn.checkpoint.io import load_checkpoint, save_checkpoint
from frcnn.engine.resume import (
    RUN_OVERRIDES,
    check_resume_config,
    config_differences,
    config_to_resume,
    overridden_keys,
    override_key,
    save_run_overrides,
    with_saved_overrides,
)
from frcnn.engine.trainer import train
from tests.engine.test_trainer import read_losses
from tests.helpers.checkpoints import stand_in_checkpoint
from tests.helpers.configs import compose_train


@pytest.fixture
def run_script(in_process):
    """``run_script(*args)``: ``python scripts/train.py args`` (in this process): its exit status and output."""
    return lambda *args: in_process("train.py", *args, check=False)


def test_saved_overrides_come_first_and_the_command_line_wins(tmp_path):
    save_run_overrides(
        tmp_path,
        ["debug=tiny", "train.max_iters=5", "model.rpn.conv_channels=32", "train.overwrite=true", "train.resume=auto"],
    )
    assert OmegaConf.load(tmp_path / RUN_OVERRIDES) == [
        "debug=tiny",
        "train.max_iters=5",
        "model.rpn.conv_channels=32",
    ]  # one-off actions not kept
    argv = ["train.resume=auto", f"hydra.run.dir={tmp_path}", "train.max_iters=9"]
    new_argv, reused = with_saved_overrides(argv)
    assert reused == ["debug=tiny", "model.rpn.conv_channels=32"]
    assert new_argv == reused + argv
    # not a resume=auto of a run directory with saved overrides: unchanged
    for other in (
        ["train.resume=auto"],
        [f"hydra.run.dir={tmp_path}"],
        ["train.resume=auto", f"hydra.run.dir={tmp_path}/x"],
    ):
        assert with_saved_overrides(other) == (other, [])


def test_hydras_own_overrides_file_is_not_read(tmp_path):
    """Hydra writes .hydra/overrides.yaml before the job runs, refused attempts included."""
    (tmp_path / ".hydra").mkdir()
    OmegaConf.save(OmegaConf.create(["optimizer.base_lr=0.5"]), tmp_path / ".hydra" / "overrides.yaml")
    argv = ["train.resume=auto", f"hydra.run.dir={tmp_path}"]
    assert with_saved_overrides(argv) == (argv, [])


@pytest.mark.parametrize("planted", [
    "+hydra.callbacks.evil._target_=logging.FileHandler", "hydra.job.chdir=true", "~experiment",
    "model.backbone={_target_: os.system}", "train.max_iters=${oc.env:HOME}", "seed=1,2", "train.no_such_key=1",
    "experiment=${oc.env:HOME}",
])  # fmt: skip
def test_saved_overrides_are_data_not_configuration(tmp_path, planted):
    save_run_overrides(tmp_path, ["debug=tiny", planted])
    with pytest.raises(ValueError, match=rf"{RUN_OVERRIDES}: refusing the saved override") as info:
        with_saved_overrides(["train.resume=auto", f"hydra.run.dir={tmp_path}"])
    assert planted in str(info.value) and "\n" not in str(info.value)
    given = override_key(planted)  # the same key on the command line replaces the saved one: accepted
    argv = ["train.resume=auto", f"hydra.run.dir={tmp_path}", f"{given}=1"]
    assert with_saved_overrides(argv) == (["debug=tiny", *argv], ["debug=tiny"])


def test_config_differences_ignore_the_runs_length_and_reporting():
    saved = OmegaConf.to_container(compose_train("debug=tiny"), resolve=True, enum_to_str=True)
    same = compose_train("debug=tiny", "train.max_iters=50", "train.log_period=7", "train.resume=auto")
    assert config_differences(saved, OmegaConf.to_container(same, resolve=True, enum_to_str=True)) == []
    changed = compose_train("debug=tiny", "optimizer.base_lr=0.5", "model.rpn.conv_channels=32")
    differences = config_differences(saved, OmegaConf.to_container(changed, resolve=True, enum_to_str=True))
    base_lr = saved["optimizer"]["base_lr"]
    assert differences == ["model.rpn.conv_channels: 64 -> 32", f"optimizer.base_lr: {base_lr} -> 0.5"]
    with pytest.raises(ValueError, match=r"model.rpn.conv_channels: 64 -> 32.*train.resume_allow_config_change=true"):
        check_resume_config(saved, changed, "last.pt")
    check_resume_config(
        saved,
        compose_train("debug=tiny", "model.rpn.conv_channels=32", "train.resume_allow_config_change=true"),
        "last.pt",
    )


@pytest.mark.slow
def test_resume_auto_without_repeating_overrides(run_script, tiny_root, tmp_path):
    run_dir = tmp_path / "run"

    first = run_script(
        "debug=tiny",
        f"dataset.root={tiny_root}",
        "device=cpu",
        "model.rpn.conv_channels=32",
        "train.max_iters=2",
        "train.eval_at_end=false",
        f"hydra.run.dir={run_dir}",
    )
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = run_script("train.resume=auto", f"hydra.run.dir={run_dir}", "train.max_iters=3")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "reusing the run's overrides debug=tiny" in resumed.stderr
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt").iteration == 3

    changed = run_script("train.resume=auto", f"hydra.run.dir={run_dir}", "train.max_iters=4", "optimizer.base_lr=0.5")
    assert changed.returncode == 2
    assert changed.stderr.strip().splitlines()[-1].startswith("train.py: error: cannot resume")
    assert "optimizer.base_lr: 0.004 -> 0.5" in changed.stderr and "Traceback" not in changed.stderr
    # The refused attempt (already in Hydra's .hydra/overrides.yaml) is not replayed by the next resume.
    again = run_script("train.resume=auto", f"hydra.run.dir={run_dir}", "train.max_iters=4")
    assert again.returncode == 0, again.stderr[-3000:]
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt").iteration == 4


def test_overrides_on_a_checkpoints_config_name_the_keys_they_set():
    keys = overridden_keys(["train.max_iters=9", "hydra.run.dir=/tmp/x", "dataset=voc", "debug=tiny"])
    assert keys[:2] == ["train.max_iters", "dataset"]  # Hydra's own keys are not the run's; a group: its node
    assert {"dataset.root", "model.backbone.depth", "schedule.steps", "train.checkpoint_period"} <= set(keys[2:])
    assert set(overridden_keys(["experiment=shapes_cpu"])) >= {"model", "optimizer", "schedule", "train.max_iters"}
    with pytest.raises(ValueError, match="~model.weights cannot apply"):
        overridden_keys(["~model.weights"])


@pytest.mark.parametrize("planted", [
    {"hydra": {"run": {"dir": "x"}}}, {"train": {"no_such_key": 1}}, {"model": {"backbone": {"_target_": "os.system"}}},
    {"train": {"max_iters": "${oc.env:HOME}"}}, {"dataset": {"min_size": ["${oc.decode:1}"]}},
])  # fmt: skip
def test_a_checkpoints_config_is_data_not_configuration(tmp_path, planted):
    checkpoint = stand_in_checkpoint(3, resumable=True)
    for node, value in planted.items():
        checkpoint.config[node] = value
    path = tmp_path / "model_0000003.pt"
    save_checkpoint(checkpoint, path)
    cfg = compose_train("debug=tiny", f"train.resume={path}")
    with pytest.raises(ValueError, match=rf"{path}: its saved config .*refused") as info:
        config_to_resume(cfg, [f"train.resume={path}"])
    assert "\n" not in str(info.value)
    checkpoint.config = {"model": {}, "dataset": {}, "train": {"max_iters": 7}}  # the same file, unplanted: taken
    save_checkpoint(checkpoint, path)
    resumed, resume_from = config_to_resume(cfg, [f"train.resume={path}", "seed=0"])
    assert (resumed.train.max_iters, resumed.train.resume, resume_from.checkpoint.iteration) == (7, str(path), 3)
    weights_only = tmp_path / "best.pt"
    save_checkpoint(checkpoint.weights_only(), weights_only)
    with pytest.raises(ValueError, match="holds model weights only"):
        config_to_resume(compose_train(f"train.resume={weights_only}"), [f"train.resume={weights_only}"])


def test_resume_auto_takes_the_config_of_the_run_folders_checkpoint(tmp_path):
    cfg = compose_train("debug=tiny", "train.resume=auto")
    assert config_to_resume(cfg, ["train.resume=auto"], tmp_path) == (cfg, None)  # no checkpoint yet: as composed
    checkpoint = stand_in_checkpoint(3, resumable=True)
    checkpoint.config = {"model": {}, "dataset": {}, "train": {"max_iters": 7, "log_period": 2}}
    save_checkpoint(checkpoint, tmp_path / "checkpoints" / "last.pt")
    cfg = compose_train("debug=tiny", "train.resume=auto", "train.log_period=9")
    resumed, resume_from = config_to_resume(cfg, ["train.resume=auto", "train.log_period=9"], tmp_path)
    assert (resumed.train.max_iters, resumed.train.log_period) == (7, 9)  # the checkpoint's, the command line's
    assert resume_from.path == tmp_path / "checkpoints" / "last.pt" and resume_from.checkpoint.iteration == 3


@pytest.mark.slow
def test_resume_from_a_file_takes_the_checkpoints_config(run_script, tiny_cfg, tiny_root, tmp_path):
    """Only train.resume=PATH and the keys to change: the run continues with the checkpoint's settings
    and repeats the uninterrupted run's losses."""
    settings = ("model.roi_head.batch_size_per_image=8", "schedule=multistep", "train.checkpoint_period=1")
    straight = tmp_path / "straight"
    train(tiny_cfg(*settings, "train.max_iters=4", "train.eval_at_end=false"), straight)
    periodic = straight / "checkpoints" / "model_0000002.pt"
    resumed_dir = tmp_path / "resumed"
    resumed = run_script(
        f"train.resume={periodic}", "train.max_iters=4", f"dataset.root={tiny_root}", f"hydra.run.dir={resumed_dir}"
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from {periodic} at iteration 2" in (resumed_dir / "train.log").read_text()
    last = load_checkpoint(resumed_dir / "checkpoints" / "last.pt")
    assert last.iteration == 4 and last.config["model"]["roi_head"]["batch_size_per_image"] == 8
    assert read_losses(resumed_dir) == {i: terms for i, terms in read_losses(straight).items() if i > 2}

    # train.resume=auto in that folder continues with the config it trained with, not the defaults'.
    again = run_script("train.resume=auto", "train.max_iters=5", f"hydra.run.dir={resumed_dir}")
    assert again.returncode == 0, again.stderr[-3000:]
    last = load_checkpoint(resumed_dir / "checkpoints" / "last.pt")
    assert last.iteration == 5 and last.config["model"]["roi_head"]["batch_size_per_image"] == 8

    refused = run_script(f"train.resume={periodic}", "model.backbone.depth=50", f"hydra.run.dir={tmp_path / 'refused'}")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines()[-1].startswith(f"train.py: error: cannot resume {periodic}")
    assert "model.backbone.depth: 18 -> 50" in refused.stderr
