"""The runners of ``relevance evaluate --protocol NAME``, one module each (see :mod:`relevance.cli.evaluate`)."""
