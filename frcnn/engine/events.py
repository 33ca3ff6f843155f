"""What a training run reports while it runs (rank 0 only): TensorBoard scalars and images,
``losses.jsonl`` (exact per-log-period values, one JSON object a line: ``loss/<term>``, ``lr`` and
times, ``grad_norm``, or after an evaluation ``val_loss/<term>``, and ``val_loss_ema/<term>`` for the
EMA weights), log lines with an ETA and, on a terminal, a progress bar.
"""

import json
import logging
from collections import deque
from pathlib import Path
from statistics import median
from typing import Optional

import torch
from torch.utils.tensorboard import SummaryWriter

from frcnn.evaluation.tensorboard import add_pr_curves, log_analysis, log_metrics
from frcnn.models.faster_rcnn import LOSS_TERMS
from frcnn.utils.progress import eta_text, progress_bar

log = logging.getLogger(__name__)


class SmoothedValue:
    """Median over a sliding window, for noisy per-iteration numbers on the progress bar."""

    def __init__(self, window: int = 20):
        self.values: deque[float] = deque(maxlen=window)

    def update(self, value: float) -> None:
        self.values.append(value)

    @property
    def median(self) -> float:
        return median(self.values)


def records_up_to(path: Path, iteration: int) -> list[str]:
    """The lines of ``losses.jsonl`` recorded at or before ``iteration``.

    A last line cut short (the process was killed while writing it) is dropped with a warning;
    an unreadable line elsewhere raises ValueError naming the file and the line.
    """
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    kept = []
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
            recorded_at = record["iteration"]
        except (json.JSONDecodeError, TypeError, KeyError) as error:
            if number == len(lines):
                log.warning("%s: dropping the incomplete last line %d (%s)", path, number, error)
                break
            raise ValueError(
                f"{path}: line {number} is not a losses record ({error}); remove the line to resume"
            ) from None
        if recorded_at <= iteration:
            kept.append(line)
    return kept


class TrainingEvents:
    """Sink of the training scalars and evaluation results of one run.

    On processes other than rank 0 (``enabled=False``) every method does nothing, so the loop
    calls them unconditionally.
    """

    def __init__(
        self,
        run_dir: Path,
        start_iter: int,
        max_iters: int,
        log_period: int,
        enabled: bool = True,
        val_loss: bool = False,
        ema: bool = False,
    ):
        self.enabled = enabled
        self.log_period = log_period
        self.smoothed: dict[str, SmoothedValue] = {}
        if not enabled:
            return
        # A run first drops what an earlier start in this folder recorded after its own starting
        # point (a resumed run: after its checkpoint; a fresh start: everything), so that every
        # iteration appears once (TensorBoard: purge_step; losses.jsonl: rewritten).
        self.writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=start_iter + 1)
        if val_loss:  # the CUSTOM SCALARS tab: each training loss term on one chart with its validation value(s)
            prefixes = ["loss", "val_loss"] + (["val_loss_ema"] if ema else [])
            self.writer.add_custom_scalars(
                {"loss": {t: ["Multiline", [f"{p}/{t}" for p in prefixes]] for t in (*LOSS_TERMS, "total")}}
            )
        jsonl_path = run_dir / "losses.jsonl"
        if jsonl_path.exists():
            kept = records_up_to(jsonl_path, start_iter)
            jsonl_path.write_text("".join(line + "\n" for line in kept))
        # Open for the whole run (written every log period), closed by close().
        self.jsonl = open(jsonl_path, "a", encoding="utf-8")  # noqa: SIM115
        # Off a terminal the log lines below (with their ETA) are the progress report.
        self.bar = progress_bar(max_iters, "train", "it", start_iter, log_every_s=None, smoothing=0.1)
        self.max_iters = max_iters

    def iteration(
        self,
        iteration: int,
        losses: dict[str, float],
        lr: float,
        iter_time: float,
        data_time: float,
        max_memory_mb: Optional[float] = None,
        grad_norm: Optional[float] = None,
    ) -> None:
        """Record one finished iteration (``iteration`` = number of iterations done so far);
        ``grad_norm``: the total L2 norm of the gradients before clipping (None: no backward pass)."""
        if not self.enabled:
            return
        scalars = {f"loss/{k}": v for k, v in losses.items()}
        scalars.update({"lr": lr, "time/iter": iter_time, "time/data": data_time})
        if grad_norm is not None:
            scalars["grad_norm"] = grad_norm
        if max_memory_mb is not None:
            scalars["memory/max_allocated_mb"] = max_memory_mb
        for name, value in scalars.items():
            self.smoothed.setdefault(name, SmoothedValue()).update(value)
        self.bar.update(1)
        self.bar.set_postfix_str(
            ", ".join([f"{k}={self.smoothed['loss/' + k].median:.3f}" for k in losses] + [f"lr={lr:.2e}"]),
            refresh=False,
        )
        if iteration % self.log_period == 0:
            for name, value in scalars.items():
                self.writer.add_scalar(name, value, iteration)
            self.jsonl.write(json.dumps({"iteration": iteration, **scalars}) + "\n")
            self.jsonl.flush()
            smoothed = ", ".join(f"{name}={self.smoothed[name].median:.4g}" for name in scalars if name != "lr")
            eta = eta_text(iteration, self.max_iters, self.smoothed["time/iter"].median)
            log.info(
                "iter %d/%d: lr=%.4g, %s (medians over the last %d iterations), %s",
                iteration,
                self.max_iters,
                lr,
                smoothed,
                len(self.smoothed["lr"].values),
                eta,
            )

    def evaluation(
        self, iteration: int, metrics: dict, pr_curves: list, class_names: list[str], images: list[torch.Tensor]
    ) -> None:
        """Record an evaluation: mAPs, COCO numbers, per-class AP, per-class PR curves
        (``DetectionEvaluator.pr_curves``) and drawn test images (uint8 ``[3, H, W]``)."""
        if not self.enabled:
            return
        log_metrics(self.writer, metrics, iteration)
        self._val_loss_record(iteration, metrics, "val_loss")
        add_pr_curves(self.writer, pr_curves, class_names, iteration)
        for i, image in enumerate(images):
            self.writer.add_image(f"predictions/{i}", image, iteration)
        self.writer.flush()

    def analysis(self, iteration: int, analysis: dict) -> None:
        """Record an evaluation's error analysis (``analysis/*``: :func:`log_analysis`)."""
        if not self.enabled:
            return
        log_analysis(self.writer, analysis, iteration)
        self.writer.flush()

    def ema_evaluation(self, iteration: int, metrics: dict) -> None:
        """Record the evaluation of the EMA weights: the scalars of :meth:`evaluation` under
        ``eval_ema/*`` and ``eval_ema_AP/<class>``, the validation loss under ``val_loss_ema/<term>``."""
        if not self.enabled:
            return
        log_metrics(self.writer, {k: v for k, v in metrics.items() if k != "val_loss"}, iteration, prefix="eval_ema")
        for term, value in metrics.get("val_loss", {}).items():
            self.writer.add_scalar(f"val_loss_ema/{term}", value, iteration)
        self._val_loss_record(iteration, metrics, "val_loss_ema")
        self.writer.flush()

    def _val_loss_record(self, iteration: int, metrics: dict, prefix: str) -> None:
        """A losses.jsonl line of the validation loss terms, if ``metrics`` has them."""
        if "val_loss" in metrics:
            terms = {f"{prefix}/{k}": v for k, v in metrics["val_loss"].items()}
            self.jsonl.write(json.dumps({"iteration": iteration, **terms}) + "\n")
            self.jsonl.flush()

    def close(self) -> None:
        if not self.enabled:
            return
        self.bar.close()
        self.writer.close()
        self.jsonl.close()
