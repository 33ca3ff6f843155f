"""Fixtures of the evaluation tests."""

import pytest
from eval_checkpoint import write_tiny_checkpoint
from eval_fakes import make_fake_dataset


@pytest.fixture
def fake_dataset():
    return make_fake_dataset()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """(checkpoint path, its train config) of a 1-step tiny shapes run, made once per session."""
    directory = tmp_path_factory.mktemp("tiny_run")
    cfg = write_tiny_checkpoint(directory / "last.pt", directory / "shapes")
    return directory / "last.pt", cfg
