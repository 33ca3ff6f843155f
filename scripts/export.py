"""Export a trained detector to ONNX for deployment:
``python scripts/export.py [key=value ...]``; usage in :mod:`frcnn.cli.export`."""

from frcnn.cli.export import command

if __name__ == "__main__":
    command()
