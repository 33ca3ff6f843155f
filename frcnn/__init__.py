"""frcnn: Faster R-CNN (ResNet C4) training, evaluation and prediction.

    import frcnn
    cfg = frcnn.config.compose(overrides=["dataset=voc"])        # the validated training config
    detector = frcnn.Detector.from_checkpoint("outputs/<run>/checkpoints/last.pt")
    results = detector(["a.jpg", "b.jpg"])                        # boxes, scores, labels, class_names

Importing the package registers the config schemas with Hydra.
"""

from frcnn import config
from frcnn.detector import Detector

__all__ = ["Detector", "config"]
