"""Checkpoints: what one holds (:mod:`~frcnn.checkpoint.format`, the one definition of the
format), writing and reading a file (:mod:`~frcnn.checkpoint.io`), a run's checkpoints/ folder
with its staged-checkpoint protocol and the resume lookup (:mod:`~frcnn.checkpoint.folder`), the
saved config typed again and the command line on top (:mod:`~frcnn.checkpoint.saved_config`),
fitting the weights to a model (:mod:`~frcnn.checkpoint.fit`), restoring a detector
(:mod:`~frcnn.checkpoint.restore`), and torchvision's trained detectors as checkpoints
(``torchvision:<name>``, :mod:`~frcnn.checkpoint.torchvision`)."""
