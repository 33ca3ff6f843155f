"""Training refuses a training split without any object before any step: one line, exit code 2
(it used to train and report mAP 0 without a word)."""

from pathlib import Path

from tests.helpers.commands import logged_iterations


def test_a_training_split_without_objects_is_refused_before_any_step(make_voc, tmp_path: Path, in_process):
    root = make_voc({"a": (64, 64, []), "b": (80, 64, []), "c": (64, 80, [])})
    run_dir = tmp_path / "run"
    run = in_process("train.py", "debug=tiny", "device=cpu", "dataset=voc", f"dataset.root={root}",
                     "dataset.classes=[cat,dog]", "dataset.train_sets=[train]", "dataset.test_sets=[train]",
                     f"hydra.run.dir={run_dir}", check=False)  # fmt: skip
    assert run.returncode == 2, run.stderr
    message = (f"invalid dataset: dataset.root={root}, dataset.train_sets=[train]: the training split of dataset "
               "'voc' has no object in its 3 images: nothing to train on")  # fmt: skip
    assert message in run.stderr and "Traceback" not in run.stderr
    assert logged_iterations(run_dir) == [] and not (run_dir / "checkpoints" / "last.pt").exists()
