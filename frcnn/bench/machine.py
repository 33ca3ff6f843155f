"""The machine a benchmark ran on, written into ``benchmark.json`` as ``machine``.

A time means little without its machine, and a CPU's name does not say its speed: two 2-core hosts
that ``lscpu`` both names "AMD EPYC" stepped the default training at 0.5 s and at 1.5-1.6 s. So the
record also holds ``calibration_gflops``, the fp32 GFLOP/s of one fixed convolution measured in this
process at its thread count: a time measured on one machine scales to another by the ratio of their
calibrations (roughly: the convolutions are most of a detector's CPU time). Ratios measured
interleaved in one process compare fairly across machines; absolute times only next to this record.

``python -m frcnn.bench.machine`` prints the record of the machine it runs on as JSON.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path

import torch
import torchvision

# The calibration convolution: 3x3, 64 -> 64 channels, stride 1, padding 1, on a 1x64x112x112 input
# (ResNet's layer1 at a 448 px image), fp32 on the CPU.
CALIBRATION_INPUT = (1, 64, 112, 112)
CALIBRATION_KERNEL = 3


def calibration_flops() -> int:
    """Floating-point operations of one calibration convolution: 2 * Cin * Cout * k * k * H * W."""
    batch, channels, height, width = CALIBRATION_INPUT
    return 2 * batch * channels * channels * CALIBRATION_KERNEL**2 * height * width


def calibration_gflops(seconds: float = 1.0, warmup_seconds: float = 0.2) -> float:
    """The CPU's fp32 GFLOP/s on the calibration convolution: calls repeated for ``seconds`` after
    ``warmup_seconds`` of warm-up, at the process's ``torch.get_num_threads()`` threads. The
    operands come from a private generator, so the global random state is untouched."""
    generator = torch.Generator().manual_seed(0)
    channels = CALIBRATION_INPUT[1]
    x = torch.randn(CALIBRATION_INPUT, generator=generator)
    weight = torch.randn(channels, channels, CALIBRATION_KERNEL, CALIBRATION_KERNEL, generator=generator) * 0.05
    padding = CALIBRATION_KERNEL // 2
    with torch.inference_mode():
        for duration in (warmup_seconds, seconds):
            calls, start = 0, time.perf_counter()
            while True:
                torch.nn.functional.conv2d(x, weight, padding=padding)
                calls += 1
                elapsed = time.perf_counter() - start
                if elapsed >= duration:
                    break
    return calibration_flops() * calls / elapsed / 1e9


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


def machine_info(device: torch.device, calibration_seconds: float = 1.0) -> dict:
    """``{"cpu_model", "cpu_count", "threads", "calibration_gflops", "device", "gpu", "torch",
    "torchvision", "commit"}``: ``threads`` is PyTorch's intra-op thread count,
    ``calibration_gflops`` the CPU's (:func:`calibration_gflops`, timed for
    ``calibration_seconds``) at that thread count, ``gpu`` the CUDA device's name (None on the CPU)."""
    return {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "calibration_gflops": round(calibration_gflops(calibration_seconds), 1),
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "commit": source_commit(),
    }


def main() -> None:
    """``python -m frcnn.bench.machine``: this machine's record (CPU) as one JSON object."""
    print(json.dumps(machine_info(torch.device("cpu")), indent=2))


if __name__ == "__main__":
    main()
