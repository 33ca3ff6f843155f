"""scripts/predict.py owns its output folder: two runs into one folder lost one run's predictions.json
(72 + 6 images drawn, a predictions.json of 72), whether they ran one after the other or at once."""

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from frcnn.data import build_dataset
from frcnn.inference.predictor import PREDICTIONS_FILE
from frcnn.utils.folder_lock import LOCK_FILE
from tests.helpers.configs import REPO


@pytest.fixture
def photos(tiny_checkpoint, tmp_path):
    """Two folders of shapes test images: ``first`` (a.jpg, b.png) and ``second`` (c.jpg)."""
    _, train_cfg = tiny_checkpoint
    test_set = build_dataset(train_cfg.dataset, "test")
    folders = {"first": ["a.jpg", "b.png"], "second": ["c.jpg"]}
    for index, (folder, names) in enumerate(folders.items()):
        (tmp_path / folder).mkdir()
        for offset, name in enumerate(names):
            Image.open(test_set.image_path(2 * index + offset)).save(tmp_path / folder / name)
    return tmp_path


def predict(in_process, checkpoint, images, output, *overrides, check=True):
    return in_process("predict.py", f"checkpoint={checkpoint}", f"input={images}", f"output={output}",
                      "score_threshold=0", "device=cpu", *overrides, check=check)  # fmt: skip


def image_ids(output) -> set:
    return {p["image_id"] for p in json.loads((output / PREDICTIONS_FILE).read_text())}


def test_a_used_output_folder_is_refused_unless_overwrite(tiny_checkpoint, photos, in_process):
    checkpoint, _ = tiny_checkpoint
    output = photos / "out"
    predict(in_process, checkpoint, photos / "first", output)
    first = (output / PREDICTIONS_FILE).read_bytes()
    assert image_ids(output) == {"a.jpg", "b.png"}

    refused = predict(in_process, checkpoint, photos / "second", output, check=False)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        f"predict.py: error: output={output} is not empty (it holds predictions.json, a.jpg, b.png): choose a new "
        f"or empty folder, or add overwrite=true to replace the files this run writes there (the others are kept)"
    ]
    assert (output / PREDICTIONS_FILE).read_bytes() == first
    assert sorted(p.name for p in output.iterdir()) == ["a.jpg", "b.png", PREDICTIONS_FILE]

    predict(in_process, checkpoint, photos / "second", output, "overwrite=true")
    assert image_ids(output) == {"c.jpg"}  # this run's predictions.json
    assert sorted(p.name for p in output.iterdir()) == ["a.jpg", "b.png", "c.jpg", PREDICTIONS_FILE]


def test_a_second_prediction_into_a_folder_in_use_stops_naming_the_first(
    tiny_checkpoint, photos, in_process, monkeypatch
):
    """The second scripts/predict.py starts while the first one is detecting."""
    checkpoint, _ = tiny_checkpoint
    output = photos / "out"
    import frcnn.cli.predict

    second = {}
    detect = frcnn.cli.predict.Predictor.predict

    def predict_while_another_starts(self, *args, **kwargs):
        command = [sys.executable, "scripts/predict.py", f"checkpoint={checkpoint}", f"input={photos / 'second'}",
                   f"output={output}", "overwrite=true", "device=cpu"]  # fmt: skip
        # Without the HYDRA_FULL_ERROR=1 that the first command sets for its own run.
        env = {key: value for key, value in os.environ.items() if key != "HYDRA_FULL_ERROR"}
        second["result"] = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        return detect(self, *args, **kwargs)

    monkeypatch.setattr(frcnn.cli.predict.Predictor, "predict", predict_while_another_starts)
    predict(in_process, checkpoint, photos / "first", output)

    result = second["result"]
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert (
        f"predict.py: error: {output} is in use by the prediction started " in result.stderr
        and f"(pid {os.getpid()}): wait for it to finish, stop it, or choose another output" in result.stderr
    )
    assert image_ids(output) == {"a.jpg", "b.png"}
    assert sorted(p.name for p in output.iterdir()) == ["a.jpg", "b.png", PREDICTIONS_FILE]  # lock given back
    assert not (output / LOCK_FILE).exists()
