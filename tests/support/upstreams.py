"""Simulated upstreams the tests share: what `simulator_config` serves by default, and the
upstreams more than one module needs."""

from busstats.reference.sim import Fault, SimulatorConfig

QUICK_UPSTREAM = SimulatorConfig(rows=(5, 10), max_latency=0.05)
"""30 cities of 5 to 10 rows a day, each answering within 50 ms."""

ONE_CITY_MISSING = SimulatorConfig(rows=(5, 10), max_latency=0.05, faults={3: Fault.NOT_FOUND})
"""The quick upstream, but its fourth city has no file for any day (404)."""
