"""The bundled carrier simulator: a Twilio-compatible REST API for calls on loopback.

Public entry points: `SimulatorConfig`, `parse_faults`, `create_app`, `uvicorn_config`,
`RunningSimulator`, `run_in_thread`.
"""

from dialer.simulator.app import create_app
from dialer.simulator.config import Fault, Outcome, SimulatorConfig, parse_faults
from dialer.simulator.runner import RunningSimulator, run_in_thread, uvicorn_config

__all__ = [
    "Fault",
    "Outcome",
    "RunningSimulator",
    "SimulatorConfig",
    "create_app",
    "parse_faults",
    "run_in_thread",
    "uvicorn_config",
]
