"""How the command-line programs end on an error: one line on the console, the traceback in
the run's log file.

A mistake on the command line (a missing mandatory value, an unknown key, a value of the wrong
type, a missing file or folder, an unreadable checkpoint, a value a check rejects) prints one
line ``<program>: error: <what and where>`` (plus the fix where there is one) and exits with
code 2, as argparse does for usage errors. Bad data is reported the same way (one line,
the first problem, exit code 2). A failure of the run itself that the project reports in words
(divergence, a stalled process of a distributed run) prints one line and exits with 1. Anything else
is a bug: its traceback goes to the console. A training stopped early by SIGTERM or SIGINT (its
step finished, its checkpoint saved, resumable with ``train.resume=auto``) exits with code 3
(:data:`EXIT_STOPPED`), so that a scheduler can tell it from a finished run (0); a second signal
ends the process at once with 128 + the signal number, as a shell reports a process killed by it.
In every case the full traceback is appended to the log files of the run (``train.log``,
``evaluate.log``), so the log records every exception that ends a run. ``HYDRA_FULL_ERROR=1`` in
the environment shows every traceback on the console.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from hydra.errors import HydraException, MissingConfigException
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, MissingMandatoryValue, OmegaConfBaseException

from frcnn.data.validation import DatasetError
from frcnn.engine.distributed import StalledRankError
from frcnn.engine.run_folder import RunFolderError

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_STOPPED = 3  # a graceful stop on request: saved and resumable, not finished

log = logging.getLogger("frcnn")

# Failures of a run (not of its command line) that the project explains in one sentence:
# divergence (non-finite losses, gradients, weights or boxes) and a stalled distributed process.
_REPORTED_FAILURES = (FloatingPointError, StalledRankError)
# Wrong keys, values, paths or files given on the command line (bad data included: the fix is
# to point at other files or change a dataset.* value; a run folder in use or holding another run:
# the fix is another hydra.run.dir or train.resume).
_USAGE_ERRORS = (
    HydraException,
    OmegaConfBaseException,
    FileNotFoundError,
    NotADirectoryError,
    ValueError,
    RunFolderError,
)


def _squash(text: str) -> str:
    """Several lines -> one: blank lines dropped, the rest joined with "; "."""
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())


def _omegaconf_message(error: OmegaConfBaseException, program: str) -> str:
    key = getattr(error, "full_key", None) or ""
    first = str(error).splitlines()[0] if str(error) else type(error).__name__
    if isinstance(error, MissingMandatoryValue):
        return f"{key} is required: add {key}=VALUE to the command line"
    if isinstance(error, (ConfigKeyError, ConfigAttributeError)):
        return f"unknown key {key or first}: {first}; check its spelling (`{program} --cfg job` prints every key)"
    return f"{key}: {first}" if key else first


def error_message(error: BaseException, program: str) -> str:
    """The one-line console message for ``error`` (see the module docstring)."""
    if isinstance(error, MissingConfigException):
        # "Could not find 'experiment/foo'" + the list of available options, one per line
        text = str(error).split("Config search path:")[0]
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        head = re.sub(r"^In '[^']*': ", "", lines[0])
        options = [line for line in lines[1:] if not line.endswith(":")]
        return f"{head}; choose one of: {', '.join(options)}" if options else head
    if isinstance(error, DatasetError):
        first, more = error.problems[0], len(error.problems) - 1
        listed = f" (and {more} more problems)" if more else ""
        return (
            f"invalid dataset: {first}{listed}; check the dataset.* values, or list every problem with "
            f"`python scripts/check_dataset.py` and the same dataset overrides"
        )
    if isinstance(error, OmegaConfBaseException):
        return _omegaconf_message(error, program)
    if isinstance(error, HydraException):
        cause = error.__cause__
        head = str(error).splitlines()[0] if str(error) else type(error).__name__
        if isinstance(cause, (ConfigKeyError, ConfigAttributeError)):
            return _omegaconf_message(cause, program)
        if isinstance(cause, OmegaConfBaseException):
            override = head.removeprefix("Error merging override ")
            return f"{override}: {str(cause).splitlines()[0]}"
        return _squash(error)
    if _not_writable(error) and error.errno is None:  # raised with a message of its own
        return _squash(error)
    if isinstance(error, OSError) and error.errno in _FULL + _NOT_WRITABLE:
        return _environment_message(error)
    return _squash(error) or type(error).__name__


# The machine, not the command line: a full disk ends the run (1); a folder that cannot be written
# is fixed by choosing another one (2).
_FULL = (errno.ENOSPC, errno.EDQUOT)
_NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


def _not_writable(error: BaseException) -> bool:
    return isinstance(error, PermissionError) or (isinstance(error, OSError) and error.errno in _NOT_WRITABLE)


def _environment_message(error: OSError) -> str:
    where = f": {error.filename}" if error.filename else ""
    if error.errno in _FULL:
        return f"no space left on the device{where}; free some or write the run to another folder (hydra.run.dir)"
    return f"{error.strerror or error}{where}; choose a folder this process can write"


def exit_code(error: BaseException) -> int | None:
    """EXIT_USAGE or EXIT_FAILURE for errors reported in one line; None for unexpected ones."""
    if isinstance(error, _REPORTED_FAILURES) or (isinstance(error, OSError) and error.errno in _FULL):
        return EXIT_FAILURE
    if isinstance(error, _USAGE_ERRORS) or _not_writable(error):
        return EXIT_USAGE
    return None


def _log_files() -> list[Path]:
    return [Path(h.baseFilename) for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]


def record_in_log_files(error: BaseException) -> None:
    """Append the traceback of ``error`` to every log file of the root logger (not the console)."""
    record = log.makeRecord(
        log.name,
        logging.ERROR,
        __file__,
        0,
        "the run ended with an exception",
        None,
        (type(error), error, error.__traceback__),
    )
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


class _HydraJobErrorFilter:
    """sys.stderr, less the line ``Error executing job with overrides: [...]`` that Hydra writes
    before re-raising a job's exception (the exception is reported here, in one line)."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> int:
        if text.startswith("Error executing job with overrides:"):
            return len(text)
        return self.stream.write(text)

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


def _remove_stub_run_folder(log_file: Path) -> None:
    """Remove the run folder of a command refused for its input when it holds nothing but Hydra's
    record of the command line and this log: a mistake leaves no stub ``outputs/<date>/<time>``.
    (A folder the user named with ``hydra.run.dir`` is kept, with the traceback in its log.)"""
    run_dir = log_file.parent
    contents = {p.name for p in run_dir.iterdir()} if run_dir.is_dir() else set()
    if ".hydra" in contents and contents <= {".hydra", log_file.name}:  # made by Hydra for this command
        for handler in [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]:
            logging.getLogger().removeHandler(handler)
            handler.close()
        shutil.rmtree(run_dir, ignore_errors=True)
        for parent in (run_dir.parent, run_dir.parent.parent):  # outputs/<date>/ and outputs/, when empty now
            try:
                parent.rmdir()
            except OSError:
                break


def run_command(main: Callable[[], object], program: str | None = None) -> None:
    """Run a ``@hydra.main`` function as a command: errors end as described in the module docstring."""
    program = program or Path(sys.argv[0]).name
    # The commands name their configs folder by its absolute path (frcnn.config.config_dir()); Hydra
    # reads config_path as a folder only for a task function of the __main__ module, and as a
    # package resource otherwise (the commands' functions live in frcnn.cli.<name>).
    os.environ["HYDRA_MAIN_MODULE"] = "__main__"
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        main()
        return
    # Hydra otherwise prints its own multi-line report and exits 1; let the exception reach us.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    stderr, sys.stderr = sys.stderr, _HydraJobErrorFilter(sys.stderr)
    try:
        main()
    except Exception as error:  # noqa: BLE001 (every exception ends here, reported once)
        sys.stderr = stderr
        record_in_log_files(error)
        code = exit_code(error)
        logs = _log_files()
        where = f" (traceback in {logs[0]})" if logs else ""
        if code is None:
            traceback.print_exception(error)
            print(f"{program}: unexpected error{where}", file=sys.stderr)
            sys.exit(EXIT_FAILURE)
        print(
            f"{program}: error: {error_message(error, program)}{where if code == EXIT_FAILURE else ''}", file=sys.stderr
        )
        if code == EXIT_USAGE and logs and not any(arg.startswith("hydra.run.dir=") for arg in sys.argv):
            _remove_stub_run_folder(logs[0])
        sys.exit(code)
    finally:
        sys.stderr = stderr
        os.environ.pop("HYDRA_FULL_ERROR", None)
