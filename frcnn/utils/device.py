"""The device a run uses and its mixed precision: one AMP setting for training and evaluation.

``device``: ``auto`` (CUDA when available, else the CPU), ``cpu`` or ``cuda``. ``amp``: ``off``
(full precision), ``bf16`` (bfloat16 autocast, on CUDA and on CPUs) or ``fp16`` (float16
autocast with a GradScaler while training; CUDA only). The same value that trained a model
is what its evaluation autocasts to.
"""

import logging
from contextlib import AbstractContextManager
from enum import StrEnum
from typing import Optional

import torch

log = logging.getLogger(__name__)


class Device(StrEnum):
    auto = "auto"  # cuda when available, else cpu
    cpu = "cpu"
    cuda = "cuda"


class Amp(StrEnum):
    off = "off"  # write it quoted in YAML files: a bare `off` is YAML's boolean false
    bf16 = "bf16"
    fp16 = "fp16"  # with a GradScaler when training; CUDA only


_DTYPES = {Amp.bf16: torch.bfloat16, Amp.fp16: torch.float16}


def resolve_device(name: Device | str | torch.device) -> torch.device:
    """``auto`` -> cuda when available, else cpu; ``cuda`` without a GPU is an error."""
    name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device=cuda but no CUDA device is available (use device=cpu or auto)")
    return torch.device(name)


def autocast_dtype(amp: Amp | str | None, device: torch.device, key: str = "train.amp") -> Optional[torch.dtype]:
    """The autocast dtype of ``amp`` on ``device`` (None: full precision); ``key`` names the
    setting in the warning. bf16 autocasts on CUDA and on the CPU; fp16 on CUDA only (a CPU run
    ignores it, with a warning)."""
    amp = Amp(amp or Amp.off)
    if amp is Amp.off:
        return None
    if amp is Amp.fp16 and device.type != "cuda":
        log.warning("%s=fp16 ignored: float16 mixed precision is used on CUDA only (bf16 runs on CPUs too)", key)
        return None
    return _DTYPES[amp]


def autocast(device: torch.device, dtype: Optional[torch.dtype]) -> AbstractContextManager:
    """``torch.autocast`` to ``dtype`` on ``device``'s type; a no-op when ``dtype`` is None."""
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)
