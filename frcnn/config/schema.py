"""Structured schema of the training config (the root of ``configs/train.yaml``).

Every node is a dataclass, registered in Hydra's ConfigStore as ``train_schema``; the root
defaults list names it first, so each group file and each command-line override is merged
into a typed node: a misspelled key or a value of the wrong type is rejected before any
work starts, with the offending key in the message. Each key is declared once, with its
default, doc and allowed values (:func:`frcnn.utils.settings.setting`); :func:`frcnn.config.typed`
turns a composed config into these dataclasses and checks the values.

The ``dataset`` and ``model`` nodes belong to the data and model packages
(:class:`frcnn.data.config.DatasetConfig`, :class:`frcnn.models.config.ModelConfig`).
"""

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Optional

from hydra.core.config_store import ConfigStore

from frcnn.data.config import DatasetConfig
from frcnn.models.config import ModelConfig
from frcnn.utils.device import Amp, Device
from frcnn.utils.settings import (
    BELOW_ONE,
    FRACTION,
    NONNEGATIVE,
    POSITIVE,
    POSITIVE_FRACTION,
    Range,
    setting,
)


class OptimizerName(StrEnum):
    sgd = "sgd"
    adamw = "adamw"


class ScheduleName(StrEnum):
    multistep = "multistep"
    cosine = "cosine"


class CocoBackend(StrEnum):
    faster_coco_eval = "faster_coco_eval"  # the same 12 numbers, several times faster
    pycocotools = "pycocotools"


class NonFinitePolicy(StrEnum):
    stop = "stop"  # end the run, naming the iteration, the loss terms and the gradient norm
    skip = "skip"  # drop the update; stop after train.max_nonfinite_steps dropped steps in a row


@dataclass
class OptimizerConfig:
    """The ``optimizer`` node.

    The learning rate actually used is ``base_lr * total_batch / reference_batch_size``
    (linear scaling rule), where ``total_batch = train.batch_size * world_size``.
    """

    name: OptimizerName = setting(OptimizerName.sgd, "sgd | adamw")
    base_lr: float = setting(0.02, "learning rate at reference_batch_size images per step", POSITIVE)
    reference_batch_size: int = setting(16, "the total batch base_lr is given for", POSITIVE)
    momentum: float = setting(0.9, "SGD only", BELOW_ONE)
    nesterov: bool = setting(False, "SGD only")
    betas: list[float] = setting([0.9, 0.999], "AdamW only", BELOW_ONE.for_each(2))
    weight_decay: float = setting(1e-4, "not applied to normalisation weights and biases", NONNEGATIVE)


@dataclass
class ScheduleConfig:
    """The ``schedule`` node: linear warmup, then multi-step or cosine decay (per iteration)."""

    name: ScheduleName = setting(ScheduleName.multistep, "multistep | cosine")
    warmup_iters: int = setting(1000, "iterations of linear warm-up", NONNEGATIVE)
    warmup_factor: float = setting(0.001, "LR multiplier at iteration 0, rising linearly to 1", POSITIVE_FRACTION)
    steps: list[int] = setting(
        [60000, 80000], "multistep: iterations where the LR is multiplied by gamma", NONNEGATIVE.for_each()
    )
    gamma: float = setting(0.1, "multistep: LR multiplier at each step", POSITIVE)
    min_lr_factor: float = setting(0.0, "cosine: final LR as a fraction of the base LR", FRACTION)


@dataclass
class AnalysisConfig:
    """The ``evaluation.analysis`` node: what analyze.py (and evaluate.py analysis=true) writes,
    and the error breakdown a training run logs at each evaluation (frcnn.evaluation.analysis)."""

    score_threshold: Optional[float] = setting(
        None, "confusion matrix, worst images: detections scoring >= this (null: the suggested one)", FRACTION.or_null()
    )
    worst_images: int = setting(12, "images with the most errors drawn in the report", NONNEGATIVE)
    tensorboard: bool = setting(True, "training: log analysis/* (TIDE errors, confusion matrix) at each evaluation")


@dataclass
class EvaluationConfig:
    """The ``evaluation`` node, shared by train.py and evaluate.py."""

    coco_backend: CocoBackend = setting(
        CocoBackend.faster_coco_eval, "faster_coco_eval (the same numbers, faster) | pycocotools"
    )
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)


@dataclass
class TrainLoopConfig:
    """The ``train`` node: the iteration-based loop, checkpoints and logging."""

    max_iters: int = setting(90000, "iterations to train", POSITIVE)
    batch_size: int = setting(2, "images per process (per GPU)", POSITIVE)
    eval_period: int = setting(0, "evaluate every N iterations (0: only at the end)", NONNEGATIVE)
    eval_batch_size: int = setting(1, "images per evaluation batch", POSITIVE)
    checkpoint_period: int = setting(5000, "write checkpoints/last.pt (+ a periodic copy) every N iterations", POSITIVE)
    keep_checkpoints: int = setting(3, "periodic model_XXXXXXX.pt files kept (0: none)", NONNEGATIVE)
    resume: Optional[str] = setting(None, '"auto" (checkpoints/last.pt of the run dir, if any) | a path | null')
    resume_allow_config_change: bool = setting(False, "resume even if model/data/optimiser settings differ")
    overwrite: bool = setting(False, "start a new run in a folder that holds one (its checkpoints are deleted)")
    clip_grad_norm: Optional[float] = setting(
        None, "max L2 norm of all gradients (null: no clipping)", POSITIVE.or_null()
    )
    # Non-finite weights after an update always stop the run.
    on_nonfinite: NonFinitePolicy = setting(
        NonFinitePolicy.stop,
        "a non-finite loss or gradient: stop (naming the iteration, loss terms, grad_norm) | skip (drop the update)",
    )
    max_nonfinite_steps: int = setting(5, "on_nonfinite=skip: stop after this many dropped updates in a row", POSITIVE)
    # A finite explosion (frcnn.engine.divergence): a spike's update is always dropped, and
    # divergence_steps spikes in a row stop the run, whatever on_nonfinite says.
    divergence_factor: Optional[float] = setting(
        20.0,
        "a total loss or grad norm above this many times its median over the last 50 steps is a spike (null: off)",
        Range(lambda v: v > 1, "> 1", optional=True),
    )
    divergence_steps: int = setting(3, "spikes in a row that stop the run", POSITIVE)
    dist_timeout: Optional[float] = setting(
        None,
        "seconds a process waits in a collective (torchrun) before the run stops; null: 300 (gloo), 1800 (nccl)",
        POSITIVE.or_null(),
    )
    amp: Amp = setting(Amp.off, "mixed precision: off | bf16 (CUDA and CPU) | fp16 (CUDA); evaluation uses the same")
    deterministic: bool = setting(False, "torch.use_deterministic_algorithms (CPU runs are reproducible anyway)")
    log_period: int = setting(20, "iterations between TensorBoard scalars / log lines", POSITIVE)
    vis_images: int = setting(4, "test images drawn to TensorBoard after each evaluation", NONNEGATIVE)
    eval_at_end: bool = setting(True, "evaluate after the last iteration")
    val_loss: bool = setting(True, 'the loss terms on the test split at every evaluation (metrics.json "val_loss")')
    # voc07/mAP, voc/mAP, coco/<name>, or val_loss/<term> (rpn_cls, rpn_loc, roi_cls, roi_loc,
    # total; lower is better): checked when training starts (frcnn.evaluation.best_metric).
    best_metric: str = setting("voc07/mAP", "what checkpoints/best.pt tracks")
    # Evaluated beside the raw weights (TensorBoard eval_ema/*), saved in the checkpoints; best.pt
    # tracks it, and evaluate, predict, export and Detector load it.
    ema_decay: float = setting(
        0.0, "decay of an exponential moving average of the weights (0: off; e.g. 0.9998)", BELOW_ONE
    )
    ema_warmup_iters: int = setting(
        2000, "update t uses ema_decay * (1 - exp(-t / ema_warmup_iters)) (0: no warm-up)", NONNEGATIVE
    )
    # Frozen BatchNorm is untouched; one process: nothing to do.
    sync_bn: bool = setting(False, "torch.nn.SyncBatchNorm for trainable BatchNorm under torchrun (CUDA)")


@dataclass
class TrainConfig:
    """Root of ``configs/train.yaml``."""

    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainLoopConfig = field(default_factory=TrainLoopConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    device: Device = setting(Device.auto, "auto (cuda when available) | cpu | cuda")
    seed: int = setting(0, "seed of the weights' initialisation, the sampling and the augmentation", NONNEGATIVE)
    # The first step of each mode and size class compiles (tens of seconds on a CPU; cached on
    # disk for the next run), later ones run faster.
    compile: bool = setting(False, "torch.compile the detector (frcnn.utils.compile)")


def register_configs() -> None:
    """Register the schema as ``train_schema`` (the first entry of train.yaml's defaults)."""
    ConfigStore.instance().store(name="train_schema", node=TrainConfig)


register_configs()
