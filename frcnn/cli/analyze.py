"""See why a detector fails: evaluate it (or score a results file), then analyse the errors.

    python scripts/analyze.py checkpoint=outputs/<run>/checkpoints/last.pt
    python scripts/analyze.py predictions=outputs/<run>/predictions.json   # a results file, no model
    python scripts/analyze.py onnx=exported/model.onnx                     # an exported model

Takes evaluate.py's keys (configs/analyze.yaml) and writes what it writes (metrics.json,
predictions.json) plus analysis.json and report/index.html with its figures (offline: open the
file in a browser) in the run folder, and prints the TIDE error breakdown and where the report is.
evaluation.analysis.score_threshold sets the confusion matrix's and the worst images' threshold
(default: the suggested one), evaluation.analysis.worst_images how many images are drawn.
"""

import sys

import hydra
from omegaconf import DictConfig

from frcnn.cli.errors import run_command
from frcnn.cli.evaluate import evaluate
from frcnn.cli.runtime_option import route_model_argument
from frcnn.config import config_dir


@hydra.main(config_path=str(config_dir()), config_name="analyze", version_base=None)
def main(raw: DictConfig) -> None:
    evaluate(raw, "analyze.log")


def command() -> None:
    """``python scripts/analyze.py`` and the ``frcnn-analyze`` console command."""
    sys.argv = route_model_argument(sys.argv)
    run_command(main)


if __name__ == "__main__":
    command()
