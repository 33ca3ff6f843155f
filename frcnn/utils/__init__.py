"""What every layer may use: the device and its mixed precision (:mod:`frcnn.utils.device`),
rank helpers and counted collectives (:mod:`~frcnn.utils.dist`), non-finite tensors in a state
(:mod:`~frcnn.utils.finite`), log set-up (:mod:`~frcnn.utils.logs`), progress bars
(:mod:`~frcnn.utils.progress`) and drawing detections (:mod:`~frcnn.utils.visualize`)."""
