"""Log set-up for the scripts: the console (through tqdm, so progress bars stay intact) and a
plain log file in the run directory. In a distributed run only rank 0 logs below WARNING and
only rank 0 writes the file.
"""

import logging
import sys
from pathlib import Path
from typing import Optional

from tqdm import tqdm

FORMAT = "[%(asctime)s %(levelname)s %(name)s] %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


class TqdmHandler(logging.StreamHandler):
    """Writes records with ``tqdm.write`` so that they appear above an active progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 (logging.Handler.emit's contract: report, never raise)
            self.handleError(record)


def setup_logging(log_file: Optional[str | Path] = None, rank: int = 0, level: int = logging.INFO) -> None:
    """Configure the root logger: console on every rank (rank > 0: warnings only), and on rank 0
    a plain-text ``log_file`` (appended to, so a resumed run continues the same file)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level)
    formatter = logging.Formatter(FORMAT if rank == 0 else f"[rank {rank}] {FORMAT}", DATE_FORMAT)
    console = TqdmHandler()
    console.setLevel(level if rank == 0 else logging.WARNING)
    console.setFormatter(formatter)
    root.addHandler(console)
    if log_file is not None and rank == 0:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(log_file, mode="a", encoding="utf-8")
        file_handler.setFormatter(formatter)
        root.addHandler(file_handler)
