"""Progress reporting that suits where the console goes.

On a terminal: a tqdm bar (log records are written above it by
:class:`frcnn.utils.logs.TqdmHandler`, so the two never share a line). Redirected to a file
(nohup, a batch scheduler): no carriage-return output at all, but a log line every
``log_every_s`` seconds with the count, the rate and the estimated time left.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Optional

from tqdm import tqdm

log = logging.getLogger("progress")


def console_is_terminal() -> bool:
    """Whether the console (stderr, where bars and log records go) is an interactive terminal."""
    return sys.stderr.isatty()


def format_duration(seconds: float) -> str:
    """``3725.2`` -> ``"1:02:05"``; ``65`` -> ``"1:05"``."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def eta_text(done: int, total: int, seconds_per_item: float) -> str:
    """``"ETA 1:05"`` for ``total - done`` items left at ``seconds_per_item`` each."""
    return f"ETA {format_duration(max(total - done, 0) * seconds_per_item)}"


class LogProgress:
    """The part of tqdm's interface the project uses, reporting as periodic log lines.

    ``log_every_s=None`` reports nothing (for loops that log their own lines with an ETA).
    """

    def __init__(self, total: int, desc: str, unit: str = "it", initial: int = 0, log_every_s: Optional[float] = 30.0):
        self.total, self.desc, self.unit = total, desc, unit
        self.n = self.start_n = initial
        self.log_every_s = log_every_s
        self.postfix = ""
        self.start = self.last_log = time.monotonic()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if self.log_every_s is not None and (now - self.last_log >= self.log_every_s or self.n >= self.total):
            self.last_log = now
            log.info("%s", self.status(now))

    def status(self, now: float) -> str:
        """``"predict: 12/40 images (30%), 0.52 s/image, ETA 0:15"`` (+ the postfix, if any)."""
        done = self.n - self.start_n
        per_item = (now - self.start) / done if done else 0.0
        percent = 100 * self.n / self.total if self.total else 100
        text = (
            f"{self.desc}: {self.n}/{self.total} {self.unit} ({percent:.0f}%), "
            f"{per_item:.3g} s/{self.unit}, {eta_text(self.n, self.total, per_item)}"
        )
        return f"{text}, {self.postfix}" if self.postfix else text

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        self.postfix = text

    def close(self) -> None:
        pass

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress_bar(
    total: int,
    desc: str,
    unit: str = "it",
    initial: int = 0,
    disable: bool = False,
    log_every_s: Optional[float] = 30.0,
    **tqdm_kwargs,
) -> tqdm | LogProgress:
    """A tqdm bar on a terminal, else a :class:`LogProgress` (see the module docstring)."""
    if disable or not console_is_terminal():
        return LogProgress(total, desc, unit, initial, None if disable else log_every_s)
    return tqdm(total=total, desc=desc, unit=unit, initial=initial, dynamic_ncols=True, **tqdm_kwargs)
