"""Train a Faster R-CNN detector:
``python scripts/train.py [key=value ...]``; usage in :mod:`frcnn.cli.train`."""

from frcnn.cli.train import command

if __name__ == "__main__":
    command()
