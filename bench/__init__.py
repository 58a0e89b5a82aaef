"""Benchmark harness: ``simudy bench CASE...`` reproduces the paper's settings end to end
(theta0, real training to thetaf, reconstruction, scoring) and records quality, time and memory
in ``bench/results/*.json``; ``simudy bench-report`` turns them into ``BENCHMARKS.md``."""
