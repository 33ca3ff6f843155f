"""Detect objects in an image or a folder of images with a trained checkpoint.

    python scripts/predict.py checkpoint=outputs/<run>/checkpoints/last.pt input=photos/ output=detections/
    python scripts/predict.py checkpoint=... input=cat.jpg output=out/ score_threshold=0.3 device=cuda
    python scripts/predict.py runtime=onnxruntime model=exported/model.onnx input=photos/ output=detections/

Writes every image with its detections drawn (class name and score) under its own file name in
``output``, and one ``predictions.json`` (COCO results format; ``image_id`` is the file name,
boxes in original-image pixels, ``category_id`` the training dataset's id)."""

from frcnn.cli.predict import command

if __name__ == "__main__":
    command()
