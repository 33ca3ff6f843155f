"""Graceful stop on SIGTERM / SIGINT: the loop finishes its step, saves, and returns."""

import logging
import signal
import threading

log = logging.getLogger(__name__)


class StopRequest:
    """Context manager that turns SIGTERM and SIGINT into a flag the training loop polls.

    A second signal while a stop is pending restores Python's default behaviour and is
    delivered again, so an impatient Ctrl-C still kills the process.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.requested = False
        self._previous = {}

    def _handle(self, signum, frame):
        if self.requested:
            self._restore()
            signal.raise_signal(signum)
            return
        self.requested = True
        log.warning("received %s: finishing the current iteration, then saving and exiting",
                    signal.Signals(signum).name)

    def _restore(self):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def __enter__(self):
        # Signal handlers can only be installed from the main thread.
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc):
        self._restore()
        return False
