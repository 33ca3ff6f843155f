"""The machine a benchmark ran on, written into ``benchmark.json`` as ``machine``.

A time means little without its machine: the same default training step takes 0.5 s on one
2-core CPU and 1.6 s on another. Ratios measured interleaved in one process compare fairly
across machines; absolute times only next to this record.
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import torch
import torchvision


def cpu_model() -> str:
    """The CPU's model name as ``lscpu`` prints it (``/proc/cpuinfo``'s "model name" on Linux),
    else ``platform.processor()``, else "unknown"."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def source_commit() -> str | None:
    """The git commit of the frcnn source tree, or None outside a git checkout."""
    root = Path(__file__).resolve().parents[2]
    try:
        done = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


def machine_info(device: torch.device) -> dict:
    """``{"cpu_model", "cpu_count", "threads", "device", "gpu", "torch", "torchvision", "commit"}``:
    ``threads`` is PyTorch's intra-op thread count, ``gpu`` the CUDA device's name (None on the CPU)."""
    return {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "commit": source_commit(),
    }
