"""Structured schema of the training config (the root of ``configs/train.yaml``).

Every node is a dataclass, registered in Hydra's ConfigStore as ``train_schema``; the root
defaults list names it first, so each group file and each command-line override is merged
into a typed node: a misspelled key or a value of the wrong type is rejected before any
work starts, with the offending key in the message.

The ``dataset`` and ``model`` nodes belong to the data and model packages
(:class:`frcnn.data.config.DatasetConfig`, :class:`frcnn.models.config.ModelConfig`).
"""

from dataclasses import dataclass, field
from enum import Enum
from typing import Optional

from hydra.core.config_store import ConfigStore

from frcnn.data.config import DatasetConfig
from frcnn.models.config import ModelConfig
from frcnn.utils.device import Amp


class Device(str, Enum):
    auto = "auto"  # cuda when available, else cpu
    cpu = "cpu"
    cuda = "cuda"


class OptimizerName(str, Enum):
    sgd = "sgd"
    adamw = "adamw"


class ScheduleName(str, Enum):
    multistep = "multistep"
    cosine = "cosine"


class CocoBackend(str, Enum):
    faster_coco_eval = "faster_coco_eval"  # the same 12 numbers, several times faster
    pycocotools = "pycocotools"


class NonFinitePolicy(str, Enum):
    stop = "stop"  # end the run, naming the iteration, the loss terms and the gradient norm
    skip = "skip"  # drop the update; stop after train.max_nonfinite_steps dropped steps in a row


@dataclass
class OptimizerConfig:
    """The ``optimizer`` node.

    The learning rate actually used is ``base_lr * total_batch / reference_batch_size``
    (linear scaling rule), where ``total_batch = train.batch_size * world_size``.
    """

    name: OptimizerName = OptimizerName.sgd
    base_lr: float = 0.02
    reference_batch_size: int = 16
    momentum: float = 0.9  # SGD only
    nesterov: bool = False  # SGD only
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # AdamW only
    weight_decay: float = 1e-4  # not applied to normalisation weights and biases


@dataclass
class ScheduleConfig:
    """The ``schedule`` node: linear warmup, then multi-step or cosine decay (per iteration)."""

    name: ScheduleName = ScheduleName.multistep
    warmup_iters: int = 1000
    warmup_factor: float = 0.001  # LR multiplier at iteration 0, rising linearly to 1
    steps: list[int] = field(default_factory=lambda: [60000, 80000])  # multistep: iterations
    gamma: float = 0.1  # multistep: LR multiplier at each step
    min_lr_factor: float = 0.0  # cosine: final LR as a fraction of the base LR


@dataclass
class EvaluationConfig:
    """The ``evaluation`` node, shared by train.py and evaluate.py."""

    coco_backend: CocoBackend = CocoBackend.faster_coco_eval


@dataclass
class TrainLoopConfig:
    """The ``train`` node: the iteration-based loop, checkpoints and logging."""

    max_iters: int = 90000
    batch_size: int = 2  # images per process (per GPU)
    eval_period: int = 0  # evaluate every N iterations (0: only at the end)
    eval_batch_size: int = 1
    checkpoint_period: int = 5000  # write checkpoints/last.pt (+ a periodic copy) every N iterations
    keep_checkpoints: int = 3  # periodic model_XXXXXXX.pt files kept (0: none)
    resume: Optional[str] = None  # "auto" (checkpoints/last.pt of the run dir, if any) | a path | null
    resume_allow_config_change: bool = False  # resume even if model/data/optimiser settings differ
    overwrite: bool = False  # start a new run in a folder that holds one (its checkpoints are deleted)
    clip_grad_norm: Optional[float] = None  # max L2 norm of all gradients (null: no clipping)
    # A non-finite loss or gradient: stop (naming the iteration, the loss terms and grad_norm) or
    # skip (drop that update). Non-finite weights after an update always stop the run.
    on_nonfinite: NonFinitePolicy = NonFinitePolicy.stop
    max_nonfinite_steps: int = 5  # on_nonfinite=skip: stop after this many dropped updates in a row
    # A finite explosion: a total loss or gradient norm above this many times its median over the
    # last 50 in-range steps is a spike (null: no such test). Under on_nonfinite=stop,
    # divergence_steps spikes in a row stop the run; under skip, a spike's update is dropped.
    divergence_factor: Optional[float] = 20.0
    divergence_steps: int = 3
    # Seconds a process waits in a collective (torchrun) before the run stops, naming the ranks that
    # fell behind; null: 300 on CPU (gloo), 1800 on CUDA (nccl).
    dist_timeout: Optional[float] = None
    amp: Amp = Amp.off  # mixed precision: bf16 (CUDA and CPU) or fp16 (CUDA); evaluation uses the same
    deterministic: bool = False  # torch.use_deterministic_algorithms (CPU runs are reproducible anyway)
    log_period: int = 20  # iterations between TensorBoard scalars / log lines
    vis_images: int = 4  # test images drawn to TensorBoard after each evaluation
    eval_at_end: bool = True
    val_loss: bool = True  # the loss terms on the test split at every evaluation (metrics.json "val_loss")
    best_metric: str = "voc07/mAP"  # what checkpoints/best.pt tracks: voc07/mAP, voc/mAP, coco/<name>,
    # or val_loss/<term> (rpn_cls, rpn_loc, roi_cls, roi_loc, total; lower is better)
    # An exponential moving average of the weights, updated after every optimiser step (0: off; in
    # [0, 1), e.g. 0.9998): evaluated beside the raw weights (TensorBoard eval_ema/*), saved in the
    # checkpoints; best.pt tracks it, and evaluate, predict, export and Detector load it.
    ema_decay: float = 0.0
    # The decay's warm-up: update t uses ema_decay * (1 - exp(-t / ema_warmup_iters)) (0: none).
    ema_warmup_iters: int = 2000
    # torch.nn.SyncBatchNorm for trainable BatchNorm under torchrun (CUDA): statistics over the
    # whole batch of all processes. Frozen BatchNorm is untouched; one process: nothing to do.
    sync_bn: bool = False


@dataclass
class TrainConfig:
    """Root of ``configs/train.yaml``."""

    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainLoopConfig = field(default_factory=TrainLoopConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    device: Device = Device.auto
    seed: int = 0
    # torch.compile the detector (frcnn.utils.compile): the first step of each mode and size class
    # compiles (tens of seconds on a CPU; cached on disk for the next run), later ones run faster.
    compile: bool = False


def register_configs() -> None:
    """Register the schema as ``train_schema`` (the first entry of train.yaml's defaults)."""
    ConfigStore.instance().store(name="train_schema", node=TrainConfig)


register_configs()
