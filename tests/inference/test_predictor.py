"""frcnn/inference/predictor.py: an unusable output folder fails before the model is loaded, and
unreadable inputs are skipped and counted apart from the images detected on."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from frcnn.inference.predictor import Predictor, check_output_dir, list_images


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
