"""Training parity: frcnn and torchvision's detector trained identically, scored alike.

Each run is an ordinary :func:`frcnn.engine.trainer.train` call on a composed training config:
the same loader (the seed fixes the data order and augmentation), the same initial weights
(the reference is built from the same RNG state and gets a copy of frcnn's freshly initialised
weights, see :func:`frcnn.bench.reference.build_reference_model`), the same optimiser,
schedule and iteration count, and frcnn's evaluator on the test split. Variants of frcnn
(ablations) add config overrides. Used by ``scripts/benchmark.py sections=[accuracy]``.
"""

import json
import logging
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from frcnn.bench.reference import build_reference_model
from frcnn.engine.trainer import train
from frcnn.models import build_model

log = logging.getLogger(__name__)

REFERENCE = "torchvision"
SCORES = {
    "voc07_mAP": ("voc07", "mAP"),
    "voc_mAP": ("voc", "mAP"),
    "coco_AP": ("coco", "AP"),
    "coco_AP50": ("coco", "AP50"),
    "coco_AP75": ("coco", "AP75"),
}
METRICS = (*SCORES, "step_seconds", "wall_seconds")
# With train.ema_decay the same run also scores its EMA weights: ``ema_voc07_mAP`` and so on.
EMA_METRICS = tuple(f"ema_{name}" for name in SCORES)


def _median_step_seconds(run_dir: Path) -> float:
    """Median of the iteration times recorded in ``losses.jsonl`` (one per log period)."""
    times = [json.loads(line)["time/iter"] for line in (run_dir / "losses.jsonl").read_text().splitlines() if line]
    return statistics.median(times)


def train_and_score(cfg, run_dir: Path, build: Callable) -> dict:
    """Train ``cfg`` with ``build`` in ``run_dir``; the final metrics and timings, flat (and the
    EMA weights' scores as ``ema_*`` when ``train.ema_decay`` > 0).

    A finished run leaves ``result.json``: running again returns it without training, so an
    interrupted benchmark continues where it stopped.
    """
    done = run_dir / "result.json"
    if done.exists():
        log.info("%s: already trained, reusing %s", run_dir.name, done)
        return json.loads(done.read_text())
    start = time.perf_counter()
    metrics = train(cfg, run_dir, build)
    if metrics is None:
        raise RuntimeError(f"training in {run_dir} stopped before its final evaluation")
    result = {name: metrics[group][key] for name, (group, key) in SCORES.items()}
    result |= {"step_seconds": _median_step_seconds(run_dir), "wall_seconds": time.perf_counter() - start}
    if "ema" in metrics:  # the raw weights' trajectory is unchanged by the average: a paired ablation
        result |= {f"ema_{name}": metrics["ema"][group][key] for name, (group, key) in SCORES.items()}
    done.write_text(json.dumps(result, indent=2))
    return result


def summarize(results: list[dict]) -> dict:
    """Per metric: ``mean``, ``std`` (sample standard deviation; 0 for one run) and ``values``;
    the ``ema_*`` scores where every run has them."""
    summary = {}
    for name in METRICS + tuple(m for m in EMA_METRICS if all(m in r for r in results)):
        values = [r[name] for r in results]
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        summary[name] = {"mean": statistics.fmean(values), "std": std, "values": values}
    return summary


def benchmark_training_parity(
    compose: Callable[[list[str]], object],
    seeds: list[int],
    variants: dict[str, list[str]],
    reference: bool,
    run_dir: Path,
    on_progress: Callable[[dict], None] | None = None,
) -> dict:
    """Train every frcnn variant and (if ``reference``) torchvision's detector once per seed.

    ``compose(overrides)`` returns a training config; ``variants`` maps a name to the extra
    overrides of that frcnn run (``"ours"``, with none, is the default configuration).
    Runs go seed by seed, so partial results stay balanced; ``on_progress`` gets the result
    dict after every run. Returns ``runs`` (name -> seed -> result), a summary per name,
    ``ours`` and ``torchvision`` (summaries) and ``map_ratio`` (ours mean VOC07 mAP /
    torchvision's; null while torchvision's is 0).
    """
    names = list(variants) + ([REFERENCE] if reference else [])
    runs: dict[str, dict[str, dict]] = {name: {} for name in names}
    result: dict = {"seeds": list(seeds), "variants": {k: list(v) for k, v in variants.items()}, "runs": runs}
    for seed in seeds:
        for name in names:
            overrides = [f"seed={seed}"] + ([] if name == REFERENCE else list(variants[name]))
            build = build_reference_model if name == REFERENCE else build_model
            log.info("accuracy: training %s, seed %d (%s)", name, seed, " ".join(overrides))
            runs[name][str(seed)] = train_and_score(compose(overrides), run_dir / f"{name}_seed{seed}", build)
            log.info("accuracy: %s seed %d -> %s", name, seed, runs[name][str(seed)])
            result["summary"] = {n: summarize(list(r.values())) for n, r in runs.items() if r}
            if "ours" in result["summary"]:
                result["ours"] = result["summary"]["ours"]
            if REFERENCE in result["summary"]:
                result[REFERENCE] = result["summary"][REFERENCE]
            if "ours" in result and REFERENCE in result:
                reference_map = result[REFERENCE]["voc07_mAP"]["mean"]
                result["map_ratio"] = result["ours"]["voc07_mAP"]["mean"] / reference_map if reference_map > 0 else None
            if on_progress is not None:
                on_progress(result)
    return result
