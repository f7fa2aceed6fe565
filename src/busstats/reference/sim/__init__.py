"""A bundled stand-in for the external reference server, for local runs, tests and benchmarks."""

from busstats.reference.sim.data import CITIES, SimCity
from busstats.reference.sim.server import Fault, SimulatorConfig, SimulatorState, create_simulator

__all__ = [
    "CITIES",
    "Fault",
    "SimCity",
    "SimulatorConfig",
    "SimulatorState",
    "create_simulator",
]
