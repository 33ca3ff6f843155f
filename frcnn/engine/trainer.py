"""The training loop: one plain function, :func:`train`, from a composed config to a trained
model, its checkpoints and its metrics.

Iterations are counted as completed steps: a checkpoint with ``iteration=n`` holds the state
after ``n`` optimiser steps, and resuming from it continues with batch ``n`` of the sampler.
"""

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from omegaconf import DictConfig, OmegaConf
from torch.nn.parallel import DistributedDataParallel

from frcnn.config.compose import check_train_config
from frcnn.data import build_test_loader, build_train_loader
from frcnn.engine import distributed as du
from frcnn.utils import dist as dist_utils
from frcnn.evaluation.best_metric import is_better, metric_value
from frcnn.checkpoint.io import CheckpointDir, load_resume_checkpoint
from frcnn.engine.divergence import (
    DivergenceError,
    NonFiniteLossError,
    NonFiniteSteps,
    check_weights,
    describe_step,
    gradient_norm,
)
from frcnn.engine.periodic_evaluation import evaluate
from frcnn.config.schema import NonFinitePolicy
from frcnn.engine.events import TrainingEvents
from frcnn.engine.interrupt import StopRequest
from frcnn.engine.optim import build_lr_scheduler, build_optimizer, restore_schedule_position
from frcnn.engine.resume import check_resume_config
from frcnn.engine.rng import get_rng_state, seed_everything, set_rng_state
from frcnn.evaluation import DetectionEvaluator
from frcnn.evaluation.val_loss import LOSS_TERMS, has_annotations
from frcnn.models import build_model, load_weights
from frcnn.checkpoint.fit import load_checkpoint_weights
from frcnn.models.finite import NonFiniteBoxError
from frcnn.utils.device import autocast_dtype, resolve_device

log = logging.getLogger(__name__)


def _plain(value: Any) -> Any:
    """An Enum config value as its string."""
    return getattr(value, "value", value)


def _shared_run_dir(run_dir: Path) -> Path:
    """Rank 0's run directory, on every rank.

    Each torchrun process composes its own config, and Hydra's time-stamped run directories
    differ by microseconds; all ranks adopt rank 0's (a multi-node resume needs it on a shared
    file system), and a rank's own directory is removed if it is empty.
    """
    shared = Path(dist_utils.all_gather_object(str(run_dir))[0])
    if shared != run_dir and run_dir.is_dir() and not any(run_dir.iterdir()):
        run_dir.rmdir()
    return shared


@dataclass
class StepResult:
    """What one training step reports: the loss terms and their sum (``"total"``), averaged
    over all processes; the total gradient norm (None when no backward pass ran); whether any
    process asked to stop; whether the update was dropped (``train.on_nonfinite=skip``)."""

    losses: dict[str, float]
    grad_norm: Optional[float]
    stop_requested: bool
    dropped: bool = False


def train_step(model: torch.nn.Module, batch, optimizer: torch.optim.Optimizer,
               scaler: torch.amp.GradScaler, amp: Optional[torch.dtype],
               clip_grad_norm: Optional[float], stop_requested: bool,
               iteration: int, nonfinite: Optional[NonFiniteSteps] = None) -> StepResult:
    """One optimiser step on ``batch`` (iteration number ``iteration``, counted from 1).

    A non-finite loss term (checked before the backward pass) or gradient norm (before the
    update) goes to ``nonfinite`` (default: stop), alike on every process: the losses are
    reduced over all of them and DDP's gradients are identical. Raises :class:`DivergenceError`
    when the update leaves a non-finite weight or optimiser state.
    """
    nonfinite = nonfinite or NonFiniteSteps(NonFinitePolicy.stop, 1)
    device = batch.images.device
    try:
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            loss_dict = model(batch.images, batch.image_sizes, batch.targets)
        total = sum(loss_dict.values())
        terms = [t.detach().float() for t in (*loss_dict.values(), total)]
        names, cause = list(loss_dict), ""
    except NonFiniteBoxError as error:  # reported like a non-finite loss, on every process alike
        names, cause = list(LOSS_TERMS), f" ({error})"
        terms = [torch.tensor(torch.nan, device=device)] * (len(names) + 1)
    # One collective per step: the rank-mean of every term (for logging and the finite check)
    # and the stop flag, so that all processes stop at the same iteration.
    reduced = dist_utils.all_reduce_mean(torch.stack(terms + [torch.tensor(float(stop_requested), device=device)])).tolist()
    values = dict(zip([*names, "total"], reduced[:-1]))
    stop_everywhere = reduced[-1] > 0
    if not all(math.isfinite(v) for v in values.values()):
        nonfinite.nonfinite(NonFiniteLossError(f"non-finite loss at {describe_step(iteration, values, None)}{cause}"))
        return StepResult(values, None, stop_everywhere, dropped=True)

    optimizer.zero_grad(set_to_none=True)
    dist_utils.mark_collective()  # DDP all-reduces the gradients during the backward pass
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
        return StepResult(values, grad_norm, stop_everywhere, dropped=True)
    scaler.step(optimizer)
    scaler.update()
    check_weights(iteration, values, grad_norm, model, optimizer)
    nonfinite.finite()
    return StepResult(values, grad_norm, stop_everywhere)


def _restore_rng(rng_states: list[dict], seed: int, iteration: int) -> None:
    """Set this rank's RNG state from a checkpoint's per-rank list (reseed if the world size changed)."""
    rank, world_size = dist_utils.get_rank(), dist_utils.get_world_size()
    if len(rng_states) == world_size:
        set_rng_state(rng_states[rank])
    else:
        log.warning("the checkpoint holds the RNG states of %d processes, this run has %d: reseeding "
                    "(the losses will not repeat the original run's)", len(rng_states), world_size)
        seed_everything(seed + rank + iteration)


def train(cfg: DictConfig, run_dir: Path, build: Callable[..., torch.nn.Module] = build_model) -> Optional[dict]:
    """Train the detector described by ``cfg`` (the composed ``train.yaml``) in ``run_dir``.

    ``build(cfg.model, num_classes)`` makes the model (another detector with frcnn's call
    contract may be trained by the same loop, e.g. the torchvision reference).

    Writes ``checkpoints/``, ``tensorboard/``, ``losses.jsonl`` and, after the final
    evaluation, ``metrics.json`` under ``run_dir`` (rank 0 only). Returns the final metrics,
    or None when a signal stopped the run early or ``train.eval_at_end`` is false.
    """
    check_train_config(cfg)
    tc = cfg.train
    device = du.init_distributed(resolve_device(_plain(cfg.device)), tc.dist_timeout)
    rank, world_size, main = dist_utils.get_rank(), dist_utils.get_world_size(), dist_utils.is_main_process()
    run_dir = _shared_run_dir(run_dir)
    seed_everything(cfg.seed + rank, deterministic=tc.deterministic)
    amp = autocast_dtype(_plain(tc.amp), device)

    # The test loader first: for shapes it generates the data (safe from several processes).
    test_loader = build_test_loader(cfg.dataset, tc.eval_batch_size)
    test_set = test_loader.dataset
    evaluator = DetectionEvaluator(test_set, coco_backend=_plain(cfg.evaluation.coco_backend))
    val_loss = tc.val_loss and has_annotations(test_set)
    if tc.val_loss and not val_loss:
        log.warning("train.val_loss: the test split has no annotated objects, no validation loss")
    model = build(cfg.model, num_classes=len(test_set.class_names)).to(device)
    if cfg.model.weights:
        load_weights(model, cfg.model.weights)
    optimizer = build_optimizer(cfg.optimizer, model, tc.batch_size * world_size)
    scheduler = build_lr_scheduler(cfg.schedule, optimizer, tc.max_iters)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    checkpoints = CheckpointDir(run_dir / "checkpoints", tc.keep_checkpoints)

    # saved_at: the iteration of the newest checkpoint; staged_at: of the newest one written, which
    # becomes a checkpoint once the next step computed finite gradients from its weights.
    iteration, best_metric, rng_states, saved_at, staged_at = 0, None, None, None, None
    if main:
        checkpoints.remove_temporaries()
    resume_path, state = load_resume_checkpoint(tc.resume, run_dir, map_location=device)
    if resume_path is not None:
        if "optimizer" not in state:
            raise ValueError(f"train.resume={resume_path}: it holds model weights only (as best.pt does); resume "
                             f"from last.pt or a periodic checkpoint, or fine-tune with model.weights={resume_path}")
        check_resume_config(state["config"], cfg, resume_path)
        load_checkpoint_weights(model, state, str(resume_path), cfg.model, len(test_set.class_names))
        optimizer.load_state_dict(state["optimizer"])
        restore_schedule_position(scheduler, state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        iteration, best_metric = state["iteration"], state["best_metric"]
        if state["config"]["train"].get("best_metric", "voc07/mAP") != tc.best_metric:
            best_metric = None  # the recorded best is another number: best.pt follows the new one from here
        rng_states = state["rng"]
        saved_at = staged_at = iteration
        log.info("resumed from %s at iteration %d", resume_path, iteration)
    elif tc.resume == "auto":
        log.info("train.resume=auto: no checkpoint in %s, starting fresh", checkpoints.directory)

    def training_state() -> dict[str, Any]:
        # Collective (every rank's RNG state is gathered): call on all ranks, save on rank 0.
        return {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                "iteration": iteration, "rng": dist_utils.all_gather_object(get_rng_state()),
                "config": OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),
                "class_names": list(test_set.class_names),
                "category_ids": list(test_set.category_ids), "best_metric": best_metric}

    def run_evaluation() -> dict:
        nonlocal best_metric
        dist_utils.broadcast_buffers(model)
        metrics = evaluate(model, evaluator, test_loader, device, amp, tc.vis_images, iteration, events,
                           val_loss_seed=cfg.seed if val_loss else None)
        value = metric_value(metrics, tc.best_metric)
        if is_better(value, best_metric, tc.best_metric):  # alike on every rank
            best_metric = value
            if main:  # the weights to deploy, not a training state: no optimiser, scheduler or RNG
                checkpoints.save_best({
                    "model": model.state_dict(), "iteration": iteration,
                    "config": OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),
                    "class_names": list(test_set.class_names), "category_ids": list(test_set.category_ids),
                    "best_metric": best_metric})
                log.info("best %s so far (%.4f): %s", tc.best_metric, best_metric, checkpoints.best)
        return metrics

    ddp_model = model if world_size == 1 else DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None)
    events = TrainingEvents(run_dir, iteration, tc.max_iters, tc.log_period, enabled=main, val_loss=val_loss)
    metrics, stopped = None, False
    nonfinite = NonFiniteSteps(tc.on_nonfinite, tc.max_nonfinite_steps)
    try:
        with StopRequest() as stop:
            batches = iter(build_train_loader(cfg.dataset, tc.batch_size, cfg.seed, start_iter=iteration))
            # Restored only now: starting the loader draws from the global RNG, as it did at the
            # start of the original run, not at the point where the checkpoint was taken.
            if rng_states is not None:
                _restore_rng(rng_states, cfg.seed, iteration)
            ddp_model.train()
            while iteration < tc.max_iters:
                t0 = time.perf_counter()
                batch = next(batches).to(device, non_blocking=True)
                data_time = time.perf_counter() - t0
                lr = scheduler.get_last_lr()[0]
                step = train_step(ddp_model, batch, optimizer, scaler, amp, tc.clip_grad_norm,
                                  stop.requested, iteration + 1, nonfinite)
                scheduler.step()
                iteration += 1
                if not step.dropped:  # the staged checkpoint's weights produced finite gradients
                    if main:
                        checkpoints.commit()
                    saved_at = staged_at
                else:
                    log.warning("iteration %d: update dropped (train.on_nonfinite=skip, %d in a row, %d in all): %s",
                                iteration, nonfinite.in_a_row, nonfinite.total,
                                describe_step(iteration, step.losses, step.grad_norm))

                events.iteration(iteration, step.losses, lr, time.perf_counter() - t0, data_time,
                                 torch.cuda.max_memory_allocated(device) / 2**20
                                 if device.type == "cuda" else None, grad_norm=step.grad_norm)
                if step.stop_requested:
                    stopped = True
                    log.warning("stopping at iteration %d on request", iteration)
                    break
                if iteration % tc.checkpoint_period == 0 and iteration < tc.max_iters:
                    state = training_state()
                    if main:
                        checkpoints.stage_last(state, periodic=True)
                    staged_at = iteration
                if tc.eval_period > 0 and iteration % tc.eval_period == 0 and iteration < tc.max_iters:
                    run_evaluation()

            if not stopped and tc.eval_at_end:
                metrics = run_evaluation()
            dist_utils.broadcast_buffers(model)
            state = training_state()
            if main:
                checkpoints.commit()
                checkpoints.save_last(state, periodic=iteration % tc.checkpoint_period == 0)
                if metrics is not None:
                    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
            if world_size > 1:
                du.check_replicas_in_sync(model)
    except DivergenceError as e:
        kept = (f"{checkpoints.last} (iteration {saved_at}) is the last checkpoint" if saved_at is not None
                else "no checkpoint was written")
        if staged_at != saved_at:
            kept += f" (the one of iteration {staged_at} was discarded: its weights fail a step)"
        error = type(e)(f"training diverged: {e}. Stopped before saving anything of it: {kept}. Lower "
                        f"optimizer.base_lr, set train.clip_grad_norm, or pass train.on_nonfinite=skip")
        log.error("%s", error)
        raise error from None
    except RuntimeError as e:
        stalled = du.stalled_rank_error(e)
        if stalled is None:
            raise
        log.error("%s", stalled)
        raise stalled from e
    finally:
        if main:
            checkpoints.discard()  # staged weights that no step has validated
        events.close()
        du.destroy_distributed()

    if main:
        log.info("TensorBoard logs: %s (view: tensorboard --logdir %s)",
                 run_dir / "tensorboard", run_dir / "tensorboard")
        log.info("checkpoints: %s", checkpoints.directory)
        if metrics is not None:
            log.info("metrics: %s (VOC07 mAP@0.5 %.4f)", run_dir / "metrics.json", metrics["voc07"]["mAP"])
        if nonfinite.total:
            log.warning("%d updates dropped for a non-finite loss or gradient (train.on_nonfinite=skip)",
                        nonfinite.total)
        if stopped:
            log.info("stopped at iteration %d of %d; continue with: python scripts/train.py "
                     "train.resume=auto hydra.run.dir=%s [same overrides]", iteration, tc.max_iters, run_dir)
    return metrics
