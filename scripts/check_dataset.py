"""Validate a whole dataset before training; exits non-zero when it finds errors.

Parses every annotation, checks every box against ``dataset.invalid_boxes`` and decodes
every image, then prints a per-class count table and every problem found (file, object,
reason) for each split::

    python scripts/check_dataset.py dataset=voc dataset.root=data/VOCdevkit
    python scripts/check_dataset.py dataset=coco splits=[test] images=false"""

from frcnn.cli.check_dataset import command

if __name__ == "__main__":
    command()
