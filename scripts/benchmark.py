"""Benchmark this Faster R-CNN against torchvision's, plus the data and evaluation pipelines.

    python scripts/benchmark.py                                   # CPU-sized defaults, a few minutes
    python scripts/benchmark.py sections=[model] compare.image_size=[600,800] compare.timed_iters=20
    python scripts/benchmark.py device=cuda compare.batch_size=4 model.rpn.pre_nms_top_n_train=12000
    python scripts/benchmark.py device=cuda sections=[model] compare.amp=bf16      # both models under autocast
    python scripts/benchmark.py sections=[accuracy]               # training parity, ~1 h per seed pair on a CPU
    python scripts/benchmark.py sections=[accuracy] accuracy.seeds=[0,1] accuracy.reference=false         '+accuracy.variants.offset_half=["model.anchors.offset=0.5"]'       # an ablation beside "ours"

Section ``model`` times, in one process and interleaved, a training step (forward, backward,
optimiser step) and inference of this model and of torchvision's ``FasterRCNN`` composed as
the same R50-C4: the same trunk (conv1..layer3) and layer4 weights, the same 9 anchors, RPN
head, proposal counts, RoI sampling sizes, 14x14 RoIAlign and predictor weights, on identical
inputs of one size (so torchvision's transform does not resize). Ours runs with RoIAlign
(``model.roi_head.pooler``) for the like-for-like ratio and is also timed with RoIPool.
Sections ``data``, ``eval`` and ``export`` (CPU latency of the ONNX export; writes
``onnx_infer_ratio``) call ``frcnn.bench.data_speed``, ``frcnn.bench.eval_speed`` and
``frcnn.bench.export_speed``. Section ``accuracy`` (not in the default list: it trains) trains
frcnn and the torchvision composition with identical data, initial weights, optimiser and
schedule for each seed (``frcnn.bench.accuracy``) and reports their mAP; ``map_ratio`` =
ours / torchvision's. Running the same command with ``hydra.run.dir=`` of an interrupted run
reuses finished runs.
Everything is written to ``benchmark.json`` in the run directory; ratios are
``our median time / torchvision's median time`` (below 1: ours is faster)."""

from frcnn.cli.benchmark import command

if __name__ == "__main__":
    command()
