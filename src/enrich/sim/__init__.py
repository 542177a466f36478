"""A Cerebras-compatible chat completions server for tests, demos and benchmarks.

Faithful to the provider's wire format (paths, bodies, usage and `time_info`, flat error
bodies, rate-limit headers, token-bucket quotas that reserve up front and refund, SSE
streaming), with deterministic completions, configurable latency and fault injection.

* `ThreadedSimulator(config)` -- in-process, in a background thread; a context manager.
* `LoopSimulator(config)` -- on the caller's event loop.
* `enrich sim` / `python -m enrich.sim` -- as a process; prints its URL when ready.
"""

from enrich.sim.config import DEFAULT_MODELS, Faults, Limits, SimConfig
from enrich.sim.harness import LoopSimulator, ThreadedSimulator
from enrich.sim.server import SimulatorApp
from enrich.sim.stats import SimStats

__all__ = [
    "DEFAULT_MODELS",
    "Faults",
    "Limits",
    "LoopSimulator",
    "SimConfig",
    "SimStats",
    "SimulatorApp",
    "ThreadedSimulator",
]
