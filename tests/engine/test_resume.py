"""Resume with the run's saved overrides; a changed config stops the resume, naming the keys."""

import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from frcnn.checkpoint.io import load_checkpoint
from frcnn.engine.resume import (
    RUN_OVERRIDES,
    check_resume_config,
    config_differences,
    override_key,
    save_run_overrides,
    with_saved_overrides,
)
from tests.helpers.configs import REPO, compose_train


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
def test_resume_auto_without_repeating_overrides(tiny_root, tmp_path):
    run_dir = tmp_path / "run"

    def train(*args):
        return subprocess.run(
            [sys.executable, "scripts/train.py", *args], cwd=REPO, capture_output=True, text=True, timeout=300
        )

    first = train(
        "debug=tiny",
        f"dataset.root={tiny_root}",
        "device=cpu",
        "model.rpn.conv_channels=32",
        "train.max_iters=2",
        "train.eval_at_end=false",
        f"hydra.run.dir={run_dir}",
    )
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = train("train.resume=auto", f"hydra.run.dir={run_dir}", "train.max_iters=3")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "reusing the run's overrides debug=tiny" in resumed.stderr
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt").iteration == 3

    changed = train("train.resume=auto", f"hydra.run.dir={run_dir}", "train.max_iters=4", "optimizer.base_lr=0.5")
    assert changed.returncode == 2
    assert changed.stderr.strip().splitlines()[-1].startswith("train.py: error: cannot resume")
    assert "optimizer.base_lr: 0.004 -> 0.5" in changed.stderr and "Traceback" not in changed.stderr
    # The refused attempt (already in Hydra's .hydra/overrides.yaml) is not replayed by the next resume.
    again = train("train.resume=auto", f"hydra.run.dir={run_dir}", "train.max_iters=4")
    assert again.returncode == 0, again.stderr[-3000:]
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt").iteration == 4
