"""frcnn/models/weights.py: whole-detector weights from a file or from torchvision, and the one-line
errors of the paths that cannot give them (offline, a file that is not weights)."""

from pathlib import Path

import pytest
import torch
import torchvision

from frcnn.models.backbone import WeightsUnavailableError
from frcnn.models.weights import load_weights, torchvision_state_dict
from tests.helpers.torch_cache import offline_torch_home

NAME = "fasterrcnn_resnet50_fpn"
FILE = Path(torchvision.models.get_model_weights(NAME).DEFAULT.url).name


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """An empty torch cache in ``tmp_path`` and no network: every download fails as it does offline."""
    return offline_torch_home(tmp_path, monkeypatch) / FILE


def test_offline_fine_tuning_names_the_url_the_file_to_place_and_the_local_key(offline):
    with pytest.raises(WeightsUnavailableError) as error:
        load_weights(torch.nn.Linear(1, 1), f"torchvision:{NAME}")
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"model.weights=torchvision:{NAME}: cannot download https://")
    assert f"place it at {offline}" in message and f"model.weights=/path/to/{FILE}" in message


def test_offline_checkpoint_names_the_file_to_place_and_no_training_key(offline):
    with pytest.raises(WeightsUnavailableError, match=f"checkpoint=torchvision:{NAME}: cannot download") as error:
        torchvision_state_dict(NAME)
    assert f"place it at {offline}" in str(error.value) and "model.weights" not in str(error.value)


def test_a_planted_cache_file_is_named_and_never_run(offline):
    offline.parent.mkdir(parents=True)
    offline.write_bytes(b"not a weights file")
    with pytest.raises(ValueError, match=f"the cached file {offline} cannot be read .*delete it to download it again"):
        torchvision_state_dict(NAME, key="model.weights")


def test_a_weights_file_that_is_not_weights_is_named(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("hello")
    with pytest.raises(ValueError, match=f"model.weights={path}: cannot be read as weights"):
        load_weights(torch.nn.Linear(1, 1), path)
    torch.save([1, 2], path)
    with pytest.raises(ValueError, match="holds a list, not a state dict"):
        load_weights(torch.nn.Linear(1, 1), path)


def test_a_state_dict_file_loads_by_key(tmp_path):
    source, target = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    torch.save({"model": source.state_dict()}, tmp_path / "checkpoint.pt")
    report = load_weights(target, tmp_path / "checkpoint.pt")
    assert report["missing"] == report["unexpected"] == report["mismatched"] == []
    assert torch.equal(target.weight, source.weight)


def test_a_torchvision_name_that_is_no_detector_is_named():
    with pytest.raises(ValueError, match="model.weights=torchvision:not_a_detector: torchvision has no model"):
        load_weights(torch.nn.Linear(1, 1), "torchvision:not_a_detector")
