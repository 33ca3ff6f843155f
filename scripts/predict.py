"""Detect objects in an image or a folder of images with a trained checkpoint:
``python scripts/predict.py [key=value ...]``; usage in :mod:`frcnn.cli.predict`."""

from frcnn.cli.predict import command

if __name__ == "__main__":
    command()
