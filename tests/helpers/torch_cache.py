"""A torch hub cache (``$TORCH_HOME``) the tests fill themselves: torchvision's weights API then
finds a state dict saved from a randomly initialised model where a download would put it, or,
offline, fails as a machine without network does."""

import urllib.error
from pathlib import Path

import pytest
import torch

from frcnn.checkpoint.io import load_checkpoint
from frcnn.models import load_weights
from frcnn.models.backbone import WeightsUnavailableError


def filled_torch_home(home: Path, state_dict: dict, file_name: str) -> Path:
    """``home`` as a torch cache holding ``state_dict`` under ``hub/checkpoints/<file_name>``."""
    cache = home / "hub" / "checkpoints"
    cache.mkdir(parents=True, exist_ok=True)
    torch.save(state_dict, cache / file_name)
    return home


def offline_torch_home(home: Path, monkeypatch) -> Path:
    """``$TORCH_HOME`` set to the empty ``home`` and every download failing as it does offline;
    returns the folder a weights file would be placed in."""
    monkeypatch.setenv("TORCH_HOME", str(home))

    def no_network(url, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return home / "hub" / "checkpoints"


def assert_offline_errors_name_the_url_and_the_file(name: str, url: str, place: Path) -> None:
    """Offline, ``model.weights=torchvision:<name>`` and ``checkpoint=torchvision:<name>`` each fail
    with one line naming ``url`` and where to place its file (``place``)."""
    file = Path(url).name
    with pytest.raises(WeightsUnavailableError) as error:
        load_weights(torch.nn.Linear(1, 1), f"torchvision:{name}")
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"model.weights=torchvision:{name}: cannot download {url}")
    assert f"place it at {place}" in message and f"model.weights=/path/to/{file}" in message
    with pytest.raises(WeightsUnavailableError, match=f"checkpoint=torchvision:{name}: cannot download") as error:
        load_checkpoint(f"torchvision:{name}")
    assert f"place it at {place}" in str(error.value) and "model.weights" not in str(error.value)
