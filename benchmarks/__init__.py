"""Benchmarks of busstats against the alternatives, on loopback servers it starts itself."""
