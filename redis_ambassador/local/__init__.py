"""Local-process tooling: real redis-server processes started and steered from this process
(a local cluster, standalone server or Sentinel set; node kills, pauses and failovers), and the
pytest plugin built on them. ``dev``, the tests and the benchmarks use it; ``serve`` never
imports it."""
