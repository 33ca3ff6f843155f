"""frcnn: Faster R-CNN (ResNet C4) training, evaluation and prediction."""
