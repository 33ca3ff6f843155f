"""A run's checkpoints/ folder: periodic copies pruned, staged checkpoints committed only after
a finite step (and the message naming what was kept), interrupted saves cleaned up, and resume
falling back to the newest readable checkpoint."""

import logging
import os

import pytest

from frcnn.checkpoint.folder import CheckpointDir, load_resume_checkpoint
from frcnn.checkpoint.format import CheckpointError
from frcnn.checkpoint.io import load_checkpoint, save_checkpoint
from tests.helpers.checkpoints import stand_in_checkpoint


def test_checkpoint_dir_keeps_last_n_periodic(tmp_path):
    ckpts = CheckpointDir(tmp_path, keep=2)
    for it in (100, 200, 300):
        ckpts.save_last(stand_in_checkpoint(it), periodic=True)
    ckpts.save_last(stand_in_checkpoint(350), periodic=False)
    assert [p.name for p in ckpts.periodic()] == ["model_0000200.pt", "model_0000300.pt"]
    assert load_checkpoint(ckpts.last).iteration == 350


def test_a_staged_checkpoint_is_committed_only_after_a_finite_step(tmp_path):
    ckpts = CheckpointDir(tmp_path, keep=2)
    assert ckpts.kept() == "no checkpoint was written"
    ckpts.save_last(stand_in_checkpoint(1), periodic=True)
    ckpts.stage_last(stand_in_checkpoint(2, weight=2.0), periodic=True)
    assert load_checkpoint(ckpts.last).iteration == 1 and ckpts.pending
    assert ckpts.kept() == (
        f"{tmp_path / 'last.pt'} (iteration 1) is the last checkpoint (the one of iteration 2 "
        f"was discarded: its weights fail a step)"
    )
    ckpts.discard()  # the next step failed
    assert sorted(os.listdir(tmp_path)) == ["last.pt", "model_0000001.pt"]
    ckpts.stage_last(stand_in_checkpoint(3, weight=3.0), periodic=True)
    ckpts.commit()  # the next step succeeded
    assert load_checkpoint(ckpts.last).iteration == 3 and (ckpts.saved_at, ckpts.staged_at) == (3, 3)
    assert ckpts.kept() == f"{tmp_path / 'last.pt'} (iteration 3) is the last checkpoint"
    assert sorted(os.listdir(tmp_path)) == ["last.pt", "model_0000001.pt", "model_0000003.pt"]


def test_a_process_that_does_not_write_keeps_the_same_bookkeeping(tmp_path):
    """Under torchrun only rank 0 writes; every rank names the same checkpoints when the run diverges."""
    writer, reader = CheckpointDir(tmp_path, keep=2), CheckpointDir(tmp_path, keep=2, writes=False)
    for ckpts in (writer, reader):
        ckpts.resumed_at(4)
        ckpts.stage_last(stand_in_checkpoint(6), periodic=True)
        ckpts.save_best(stand_in_checkpoint(6))
    assert writer.pending and not reader.pending
    assert reader.kept() == writer.kept() and "(iteration 4)" in reader.kept() and "iteration 6 was" in reader.kept()
    writer.discard()
    assert os.listdir(tmp_path) == ["best.pt"]


def test_best_holds_the_weights_only(tmp_path):
    CheckpointDir(tmp_path, keep=1).save_best(stand_in_checkpoint(5, resumable=True))
    best = load_checkpoint(tmp_path / "best.pt")
    assert best.iteration == 5 and best.training is None


def test_leftover_temporary_files_are_removed_on_the_next_start(tmp_path):
    ckpts = CheckpointDir(tmp_path, keep=1)
    save_checkpoint(stand_in_checkpoint(3), ckpts.last)
    stale = [tmp_path / ".last.pt.k1llq7.tmp", tmp_path / ".model_0000003.pt.x9.tmp"]
    for path in stale:
        path.write_bytes(b"\0" * 1000)
    CheckpointDir(tmp_path, keep=1, writes=False).remove_temporaries()  # not rank 0: leaves them
    assert len(os.listdir(tmp_path)) == 3
    ckpts.remove_temporaries()
    assert sorted(os.listdir(tmp_path)) == ["last.pt"]


def test_resume_names_a_file_or_finds_the_runs_last(tmp_path):
    ckpts = CheckpointDir(tmp_path / "checkpoints", keep=1)
    assert load_resume_checkpoint(None, ckpts) == (None, None)
    assert load_resume_checkpoint("auto", ckpts) == (None, None)  # fresh start
    ckpts.save_last(stand_in_checkpoint(2))
    path, checkpoint = load_resume_checkpoint("auto", ckpts)
    assert path == tmp_path / "checkpoints" / "last.pt" and checkpoint.iteration == 2
    elsewhere = CheckpointDir(tmp_path / "elsewhere", keep=1)
    assert load_resume_checkpoint(str(ckpts.last), elsewhere)[1].iteration == 2
    with pytest.raises(FileNotFoundError, match=r"train.resume=.*missing.pt: no such checkpoint"):
        load_resume_checkpoint(str(tmp_path / "missing.pt"), ckpts)


def test_resume_falls_back_to_the_newest_readable_checkpoint(tmp_path, caplog):
    ckpts = CheckpointDir(tmp_path / "checkpoints", keep=3)
    for iteration in (2, 4):
        ckpts.save_last(stand_in_checkpoint(iteration), periodic=True)
    ckpts.last.write_bytes(ckpts.last.read_bytes()[:100])  # killed in the middle of a copy
    with caplog.at_level(logging.WARNING):
        path, checkpoint = load_resume_checkpoint("auto", ckpts)
    assert path.name == "model_0000004.pt" and checkpoint.iteration == 4
    assert "last.pt" in caplog.text and "resuming from" in caplog.text and "model_0000004.pt" in caplog.text

    ckpts.last.write_bytes(b"")
    (ckpts.directory / "model_0000004.pt").write_bytes(b"")
    (ckpts.directory / "model_0000002.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"no checkpoint .* can be read: .*last.pt: the file is empty") as info:
        load_resume_checkpoint("auto", ckpts)
    assert "\n" not in str(info.value) and str(info.value).count("empty") == 3
    with pytest.raises(CheckpointError, match="empty"):  # a named file: no fallback
        load_resume_checkpoint(str(ckpts.last), ckpts)
