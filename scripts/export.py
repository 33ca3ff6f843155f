"""Export a trained detector to ONNX for deployment.

    python scripts/export.py checkpoint=outputs/<run>/checkpoints/last.pt output=exported/

Writes ``output/model.onnx`` (one graph for any batch size and image size: NMS and RoI pooling
inside, padded outputs) and ``output/model.json`` (class names, category ids, the preprocessing
the graph expects, thresholds, the frcnn version and the checkpoint's config). Run the file with
``scripts/predict.py runtime=onnxruntime model=output/model.onnx ...`` or any ONNX Runtime."""

from frcnn.cli.export import command

if __name__ == "__main__":
    command()
