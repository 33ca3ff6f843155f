"""Interleaved timing of runs that are compared with each other (the sections model, eval,
val_loss and export).

Runs are grouped (``runs[group][name]``: a training step and an inference per model, one image
and a batch per runtime); each round calls every run once, group by group, so that a change in
the machine's load during the benchmark hits all runs alike and their ratio stays fair.
"""

import logging
import statistics
import time
from collections.abc import Callable, Mapping
from typing import Optional

import torch

log = logging.getLogger(__name__)


def synchronize(device: Optional[torch.device]) -> None:
    """Wait for ``device``'s queued work (CUDA runs asynchronously; a CPU or None needs nothing)."""
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_times(
    runs: Mapping[str, Mapping[str, Callable[[], object]]],
    warmup: int,
    timed: int,
    device: Optional[torch.device] = None,
) -> dict[str, dict[str, list[float]]]:
    """Seconds of every run in each of ``timed`` rounds, after ``warmup`` untimed rounds:
    ``times[group][name]`` (``timed`` values each). On CUDA the device is synchronised before and
    after each run, so a time is that run's work and not its kernel launches."""
    times = {group: {name: [] for name in members} for group, members in runs.items()}
    for round_ in range(warmup + timed):
        for group, members in runs.items():
            for name, run in members.items():
                synchronize(device)
                start = time.perf_counter()
                run()
                synchronize(device)
                if round_ >= warmup:
                    times[group][name].append(time.perf_counter() - start)
        log.info("timing: round %d/%d done", round_ + 1, warmup + timed)
    return times


def medians(times: Mapping[str, Mapping[str, list[float]]]) -> dict[str, dict[str, float]]:
    """``times[group][name]`` (lists of seconds) -> their medians, same keys."""
    return {group: {name: statistics.median(t) for name, t in members.items()} for group, members in times.items()}
