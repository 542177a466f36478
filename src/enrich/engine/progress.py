"""A run's live counters, and how a caller gets hold of them.

The engine owns one :class:`RunProgress` and updates it as requests and chunks finish. Who
wants to show it (a terminal progress bar, a Prefect progress artifact, a benchmark) passes a
:data:`ProgressObserver` to :func:`enrich.run.run_job`, which hands it the counters when the
run starts; nothing is looked up through process-wide state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["ProgressObserver", "RunProgress"]


@dataclass
class RunProgress:
    """Live counters for progress bars and throughput logs (plain ints: cheap per row).

    Safe to read from another thread: each field is one int or float, written by the event
    loop and read whole.
    """

    rows_total: int = 0
    rows_done: int = 0
    rows_failed: int = 0
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    started: float = 0.0


#: Called once, when a run starts sending, with that run's live counters.
ProgressObserver = Callable[[RunProgress], None]
