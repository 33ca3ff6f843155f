"""Convert a dataset to the COCO, VOC or YOLO layout:
``python scripts/convert_dataset.py dataset.root=SRC output=DST format=coco|voc|yolo [key=value ...]``;
usage in :mod:`frcnn.cli.convert_dataset`."""

from frcnn.cli.convert_dataset import command

if __name__ == "__main__":
    command()
