"""frcnn/inference/predictor.py: an unusable output folder fails before the model is loaded,
unreadable inputs are skipped and counted apart from the images detected on, and an output folder
has one owner (its lock) and is not reused unless told."""

import json
import os
import re
import socket
import subprocess
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from frcnn.inference.predictor import (
    OutputFolderError,
    Predictor,
    by_size,
    check_output_dir,
    list_images,
    own_output_dir,
)
from frcnn.utils.folder_lock import LOCK_FILE, FolderLock


def test_unwritable_output_folder_is_refused_before_any_work(tmp_path):
    image = tmp_path / "in" / "a.jpg"
    image.parent.mkdir()
    image.write_bytes(b"")
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(ValueError, match=r"output .*a_file/out is not a writable folder"):
        check_output_dir([image], blocker / "out")
    with pytest.raises(ValueError, match=r"output .*a_file is not a writable folder"):
        check_output_dir([image], blocker)
    check_output_dir([image], tmp_path / "new" / "out")  # created
    assert (tmp_path / "new" / "out").is_dir()


def test_unreadable_images_are_skipped_and_counted_apart(tmp_path):
    """predict.py's summary counted a truncated file as an image it detected on."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(np.zeros((32, 48, 3), dtype=np.uint8)).save(photos / name)
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    (photos / "notes.txt").write_text("not an image")
    nothing = {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)}
    detector = SimpleNamespace(class_names=["cat"], detect=lambda images: [dict(nothing) for _ in images])
    predictor = Predictor(detector, [1], score_threshold=0.5)
    paths = list_images(photos)
    assert [p.name for p in paths] == ["a.png", "b.png", "broken.jpg"]
    assert predictor.predict(paths, batch_size=2, output_dir=tmp_path / "out") == []
    assert predictor.unreadable == [photos / "broken.jpg"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png"]


def test_images_are_batched_by_size_and_predictions_kept_in_file_order(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    sizes = {"a.png": (64, 80), "b.png": (32, 48), "c.png": (64, 80), "d.png": (32, 48)}
    for name, (height, width) in sizes.items():
        Image.fromarray(np.zeros((height, width, 3), dtype=np.uint8)).save(photos / name)
    (photos / "e.jpg").write_bytes(b"not an image")
    batches = []

    def detect(images):
        batches.append([tuple(image.shape[1:]) for image in images])
        one = {
            "boxes": torch.tensor([[1.0, 1.0, 9.0, 9.0]]),
            "scores": torch.tensor([0.9]),
            "labels": torch.tensor([1]),
        }
        return [dict(one) for _ in images]

    predictor = Predictor(SimpleNamespace(class_names=["cat"], detect=detect), [7], score_threshold=0.5)
    paths = list_images(photos)
    assert [p.name for p in by_size(paths)] == ["b.png", "d.png", "a.png", "c.png", "e.jpg"]
    predictions = predictor.predict(paths, batch_size=2, output_dir=tmp_path / "out")
    assert batches == [[(32, 48), (32, 48)], [(64, 80), (64, 80)], []]  # each batch one size; e.jpg unreadable
    assert [p["image_id"] for p in predictions] == ["a.png", "b.png", "c.png", "d.png"]


def test_the_output_folder_is_locked_while_a_prediction_owns_it(tmp_path):
    output = tmp_path / "out"
    with own_output_dir([], output, overwrite=False):
        holder = json.loads((output / LOCK_FILE).read_text())
        assert holder["holder"] == "prediction" and holder["pid"] == os.getpid()
        with pytest.raises(
            OutputFolderError,
            match=rf"^{re.escape(str(output))} is in use by the prediction started .* on host {socket.gethostname()} "
            rf"\(pid {os.getpid()}\): wait for it to finish, stop it, or choose another output$",
        ):
            with own_output_dir([], output, overwrite=True):
                pass
        assert (output / LOCK_FILE).exists(), "the refused run leaves the holder's lock alone"
    assert list(output.iterdir()) == []  # given back


def test_a_training_holding_the_folder_is_named(tmp_path):
    with FolderLock(tmp_path, holder="training", elsewhere="hydra.run.dir"):
        with pytest.raises(OutputFolderError, match="in use by the training started"):
            with own_output_dir([], tmp_path, overwrite=True):
                pass


def test_a_non_empty_output_is_refused_unless_overwrite(tmp_path):
    for name in ("a.jpg", "b.png", "c.png", "predictions.json", "z.jpg"):
        (tmp_path / name).write_bytes(b"earlier run")
    with pytest.raises(
        OutputFolderError,
        match=rf"^output={re.escape(str(tmp_path))} is not empty "
        r"\(it holds predictions.json, a.jpg, b.png and 2 more\): "
        r"choose a new or empty folder, or add overwrite=true to replace the files this run writes there",
    ):
        with own_output_dir([], tmp_path, overwrite=False):
            pass
    assert not (tmp_path / LOCK_FILE).exists()  # the refusal gives the lock back
    with own_output_dir([], tmp_path, overwrite=True):
        pass
    assert (tmp_path / "predictions.json").read_bytes() == b"earlier run"  # nothing deleted


def test_a_lock_left_by_a_killed_prediction_is_taken_over(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / LOCK_FILE).write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid}))
    with own_output_dir([], tmp_path, overwrite=False):  # only the stale lock: an empty folder
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
