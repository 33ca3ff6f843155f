"""Graceful stop on SIGTERM / SIGINT: the loop finishes its step, saves, and returns; a second
signal ends the process at once."""

import logging
import os
import signal
import threading

log = logging.getLogger(__name__)

_STOP_WATCHING = 0  # not a signal number: tells the watcher thread to end

_active_pipe: tuple[int, int] | None = None  # the signal pipe of the StopRequest in force


def _forget_wakeup_fd() -> None:
    """In a forked child (a DataLoader worker): stop writing signals to the parent's pipe, where
    the child's share of a Ctrl-C would count as the parent's second signal, and close the
    child's copies of the pipe."""
    if _active_pipe is not None:
        try:
            signal.set_wakeup_fd(-1)
        except ValueError:  # forked from a thread other than the main one: no wakeup fd to reset
            pass
        for fd in _active_pipe:
            try:
                os.close(fd)
            except OSError:
                pass


os.register_at_fork(after_in_child=_forget_wakeup_fd)


class StopRequest:
    """Context manager that turns SIGTERM and SIGINT into a flag the training loop polls.

    A second signal while a stop is pending ends the process at once (exit status 128 + the
    signal number, as a shell reports a process killed by it), so an impatient Ctrl-C, or
    torchrun shutting down its workers, is never ignored.

    Python runs signal handlers in the main thread between bytecodes only, so a main thread
    blocked in a collective (waiting for a stalled process) would not see either signal. The C
    handler also writes each signal's number to a pipe (``signal.set_wakeup_fd``), and a
    watcher thread reading it acts on the signals while the main thread is blocked.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.requested = False
        self._previous = {}
        self._lock = threading.Lock()
        self._received = 0
        self._pipe = None
        self._previous_wakeup_fd = -1
        self._watcher = None

    def _handle(self, signum, frame):
        # The main thread's view; the watcher counts the signals and logs them.
        self.requested = True

    def _on_signal(self, signum: int) -> None:
        with self._lock:
            self._received += 1
            first = self._received == 1
        name = signal.Signals(signum).name
        if first:
            self.requested = True
            log.warning(
                "received %s: finishing the current iteration, then saving and exiting (send it again to exit at once)",
                name,
            )
            return
        log.error("received %s again: exiting at once, without saving", name)
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(128 + signum)

    def _watch(self, read_fd: int) -> None:
        while True:
            for signum in os.read(read_fd, 64):
                if signum == _STOP_WATCHING:  # written by __exit__
                    return
                if signum in self.SIGNALS:
                    self._on_signal(signum)

    def _restore(self):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}
        if self._pipe is not None:
            global _active_pipe
            signal.set_wakeup_fd(self._previous_wakeup_fd)
            _active_pipe = None
            os.write(self._pipe[1], bytes([_STOP_WATCHING]))
            self._watcher.join()
            for fd in self._pipe:
                os.close(fd)
            self._pipe = self._watcher = None

    def __enter__(self):
        # Signal handlers can only be installed from the main thread.
        if threading.current_thread() is threading.main_thread():
            self._pipe = os.pipe()
            os.set_blocking(self._pipe[1], False)
            self._watcher = threading.Thread(
                target=self._watch, args=(self._pipe[0],), name="stop-request", daemon=True
            )
            self._watcher.start()
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
            global _active_pipe
            self._previous_wakeup_fd = signal.set_wakeup_fd(self._pipe[1], warn_on_full_buffer=False)
            _active_pipe = self._pipe
        return self

    def __exit__(self, *exc):
        self._restore()
        return False
