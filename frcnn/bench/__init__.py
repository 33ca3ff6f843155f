"""Benchmarks (``scripts/benchmark.py``): every section (model speed, data pipeline, evaluation,
validation loss, ONNX export, training parity) and the torchvision reference composition the
model is measured against."""
