"""The benchmark's config schema (``configs/benchmark.yaml``): one node per section.

Importing this module registers :class:`BenchmarkConfig` with Hydra's ConfigStore as
``benchmark_schema``, the first entry of ``configs/benchmark.yaml``'s defaults list. The
``dataset`` and ``model`` nodes are the data and model packages' own.
"""

from dataclasses import dataclass, field
from typing import Optional

from hydra.core.config_store import ConfigStore

from frcnn.data.config import DatasetConfig
from frcnn.models import ModelConfig
from frcnn.utils.device import Amp

# Every section, in the order they run (accuracy, which trains, last).
SECTIONS = ("model", "data", "eval", "val_loss", "export", "zoo", "accuracy")


@dataclass
class CompareConfig:  # section model: ours vs torchvision's detector (frcnn.bench.model_speed)
    batch_size: int = 2
    image_size: list[int] = field(default_factory=lambda: [384, 480])  # (h, w)
    num_classes: int = 20
    boxes_per_image: int = 4
    warmup_iters: int = 2
    timed_iters: int = 5
    lr: float = 1e-4
    profile: bool = False
    fpn: bool = True  # also time the ResNet-FPN pair (fpn_train_ratio, fpn_infer_ratio)
    amp: Amp = Amp.off  # autocast around both models' forward passes, as train.amp (fp16: CUDA only)
    # Also time ours under torch.compile (ours_compiled, fpn_compiled): benchmark.json's "compiled".
    compiled: bool = True


@dataclass
class DataBenchConfig:  # section data: the training loader (frcnn.bench.data_speed)
    batch_size: int = 8  # the shapes_cpu training batch
    num_workers: Optional[int] = None  # null: the dataset's own default (dataset.num_workers)
    num_batches: int = 30


@dataclass
class EvalBenchConfig:  # section eval: scoring a synthetic result set (frcnn.bench.eval_speed)
    num_images: int = 4952
    dets_per_image: int = 100
    num_classes: int = 20


@dataclass
class ValLossBenchConfig:  # section val_loss: the evaluation forward with and without the losses
    batch_size: int = 4
    num_batches: int = 5
    repeats: int = 3


@dataclass
class ExportBenchConfig:  # section export: CPU latency of the ONNX export (frcnn.bench.export_speed)
    image_size: Optional[list[int]] = None  # (h, w); null: a 4:3 image at the dataset's test size
    batch_size: int = 4
    num_classes: int = 20
    threads: Optional[int] = None  # ONNX Runtime intra-op threads; null: PyTorch's thread count
    optimization: str = "all"  # ONNX Runtime graph optimisation level of the headline ratio
    warmup_iters: int = 2
    timed_iters: int = 10


@dataclass
class ZooBenchConfig:  # section zoo: torchvision's COCO detectors as frcnn builds them (frcnn.bench.zoo)
    models: list[str] = field(
        default_factory=lambda: ["fasterrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn_v2",
                                 "fasterrcnn_mobilenet_v3_large_fpn", "fasterrcnn_mobilenet_v3_large_320_fpn"]
    )  # fmt: skip
    warmup_iters: int = 1
    timed_iters: int = 5


@dataclass
class AccuracyBenchConfig:  # section accuracy: training parity (frcnn.bench.accuracy)
    experiment: str = "shapes_cpu"  # the training preset both detectors are trained with
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    overrides: list[str] = field(default_factory=list)  # training overrides for every run
    # frcnn runs: name -> extra overrides (ablations); "ours" is the one map_ratio compares.
    variants: dict[str, list[str]] = field(default_factory=lambda: {"ours": []})
    reference: bool = True  # also train torchvision's detector composed as the same model
    device: str = "cpu"


@dataclass
class BenchmarkConfig:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    sections: list[str] = field(default_factory=lambda: [s for s in SECTIONS if s not in ("zoo", "accuracy")])
    device: str = "auto"
    seed: int = 0
    threads: Optional[int] = None
    compare: CompareConfig = field(default_factory=CompareConfig)
    data: DataBenchConfig = field(default_factory=DataBenchConfig)
    eval: EvalBenchConfig = field(default_factory=EvalBenchConfig)
    val_loss: ValLossBenchConfig = field(default_factory=ValLossBenchConfig)
    export: ExportBenchConfig = field(default_factory=ExportBenchConfig)
    zoo: ZooBenchConfig = field(default_factory=ZooBenchConfig)
    accuracy: AccuracyBenchConfig = field(default_factory=AccuracyBenchConfig)


ConfigStore.instance().store(name="benchmark_schema", node=BenchmarkConfig)
