"""The ``simudy`` command: engine commands from ``core``, service commands from ``api`` and
``worker``, benchmarks from ``bench``."""
