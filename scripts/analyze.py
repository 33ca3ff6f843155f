"""See why a detector fails (TIDE errors, confusion matrix, thresholds, worst images):
``python scripts/analyze.py [key=value ...]``; usage in :mod:`frcnn.cli.analyze`."""

from frcnn.cli.analyze import command

if __name__ == "__main__":
    command()
