"""Inference from Python and the command line: :class:`~frcnn.inference.detector.Detector` (a
checkpoint as a callable on images, with its preprocessing and class names) and the predictor
behind ``scripts/predict.py`` (folders of images -> drawn images + predictions.json)."""

from frcnn.inference.detector import Detector

__all__ = ["Detector"]
