"""The training loop: :func:`train`, from a composed config to a trained model, its checkpoints
and its metrics, and :func:`train_step`, one optimiser step.

Iterations are counted as completed steps: a checkpoint with ``iteration=n`` holds the state
after ``n`` optimiser steps, and resuming from it continues with batch ``n`` of the sampler.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional

import torch
from omegaconf import DictConfig
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel

from frcnn.checkpoint.fit import load_checkpoint_weights
from frcnn.checkpoint.folder import CheckpointDir, load_resume_checkpoint
from frcnn.checkpoint.format import Checkpoint, TrainingState
from frcnn.config.schema import NonFinitePolicy, TrainConfig
from frcnn.data import build_train_loader
from frcnn.data.check import check_training_set
from frcnn.data.config import DatasetFormat
from frcnn.engine.distributed import (
    check_replicas_in_sync,
    destroy_distributed,
    init_distributed,
    shared_run_dir,
    stalled_rank_error,
)
from frcnn.engine.divergence import (
    DivergenceError,
    DivergenceGuard,
    LossSpikeError,
    NonFiniteLossError,
    check_weights,
    describe_step,
    gradient_norm,
)
from frcnn.engine.ema import build_ema, ema_weights, resume_ema
from frcnn.engine.events import TrainingEvents
from frcnn.engine.interrupt import StopRequest
from frcnn.engine.optim import build_lr_scheduler, build_optimizer, restore_schedule_position
from frcnn.engine.periodic_evaluation import EvaluationSplit, build_evaluation_split, evaluate
from frcnn.engine.resume import (
    ResumePoint,
    check_resumable,
    check_resume_config,
    save_run_overrides,
    saved_train_config,
)
from frcnn.engine.rng import get_rng_state, restore_rng_states, seed_everything
from frcnn.engine.run_folder import own_run_folder
from frcnn.engine.sync_bn import convert_sync_batchnorm
from frcnn.evaluation.best_metric import check_best_metric, is_better, metric_value
from frcnn.models import build_model, load_weights
from frcnn.models.faster_rcnn import LOSS_TERMS, model_inputs
from frcnn.models.finite import NonFiniteBoxError
from frcnn.utils.compile import compile_model
from frcnn.utils.device import autocast, autocast_dtype, resolve_device
from frcnn.utils.dist import (
    all_gather_object,
    all_reduce_any,
    all_reduce_mean,
    broadcast_buffers,
    get_rank,
    get_world_size,
    is_main_process,
    mark_collective,
)
from frcnn.utils.settings import plain, typed

log = logging.getLogger(__name__)


def train(
    cfg: TrainConfig | DictConfig,
    run_dir: Path,
    build: Callable[..., nn.Module] = build_model,
    overrides: Optional[list[str]] = None,
) -> Optional[dict]:
    """Train the detector described by ``cfg`` (the composed ``train.yaml``) in ``run_dir``; see
    :func:`run_training`. Returns the final metrics, or None when a signal stopped the run early
    or ``train.eval_at_end`` is false."""
    return run_training(cfg, run_dir, build, overrides).metrics


def check_train_config(cfg: TrainConfig | DictConfig) -> TrainConfig:
    """``cfg`` as training takes it: typed and every value in its range
    (:func:`frcnn.utils.settings.typed`), and ``train.best_metric`` a number the evaluations
    report. Raises ValueError naming the key."""
    cfg = typed(cfg, TrainConfig)
    check_best_metric(cfg.train.best_metric, cfg.train.val_loss)
    return cfg


@dataclass
class TrainingOutcome:
    """How a training ended: the final metrics (None without the final evaluation), the
    iteration reached, and whether a signal stopped it before ``train.max_iters``."""

    metrics: Optional[dict]
    iteration: int
    stopped: bool


def run_training(
    cfg: TrainConfig | DictConfig,
    run_dir: Path,
    build: Callable[..., nn.Module] = build_model,
    overrides: Optional[list[str]] = None,
    resume_from: Optional[ResumePoint] = None,
) -> TrainingOutcome:
    """Train the detector described by ``cfg`` (the composed ``train.yaml``, typed here once:
    :func:`frcnn.utils.settings.typed`) in ``run_dir``.

    ``build(cfg.model, num_classes)`` makes the model (another detector with frcnn's call
    contract may be trained by the same loop, e.g. the torchvision reference). ``overrides``: the
    command line's, saved for ``train.resume=auto`` once the run has started
    (:func:`frcnn.engine.resume.save_run_overrides`). ``resume_from``: the checkpoint
    ``train.resume=PATH`` names, already read (:func:`frcnn.engine.resume.config_to_resume`);
    None: :func:`restore` reads what ``train.resume`` names.

    The run owns ``run_dir`` (:func:`frcnn.engine.run_folder.own_run_folder`: one training at a
    time, no new run over a finished one). Writes ``checkpoints/``, ``tensorboard/``,
    ``losses.jsonl`` and, after the final evaluation, ``metrics.json`` under ``run_dir`` (rank 0
    only); the final ``last.pt`` is written before the final evaluation.
    """
    cfg = check_train_config(cfg)
    tc = cfg.train
    device = init_distributed(resolve_device(cfg.device), tc.dist_timeout)
    run_dir = shared_run_dir(run_dir)
    with own_run_folder(run_dir, tc.resume, tc.overwrite):
        seed_everything(cfg.seed + get_rank(), deterministic=tc.deterministic)
        if cfg.dataset.format == DatasetFormat.auto and cfg.dataset.split_file is None:
            # a validation split held out of the data is kept with the run (frcnn.data.holdout)
            cfg.dataset.split_file = str(run_dir / "dataset_split.json")
        # The test split first: for shapes it generates the data (safe from several processes).
        split = build_evaluation_split(cfg)
        checkpoints = CheckpointDir(run_dir / "checkpoints", tc.keep_checkpoints, writes=is_main_process())
        run, rng_states = build_training(cfg, build, split.dataset, device, checkpoints, resume_from)
        if overrides is not None and is_main_process():
            save_run_overrides(run_dir, overrides)
        return train_and_finish(run, split, checkpoints, rng_states, run_dir)


def train_and_finish(
    run: TrainingRun,
    split: EvaluationSplit,
    checkpoints: CheckpointDir,
    rng_states: Optional[list[dict[str, Any]]],
    run_dir: Path,
) -> TrainingOutcome:
    """The loop from ``run.iteration`` to ``train.max_iters`` (or a stop request), then
    :func:`finish`; an error on the way leaves the checkpoints committed so far."""
    tc = run.cfg.train
    events = TrainingEvents(
        run_dir,
        run.iteration,
        tc.max_iters,
        tc.log_period,
        enabled=is_main_process(),
        val_loss=split.val_loss,
        ema=run.ema is not None,
    )
    nonfinite = DivergenceGuard(tc.on_nonfinite, tc.max_nonfinite_steps, tc.divergence_factor, tc.divergence_steps)
    metrics, stopped = None, False
    try:
        with StopRequest() as stop:
            loader = build_train_loader(
                run.cfg.dataset, tc.batch_size, run.cfg.seed, start_iter=run.iteration, bucketed=run.cfg.compile
            )
            check_training_set(loader.dataset, run.cfg.dataset)  # no object at all: refused before any step
            batches = iter(loader)
            # Restored only now: starting the loader draws from the global RNG, as it did at the
            # start of the original run, not at the point where the checkpoint was taken.
            if rng_states is not None:
                restore_rng_states(rng_states, run.cfg.seed, run.iteration)
            stopped = train_loop(run, batches, stop, nonfinite, split, checkpoints, events)
            metrics = finish(run, split, checkpoints, events, run_dir, evaluate_at_end=tc.eval_at_end and not stopped)
    except DivergenceError as error:
        raise diverged(error, checkpoints) from None
    except RuntimeError as error:
        stalled = stalled_rank_error(error)
        if stalled is None:
            raise
        log.error("%s", stalled)
        raise stalled from error
    finally:
        checkpoints.discard()  # staged weights that no step has validated
        events.close()
        destroy_distributed()
    if is_main_process():
        log_summary(run, run_dir, checkpoints, metrics, nonfinite, stopped)
    return TrainingOutcome(metrics, run.iteration, stopped)


def train_loop(
    run: TrainingRun,
    batches: Iterator,
    stop: StopRequest,
    nonfinite: DivergenceGuard,
    split: EvaluationSplit,
    checkpoints: CheckpointDir,
    events: TrainingEvents,
) -> bool:
    """Steps until ``train.max_iters`` with the periodic checkpoints and evaluations; returns
    whether a stop request (SIGTERM/SIGINT on any process) ended it early.

    The request is checked after every step, on every process alike: a signal that arrives
    during a step stops the run once that step is done, before the next one starts.
    """
    tc = run.cfg.train
    run.trained.train()
    first = run.iteration + 1
    while run.iteration < tc.max_iters:
        started = time.perf_counter()
        train_iteration(run, batches, nonfinite, checkpoints, events)
        if run.cfg.compile and run.iteration == first and is_main_process():
            log.info("iteration %d took %.1f s with torch.compile's compilation", first, time.perf_counter() - started)
        if all_reduce_any(stop.requested, run.device):
            log.warning("stopping at iteration %d on request", run.iteration)
            return True
        if _due(run.iteration, tc.checkpoint_period, tc.max_iters):
            checkpoints.stage_last(run.checkpoint(), periodic=True)  # committed by the next finite step
        if _due(run.iteration, tc.eval_period, tc.max_iters):
            with evaluation_failure_kept(run, checkpoints):
                evaluate_and_track_best(run, split, checkpoints, events)
    return False


@dataclass
class TrainingRun:
    """What the loop carries from step to step: the model and its optimisation state, the
    exponential moving average of its weights (``train.ema_decay`` > 0), the iteration (completed
    steps) and the best value of ``train.best_metric`` so far."""

    cfg: TrainConfig
    model: nn.Module  # the detector, as checkpoints hold it
    trained: nn.Module  # what the steps run: ``model``, or its DistributedDataParallel wrapper
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    device: torch.device
    amp: Optional[torch.dtype]
    class_names: list[str]
    category_ids: list[int]
    iteration: int = 0
    best_metric: Optional[float] = None
    ema: Optional[AveragedModel] = None  # its ``module`` is the averaged detector

    def weights(self) -> Checkpoint:
        """The weights to deploy (``best.pt``), with their EMA: no optimiser, scheduler, scaler or
        RNG state."""
        return Checkpoint(model=self.model.state_dict(), iteration=self.iteration,
                          config=plain(self.cfg),
                          class_names=list(self.class_names), category_ids=list(self.category_ids),
                          best_metric=self.best_metric,
                          ema=ema_weights(self.ema) if self.ema is not None else None)  # fmt: skip

    def checkpoint(self) -> Checkpoint:
        """The whole training state. Collective (every rank's RNG state is gathered): call on
        every rank; rank 0 saves it."""
        training = TrainingState(
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            scaler=self.scaler.state_dict(),
            rng=all_gather_object(get_rng_state()),
        )
        return replace(self.weights(), training=training)


def build_training(
    cfg: TrainConfig,
    build: Callable[..., nn.Module],
    dataset,
    device: torch.device,
    checkpoints: CheckpointDir,
    resume_from: Optional[ResumePoint] = None,
) -> tuple[TrainingRun, Optional[list[dict[str, Any]]]]:
    """The model (``build(cfg.model, num_classes)``, then ``model.weights``; its trainable
    BatchNorm synchronised with ``train.sync_bn``), optimiser, LR schedule, loss scaler and, with
    ``train.ema_decay``, the EMA of the weights, for ``dataset``'s classes, continued from
    ``train.resume``'s checkpoint (:func:`restore`; ``resume_from`` when already read) and wrapped
    for DDP under torchrun. Returns the run and the checkpoint's per-rank RNG states (None for a
    fresh start): the caller restores them once the data loader has started."""
    tc = cfg.train
    amp = autocast_dtype(tc.amp, device)
    model = build(cfg.model, num_classes=len(dataset.class_names)).to(device)
    if cfg.model.weights:
        load_weights(model, cfg.model.weights)
    if tc.sync_bn:
        model = convert_sync_batchnorm(model, device)
    optimizer = build_optimizer(cfg.optimizer, model, tc.batch_size * get_world_size())
    run = TrainingRun(
        cfg,
        model,
        model,
        optimizer,
        build_lr_scheduler(cfg.schedule, optimizer, tc.max_iters),
        torch.amp.GradScaler(device.type, enabled=amp == torch.float16),
        device,
        amp,
        list(dataset.class_names),
        list(dataset.category_ids),
        # A copy of the eager model, never compiled: it only runs in the evaluations.
        ema=build_ema(model, tc.ema_decay, tc.ema_warmup_iters) if tc.ema_decay > 0 else None,
    )
    rng_states = restore(run, checkpoints, resume_from)
    if cfg.compile:  # in place, after the weights are loaded: checkpoints keep the eager keys
        compile_model(model)
    if get_world_size() > 1:  # wrapped after restoring: DDP starts from rank 0's weights
        run.trained = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    return run, rng_states


def restore(
    run: TrainingRun, checkpoints: CheckpointDir, resume_from: Optional[ResumePoint] = None
) -> Optional[list[dict[str, Any]]]:
    """Continue ``run`` from the checkpoint ``train.resume`` names (``resume_from`` when already
    read), if any: weights, their EMA, optimiser, LR schedule position, loss scale, iteration and
    best metric.
    Returns its per-rank RNG states (None for a fresh start). Raises ValueError for a weights-only
    checkpoint or a changed config."""
    tc = run.cfg.train
    checkpoints.remove_temporaries()
    if resume_from is not None:
        path, checkpoint = resume_from.path, resume_from.checkpoint
    else:
        path, checkpoint = load_resume_checkpoint(tc.resume, checkpoints, map_location=run.device)
    if path is None:
        if tc.resume == "auto":
            log.info("train.resume=auto: no checkpoint in %s, starting fresh", checkpoints.directory)
        return None
    check_resumable(path, checkpoint)
    check_resume_config(checkpoint.config, run.cfg, path)
    load_checkpoint_weights(run.model, checkpoint, str(path), run.cfg.model, len(run.class_names))
    resume_ema(run.ema, checkpoint, path)
    run.optimizer.load_state_dict(checkpoint.training.optimizer)
    restore_schedule_position(run.scheduler, checkpoint.training.scheduler)
    run.scaler.load_state_dict(checkpoint.training.scaler)
    run.iteration, run.best_metric = checkpoint.iteration, checkpoint.best_metric
    if saved_train_config(checkpoint.config, path).train.best_metric != tc.best_metric:
        run.best_metric = None  # the recorded best is another number: best.pt follows the new one from here
    checkpoints.resumed_at(run.iteration)
    log.info("resumed from %s at iteration %d", path, run.iteration)
    return checkpoint.training.rng


def train_iteration(
    run: TrainingRun,
    batches: Iterator,
    nonfinite: DivergenceGuard,
    checkpoints: CheckpointDir,
    events: TrainingEvents,
) -> StepResult:
    """Iteration ``run.iteration + 1``: the next batch, one optimiser step, the LR schedule's step
    and the record of it all. A step that computed finite, in-range gradients commits the staged
    checkpoint: its weights have taken a step (a spike holds it until a step is back in range)."""
    t0 = time.perf_counter()
    batch = next(batches).to(run.device, non_blocking=True)
    data_time = time.perf_counter() - t0
    lr = run.scheduler.get_last_lr()[0]
    step = train_step(
        run.trained,
        batch,
        run.optimizer,
        run.scaler,
        run.amp,
        run.cfg.train.clip_grad_norm,
        run.iteration + 1,
        nonfinite,
    )
    run.scheduler.step()
    run.iteration += 1
    if run.ema is not None and not step.dropped:
        # After a step that fp16 loss scaling skipped (an overflowing gradient), the weights are
        # unchanged and this update only moves the average towards them: as rare as harmless.
        run.ema.update_parameters(run.model)
    if step.spike is not None:
        log.warning(
            "iteration %d: update dropped: %s (%d of train.divergence_steps=%d in a row)",
            run.iteration,
            step.spike,
            nonfinite.spikes_in_a_row,
            nonfinite.spike_steps,
        )
    elif step.dropped:
        log.warning(
            "iteration %d: update dropped (train.on_nonfinite=skip, %d in a row, %d in all): %s",
            run.iteration,
            nonfinite.in_a_row,
            nonfinite.total,
            describe_step(run.iteration, step.losses, step.grad_norm),
        )
    else:
        checkpoints.commit()
    max_memory_mb = torch.cuda.max_memory_allocated(run.device) / 2**20 if run.device.type == "cuda" else None
    events.iteration(
        run.iteration, step.losses, lr, time.perf_counter() - t0, data_time, max_memory_mb, grad_norm=step.grad_norm
    )
    return step


def evaluate_and_track_best(
    run: TrainingRun, split: EvaluationSplit, checkpoints: CheckpointDir, events: TrainingEvents
) -> dict:
    """Evaluate the model on the test split (on every rank) and return the metrics.json dict; a
    new best value of ``train.best_metric`` writes ``best.pt``.

    With ``train.ema_decay``, the EMA weights are evaluated too: their metrics are the dict's
    ``"ema"`` entry, and ``best.pt`` follows their value (inference loads them)."""
    tc = run.cfg.train
    val_loss_seed = run.cfg.seed if split.val_loss else None

    def scored(model: nn.Module, ema: bool = False) -> dict:
        return evaluate(model, split.evaluator, split.loader, run.device, run.amp, tc.vis_images, run.iteration,
                        events, val_loss_seed=val_loss_seed, ema=ema, analysis=split.analysis)  # fmt: skip

    broadcast_buffers(run.model)
    metrics = tracked = scored(run.model)
    if run.ema is not None:
        broadcast_buffers(run.ema.module)  # each rank averaged its own BatchNorm statistics
        tracked = scored(run.ema.module, ema=True)
        metrics = {**metrics, "ema": tracked}
    value = metric_value(tracked, tc.best_metric)
    if is_better(value, run.best_metric, tc.best_metric):  # alike on every rank
        run.best_metric = value
        checkpoints.save_best(run.weights())
        if is_main_process():
            log.info("best %s so far (%.4f): %s", tc.best_metric, value, checkpoints.best)
    return metrics


def finish(
    run: TrainingRun,
    split: EvaluationSplit,
    checkpoints: CheckpointDir,
    events: TrainingEvents,
    run_dir: Path,
    evaluate_at_end: bool,
) -> Optional[dict]:
    """After the last iteration (or a stop request): ``last.pt`` first, so that a failing
    evaluation loses no training; then, under torchrun, the check that every replica holds the
    same weights; then the final evaluation (``evaluate_at_end``), ``best.pt`` and
    ``metrics.json``. Returns the final metrics (None without the evaluation)."""
    broadcast_buffers(run.model)
    if run.ema is not None:  # each rank averaged its own BatchNorm statistics: rank 0's are saved
        broadcast_buffers(run.ema.module)
    checkpoint = run.checkpoint()
    checkpoints.commit()
    periodic = run.iteration % run.cfg.train.checkpoint_period == 0
    checkpoints.save_last(checkpoint, periodic=periodic)
    if get_world_size() > 1:
        check_replicas_in_sync(run.model)
    if not evaluate_at_end:
        return None
    with evaluation_failure_kept(run, checkpoints):
        metrics = evaluate_and_track_best(run, split, checkpoints, events)
    if run.best_metric != checkpoint.best_metric:  # last.pt records the best so far, for a longer resumed run
        checkpoints.save_last(replace(checkpoint, best_metric=run.best_metric))
    if is_main_process():
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


@contextmanager
def evaluation_failure_kept(run: TrainingRun, checkpoints: CheckpointDir) -> Iterator[None]:
    """On an error in an evaluation (a test image that cannot be read, out of memory...): commit
    the staged checkpoint (its weights are finite; the evaluation, not they, failed), log one line
    with the cause and how to redo the scoring, and re-raise. The run can be resumed."""
    try:
        yield
    except DivergenceError:
        raise
    except Exception as error:
        checkpoints.commit()
        cause = " ".join(str(error).split()) or type(error).__name__
        last = checkpoints.last if checkpoints.saved_at is not None else None
        kept = (
            f"the training is saved in {last} (iteration {checkpoints.saved_at}): score it with python "
            f"scripts/evaluate.py checkpoint={last}, or continue with train.resume=auto"
            if last is not None
            else "no checkpoint was written yet"
        )
        log.error("evaluation at iteration %d failed (%s); %s", run.iteration, cause, kept)
        raise


def diverged(error: DivergenceError, checkpoints: CheckpointDir) -> DivergenceError:
    """``error`` (of the same type) saying what the run kept and how to continue; logged."""
    error = type(error)(
        f"training diverged: {error}. Stopped before saving anything of it: {checkpoints.kept()}. "
        + (
            "Lower optimizer.base_lr or set train.clip_grad_norm"
            if isinstance(error, LossSpikeError)
            else "Lower optimizer.base_lr, set train.clip_grad_norm, or pass train.on_nonfinite=skip"
        )
    )
    log.error("%s", error)
    return error


def log_summary(
    run: TrainingRun,
    run_dir: Path,
    checkpoints: CheckpointDir,
    metrics: Optional[dict],
    nonfinite: DivergenceGuard,
    stopped: bool,
) -> None:
    """Where the run's outputs are, dropped updates, and how to continue a stopped run."""
    log.info("TensorBoard logs: %s (view: tensorboard --logdir %s)", run_dir / "tensorboard", run_dir / "tensorboard")
    log.info("checkpoints: %s", checkpoints.directory)
    if metrics is not None:
        ema = f", EMA weights {metrics['ema']['voc07']['mAP']:.4f}" if "ema" in metrics else ""
        log.info("metrics: %s (VOC07 mAP@0.5 %.4f%s)", run_dir / "metrics.json", metrics["voc07"]["mAP"], ema)
    if nonfinite.total:
        log.warning("%d updates dropped for a non-finite loss or gradient (train.on_nonfinite=skip)", nonfinite.total)
    if nonfinite.total_spikes:
        log.warning("%d updates dropped as spikes (train.divergence_factor)", nonfinite.total_spikes)
    if stopped:
        log.info(
            "stopped at iteration %d of %d; continue with: python scripts/train.py train.resume=auto "
            "hydra.run.dir=%s [same overrides]",
            run.iteration,
            run.cfg.train.max_iters,
            run_dir,
        )


def _due(iteration: int, period: int, max_iters: int) -> bool:
    """Whether a periodic action (checkpoint, evaluation; ``period`` 0: never) falls on
    ``iteration``; the last iteration has its own, in :func:`finish`."""
    return period > 0 and iteration % period == 0 and iteration < max_iters


@dataclass
class StepResult:
    """What one training step reports: the loss terms and their sum (``"total"``), averaged
    over all processes; the total gradient norm (None when no backward pass ran); whether the
    update was dropped (``train.on_nonfinite=skip``, or a spike); why the step was a spike (its loss or
    gradient norm far above their recent medians), or None."""

    losses: dict[str, float]
    grad_norm: Optional[float]
    dropped: bool = False
    spike: Optional[str] = None


def train_step(
    model: nn.Module,
    batch,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    amp: Optional[torch.dtype],
    clip_grad_norm: Optional[float],
    iteration: int,
    nonfinite: Optional[DivergenceGuard] = None,
) -> StepResult:
    """One optimiser step on ``batch`` (iteration number ``iteration``, counted from 1).

    A compiled model gets its inputs as tensors (:func:`model_inputs`).

    A non-finite loss term (checked before the backward pass) or gradient norm (before the
    update), or a spike (a total loss or gradient norm far above its recent median), goes to
    ``nonfinite`` (default: stop), alike on every process: the losses are reduced over all of them
    and DDP's gradients are identical. Raises :class:`DivergenceError` when the update leaves a
    non-finite weight or optimiser state.
    """
    nonfinite = nonfinite or DivergenceGuard(NonFinitePolicy.stop, 1)
    device = batch.images.device
    try:
        with autocast(device, amp):
            loss_dict = model(batch.images, *model_inputs(model, batch.image_sizes, batch.targets, device))
        total = sum(loss_dict.values())
        terms = [t.detach().float() for t in (*loss_dict.values(), total)]
        names, cause = list(loss_dict), ""
    except NonFiniteBoxError as error:  # reported like a non-finite loss, on every process alike
        names, cause = list(LOSS_TERMS), f" ({error})"
        terms = [torch.tensor(torch.nan, device=device)] * (len(names) + 1)
    # The rank-mean of every term, for logging and the finite check (alike on every process).
    values = dict(zip([*names, "total"], all_reduce_mean(torch.stack(terms)).tolist()))
    if not all(math.isfinite(v) for v in values.values()):
        nonfinite.nonfinite(NonFiniteLossError(f"non-finite loss at {describe_step(iteration, values, None)}{cause}"))
        return StepResult(values, None, dropped=True)

    optimizer.zero_grad(set_to_none=True)
    mark_collective()  # DDP all-reduces the gradients during the backward pass
    scaler.scale(total).backward()
    scaler.unscale_(optimizer)  # the norm (and the clipping) of the true gradients, not the loss-scaled ones
    params = [p for group in optimizer.param_groups for p in group["params"]]
    norm = gradient_norm(params)
    if clip_grad_norm is not None:
        torch.nn.utils.clip_grads_with_norm_(params, clip_grad_norm, norm)
    grad_norm = norm.item()
    # Under fp16 loss scaling an overflowing gradient is routine: the scaler skips that update and
    # lowers the scale. Otherwise it means divergence.
    if not math.isfinite(grad_norm) and not scaler.is_enabled():
        nonfinite.nonfinite(DivergenceError(f"non-finite gradient at {describe_step(iteration, values, grad_norm)}"))
        optimizer.zero_grad(set_to_none=True)
        return StepResult(values, grad_norm, dropped=True)
    spike = nonfinite.spike(values["total"], grad_norm) if math.isfinite(grad_norm) else None
    if spike is not None:  # a finite explosion: its gradient would ruin the weights
        nonfinite.spiked(DivergenceError(f"{spike} at {describe_step(iteration, values, grad_norm)}"))
        optimizer.zero_grad(set_to_none=True)
        return StepResult(values, grad_norm, dropped=True, spike=spike)
    scaler.step(optimizer)
    scaler.update()
    check_weights(iteration, values, grad_norm, model, optimizer)
    nonfinite.finite(values["total"], grad_norm)
    return StepResult(values, grad_norm)
