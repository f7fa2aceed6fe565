"""Real servers on 127.0.0.1 that tests and benchmarks share: moto (S3), the simulator, the
API in-process (`harness.servers`) and each as a process of its own (`harness.processes`).

A top-level package rather than `tests/` or `benchmarks/`, so that neither imports the other.
"""
