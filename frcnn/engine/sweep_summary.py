"""A multirun's results in one table: ``summary.csv`` and ``summary.md`` in the sweep folder.

:class:`SweepSummary` is a Hydra callback (``hydra.callbacks`` in ``configs/train.yaml``): when
``scripts/train.py -m ...`` has run every job, it reads each job folder's
``.hydra/overrides.yaml`` and ``metrics.json`` and writes one row per job: the job number, its
overrides and its final metrics (empty when the job wrote none, e.g. it stopped early).
"""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

METRICS = (("voc07_mAP", ("voc07", "mAP")), ("voc_mAP", ("voc", "mAP")), ("coco_AP", ("coco", "AP")),
           ("coco_AP50", ("coco", "AP50")), ("val_loss", ("val_loss", "total")))  # fmt: skip


def job_row(job_dir: Path) -> dict[str, Any]:
    """One job's row: ``job``, ``overrides`` (space-separated) and the metrics named in METRICS."""
    overrides = list(OmegaConf.load(job_dir / ".hydra" / "overrides.yaml"))
    row: dict[str, Any] = {"job": job_dir.name, "overrides": " ".join(overrides)}
    metrics_file = job_dir / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    for column, (section, key) in METRICS:
        value = metrics.get(section, {}).get(key)
        row[column] = "" if value is None else round(float(value), 4)
    return row


def sweep_rows(sweep_dir: Path) -> list[dict[str, Any]]:
    """The rows of every job folder (one holding ``.hydra/overrides.yaml``), in job order."""
    jobs = [p.parent.parent for p in sweep_dir.glob("*/.hydra/overrides.yaml")]
    # job folders are numbered (hydra.sweep.subdir: ${hydra.job.num}): 0, 1, ..., 10 in number order
    return [job_row(job) for job in sorted(jobs, key=lambda p: (len(p.name), p.name))]


def write_summary(sweep_dir: Path) -> list[dict[str, Any]]:
    """Write ``summary.csv`` and ``summary.md`` (a Markdown table) into ``sweep_dir``; return the rows."""
    rows = sweep_rows(sweep_dir)
    columns = ["job", "overrides", *(name for name, _ in METRICS)]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    (sweep_dir / "summary.csv").write_text(text.getvalue())
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row[c]) for c in columns) + " |" for row in rows]
    (sweep_dir / "summary.md").write_text("\n".join(lines) + "\n")
    return rows


class SweepSummary(Callback):
    """Hydra callback: :func:`write_summary` of the sweep folder at the end of a multirun."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        rows = write_summary(sweep_dir)
        log.info("sweep summary of %d jobs: %s", len(rows), sweep_dir / "summary.md")
        print((sweep_dir / "summary.md").read_text(), end="")
