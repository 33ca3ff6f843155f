"""What a run records while it runs: losses.jsonl survives a process killed while writing it."""

import json
import logging

import pytest

from frcnn.engine.events import TrainingEvents, records_up_to


def test_losses_jsonl_with_a_partial_last_line(tmp_path, caplog):
    path = tmp_path / "losses.jsonl"
    path.write_text('{"iteration": 1, "loss/total": 2.0}\n{"iteration": 2, "loss/total": 1.5}\n{"iteration": 3, "lo')
    with caplog.at_level(logging.WARNING):
        assert [json.loads(line)["iteration"] for line in records_up_to(path, 2)] == [1, 2]
    assert "incomplete last line 3" in caplog.text
    path.write_text('{"iteration": 1}\n{"iter\n{"iteration": 3}\n')
    with pytest.raises(ValueError, match=r"losses.jsonl: line 2 is not a losses record"):
        records_up_to(path, 3)


def test_a_fresh_start_drops_what_an_earlier_start_recorded(tmp_path):
    """A run restarted from iteration 0 (e.g. killed before its first checkpoint) logs each iteration once."""
    (tmp_path / "losses.jsonl").write_text('{"iteration": 1}\n{"iteration": 2}\n')
    events = TrainingEvents(tmp_path, start_iter=0, max_iters=2, log_period=1)
    for iteration in (1, 2):
        events.iteration(iteration, {"total": 1.0}, lr=0.1, iter_time=0.1, data_time=0.0)
    events.close()
    lines = (tmp_path / "losses.jsonl").read_text().splitlines()
    assert [json.loads(line)["iteration"] for line in lines] == [1, 2]
