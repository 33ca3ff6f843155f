"""Evaluate a trained detector, or score an existing results file.

    python scripts/evaluate.py checkpoint=outputs/<run>/checkpoints/last.pt
    python scripts/evaluate.py checkpoint=... dataset.test_sets=[2007-test] model.roi_head.score_thresh=0.01
    python scripts/evaluate.py predictions=outputs/<run>/predictions.json
    python scripts/evaluate.py runtime=onnxruntime model=exported/model.onnx   # an exported model

Writes metrics.json (voc07, voc, coco; with checkpoint= on an annotated split also val_loss, the
training loss terms on it) and predictions.json in the run directory and logs the summary with the
per-class AP table. evaluation.coco_backend=pycocotools scores COCO with the reference COCOeval."""

from frcnn.cli.evaluate import command

if __name__ == "__main__":
    command()
