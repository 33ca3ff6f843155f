"""Training engine: the loop (:func:`frcnn.engine.trainer.train`), checkpoints, distributed
helpers, optimiser and LR schedule, and what a run reports while it runs."""
