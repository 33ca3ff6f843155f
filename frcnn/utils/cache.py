"""Where frcnn keeps what it can make again: ``$XDG_CACHE_HOME/frcnn/<name>`` (default ``~/.cache``),
which outlives a reboot, unlike ``/tmp``."""

from __future__ import annotations

import os


def frcnn_cache_dir(name: str) -> str:
    """``$XDG_CACHE_HOME/frcnn/<name>``, ``~/.cache/frcnn/<name>`` when the variable is unset or empty."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "frcnn", name)
