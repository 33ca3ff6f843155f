"""The command-line programs (``scripts/*.py`` and the ``frcnn-*`` console commands) and how
they end on an error (:mod:`frcnn.cli.errors`: one line, exit code 2 for usage errors)."""
