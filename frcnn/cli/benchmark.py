"""Benchmark this Faster R-CNN against torchvision's, plus the data, evaluation and export pipelines.

    python scripts/benchmark.py                                   # CPU-sized defaults, a few minutes
    python scripts/benchmark.py sections=[model] compare.image_size=[600,800] compare.timed_iters=20
    python scripts/benchmark.py device=cuda compare.batch_size=4 model.rpn.pre_nms_top_n_train=12000
    python scripts/benchmark.py device=cuda sections=[model] compare.amp=bf16      # both models under autocast
    python scripts/benchmark.py sections=[accuracy]               # training parity, ~1 h per seed pair on a CPU
    python scripts/benchmark.py sections=[accuracy] accuracy.seeds=[0,1] accuracy.reference=false \\
        '+accuracy.variants.offset_half=["model.anchors.offset=0.5"]'       # an ablation beside "ours"

Sections (``sections=[...]``, any of model, data, eval, val_loss, export, accuracy; one module
each in :mod:`frcnn.bench`, run by :func:`frcnn.bench.sections.run_sections`): ``model`` times a
training step and inference of this model and of torchvision's ``FasterRCNN`` composed as the
same R50-C4 (and R50-FPN), interleaved, on identical weights and inputs; ``data`` the training
loader; ``eval`` the VOC and COCO metrics; ``val_loss`` what the validation loss adds to the
evaluation forward; ``export`` the ONNX export's CPU latency (``onnx_infer_ratio``);
``accuracy`` (not in the default list: it trains) trains frcnn and the torchvision composition
identically for each seed and reports their mAP (``map_ratio`` = ours / torchvision's); running
the same command with ``hydra.run.dir=`` of an interrupted run reuses finished runs.
Everything is written to ``benchmark.json`` in the run directory; ratios are
``our median time / torchvision's median time`` (below 1: ours is faster).
"""

import json
import logging
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from frcnn.bench.config import BenchmarkConfig
from frcnn.bench.sections import run_sections  # its import registers the schema, benchmark_schema
from frcnn.cli.errors import run_command
from frcnn.config import config_dir, typed
from frcnn.utils.device import resolve_device

log = logging.getLogger("benchmark")


@hydra.main(config_path=str(config_dir()), config_name="benchmark", version_base=None)
def main(raw: DictConfig) -> None:
    cfg: BenchmarkConfig = typed(raw)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    path = run_dir / "benchmark.json"

    def write(result: dict) -> None:
        path.write_text(json.dumps(result, indent=2))

    write(run_sections(cfg, resolve_device(cfg.device), run_dir, write))
    log.info("wrote %s", path)


def command() -> None:
    """``python scripts/benchmark.py`` and the ``frcnn-benchmark`` console command."""
    run_command(main)


if __name__ == "__main__":
    command()
