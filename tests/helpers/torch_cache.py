"""A torch hub cache (``$TORCH_HOME``) the tests fill themselves: torchvision's weights API then
finds a state dict saved from a randomly initialised model where a download would put it, or,
offline, fails as a machine without network does."""

import urllib.error
from pathlib import Path

import torch


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
