"""Fixtures of the evaluation tests."""

import pytest
from eval_fakes import make_fake_dataset


@pytest.fixture
def fake_dataset():
    return make_fake_dataset()
