"""What a run records while it runs: losses.jsonl survives a process killed while writing it."""

import json
import logging

import pytest

from frcnn.engine.events import records_up_to


def test_losses_jsonl_with_a_partial_last_line(tmp_path, caplog):
    path = tmp_path / "losses.jsonl"
    path.write_text('{"iteration": 1, "loss/total": 2.0}\n{"iteration": 2, "loss/total": 1.5}\n{"iteration": 3, "lo')
    with caplog.at_level(logging.WARNING):
        assert [json.loads(line)["iteration"] for line in records_up_to(path, 2)] == [1, 2]
    assert "incomplete last line 3" in caplog.text
    path.write_text('{"iteration": 1}\n{"iter\n{"iteration": 3}\n')
    with pytest.raises(ValueError, match=r"losses.jsonl: line 2 is not a losses record"):
        records_up_to(path, 3)
