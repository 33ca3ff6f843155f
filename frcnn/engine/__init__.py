"""Training engine: the loop (:func:`frcnn.engine.trainer.train`) and what only training needs:
optimiser and LR schedule, divergence guard, interrupts, resume, RNG state, torchrun set-up,
evaluation during training and what a run reports while it runs."""
