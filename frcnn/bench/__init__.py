"""Benchmarks (``scripts/benchmark.py``, :mod:`frcnn.cli.benchmark`): the config schema
(:mod:`~frcnn.bench.config`), one module per section (:mod:`~frcnn.bench.model_speed`,
:mod:`~frcnn.bench.data_speed`, :mod:`~frcnn.bench.eval_speed`, :mod:`~frcnn.bench.val_loss_speed`,
:mod:`~frcnn.bench.export_speed`, :mod:`~frcnn.bench.accuracy`) run by
:func:`frcnn.bench.sections.run_sections`, their interleaved timing (:mod:`~frcnn.bench.timing`)
and the torchvision reference composition the model is measured against
(:mod:`~frcnn.bench.reference`)."""
