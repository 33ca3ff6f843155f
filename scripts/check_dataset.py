"""Validate a whole dataset before training; exits non-zero when it finds errors:
``python scripts/check_dataset.py [key=value ...]``; usage in :mod:`frcnn.cli.check_dataset`."""

from frcnn.cli.check_dataset import command

if __name__ == "__main__":
    command()
