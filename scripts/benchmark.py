"""Benchmark this Faster R-CNN against torchvision's, plus the data, evaluation and export pipelines:
``python scripts/benchmark.py [key=value ...]``; usage in :mod:`frcnn.cli.benchmark`."""

from frcnn.cli.benchmark import command

if __name__ == "__main__":
    command()
