"""The benchmark's config schema (``configs/benchmark.yaml``): one node per section.

Importing this module registers :class:`BenchmarkConfig` with Hydra's ConfigStore as
``benchmark_schema``, the first entry of ``configs/benchmark.yaml``'s defaults list. The
``dataset`` and ``model`` nodes are the data and model packages' own.
"""

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Optional

from hydra.core.config_store import ConfigStore

from frcnn.data.config import DatasetConfig
from frcnn.export.runtime import GraphOptimization
from frcnn.models.config import ModelConfig
from frcnn.utils.device import Amp, Device
from frcnn.utils.settings import NONNEGATIVE, POSITIVE, setting


class Section(StrEnum):
    """The benchmark's sections, in the order they run (accuracy, which trains, last)."""

    model = "model"
    data = "data"
    eval = "eval"
    analysis = "analysis"
    val_loss = "val_loss"
    export = "export"
    zoo = "zoo"
    accuracy = "accuracy"


SECTIONS = tuple(Section)
IMAGE_SIZE = POSITIVE.for_each(2)


@dataclass
class CompareConfig:  # section model: ours vs torchvision's detector (frcnn.bench.model_speed)
    batch_size: int = setting(2, "images per step", POSITIVE)
    image_size: list[int] = setting([384, 480], "(h, w) of every image", IMAGE_SIZE)
    num_classes: int = setting(20, "object classes", POSITIVE)
    boxes_per_image: int = setting(4, "ground-truth boxes per image", POSITIVE)
    warmup_iters: int = setting(2, "untimed steps first", NONNEGATIVE)
    timed_iters: int = setting(5, "timed steps per detector", POSITIVE)
    lr: float = setting(1e-4, "SGD learning rate of the training steps", POSITIVE)
    profile: bool = setting(False, "also write torch.profiler tables")
    fpn: bool = setting(True, "also time the ResNet-FPN pair (fpn_train_ratio, fpn_infer_ratio)")
    amp: Amp = setting(Amp.off, "autocast around both models' forward passes, as train.amp (fp16: CUDA only)")
    compiled: bool = setting(True, 'also time ours under torch.compile (benchmark.json\'s "compiled")')


@dataclass
class DataBenchConfig:  # section data: the training loader (frcnn.bench.data_speed)
    batch_size: int = setting(8, "images per batch (the shapes_cpu training batch)", POSITIVE)
    num_workers: Optional[int] = setting(None, "null: the dataset's own (dataset.num_workers)", NONNEGATIVE.or_null())
    num_batches: int = setting(30, "batches timed", POSITIVE)
    index_images: int = setting(
        20000, "images of the indexing timing (YOLO, LabelMe, COCO; index cache); 0: not timed", NONNEGATIVE
    )


@dataclass
class EvalBenchConfig:  # section eval: scoring a synthetic result set (frcnn.bench.eval_speed)
    num_images: int = setting(4952, "images (VOC2007 test's count)", POSITIVE)
    dets_per_image: int = setting(100, "detections per image", POSITIVE)
    num_classes: int = setting(20, "object classes", POSITIVE)


@dataclass
class AnalysisBenchConfig:  # section analysis: the error analysis vs the scoring (frcnn.bench.analysis_speed)
    num_images: int = setting(5000, "images (COCO val2017's count)", POSITIVE)
    objects_per_image: float = setting(7.3, "mean objects per image (COCO val2017: 36,781 in 5,000)", POSITIVE)
    dets_per_image: int = setting(100, "detections per image", POSITIVE)
    num_classes: int = setting(80, "object classes", POSITIVE)
    repeats: int = setting(1, "interleaved timed runs of each", POSITIVE)


@dataclass
class ValLossBenchConfig:  # section val_loss: the evaluation forward with and without the losses
    batch_size: int = setting(4, "images per batch", POSITIVE)
    num_batches: int = setting(5, "batches per repeat", POSITIVE)
    repeats: int = setting(3, "interleaved repeats", POSITIVE)


@dataclass
class ExportBenchConfig:  # section export: CPU latency of the ONNX export (frcnn.bench.export_speed)
    image_size: Optional[list[int]] = setting(
        None, "(h, w); null: a 4:3 image at the dataset's test size", IMAGE_SIZE.or_null()
    )
    batch_size: int = setting(4, "images of the batched timing", POSITIVE)
    num_classes: int = setting(20, "object classes", POSITIVE)
    threads: Optional[int] = setting(
        None, "ONNX Runtime intra-op threads; null: PyTorch's thread count", POSITIVE.or_null()
    )
    optimization: GraphOptimization = setting(
        GraphOptimization.all, "ONNX Runtime graph optimisation level of the headline ratio"
    )
    warmup_iters: int = setting(2, "untimed runs first", NONNEGATIVE)
    timed_iters: int = setting(10, "timed runs", POSITIVE)


@dataclass
class ZooBenchConfig:  # section zoo: torchvision's COCO detectors as frcnn builds them (frcnn.bench.zoo)
    models: list[str] = setting(
        ["fasterrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn_v2", "fasterrcnn_mobilenet_v3_large_fpn",
         "fasterrcnn_mobilenet_v3_large_320_fpn"],
        "torchvision detector names",
    )  # fmt: skip
    warmup_iters: int = setting(1, "untimed runs first", NONNEGATIVE)
    timed_iters: int = setting(5, "timed runs", POSITIVE)


@dataclass
class AccuracyBenchConfig:  # section accuracy: training parity (frcnn.bench.accuracy)
    experiment: str = setting("shapes_cpu", "the training preset both detectors are trained with")
    seeds: list[int] = setting([0, 1, 2], "one training per seed and detector", NONNEGATIVE.for_each())
    overrides: list[str] = setting([], "training overrides for every run")
    variants: dict[str, list[str]] = setting(
        {"ours": []}, 'frcnn runs: name -> extra overrides (ablations); "ours" is the one map_ratio compares'
    )
    reference: bool = setting(True, "also train torchvision's detector composed as the same model")
    device: Device = setting(Device.cpu, "cpu | cuda | auto")


@dataclass
class BenchmarkConfig:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    sections: list[Section] = setting(
        [s for s in Section if s not in (Section.zoo, Section.accuracy)], "the sections to run, in SECTIONS order"
    )
    device: Device = setting(Device.auto, "auto | cpu | cuda")
    seed: int = setting(0, "seed of the weights and inputs", NONNEGATIVE)
    threads: Optional[int] = setting(None, "torch threads (null: PyTorch's default)", POSITIVE.or_null())
    compare: CompareConfig = field(default_factory=CompareConfig)
    data: DataBenchConfig = field(default_factory=DataBenchConfig)
    eval: EvalBenchConfig = field(default_factory=EvalBenchConfig)
    analysis: AnalysisBenchConfig = field(default_factory=AnalysisBenchConfig)
    val_loss: ValLossBenchConfig = field(default_factory=ValLossBenchConfig)
    export: ExportBenchConfig = field(default_factory=ExportBenchConfig)
    zoo: ZooBenchConfig = field(default_factory=ZooBenchConfig)
    accuracy: AccuracyBenchConfig = field(default_factory=AccuracyBenchConfig)


ConfigStore.instance().store(name="benchmark_schema", node=BenchmarkConfig)
