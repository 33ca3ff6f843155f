"""Evaluate a trained detector, or score an existing results file:
``python scripts/evaluate.py [key=value ...]``; usage in :mod:`frcnn.cli.evaluate`."""

from frcnn.cli.evaluate import command

if __name__ == "__main__":
    command()
