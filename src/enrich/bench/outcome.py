"""What a scenario is given and what it returns: sizes, and one outcome with its table line."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from enrich.bench.sides import SideRun

Log = Callable[[str], None]


@dataclass(frozen=True)
class Sizes:
    """How big each scenario is; :data:`FULL` is the documented run, :data:`QUICK` a short one."""

    concurrency: int = 64
    latency_s: float = 0.3
    latency_rows: int = 5000
    latency_rounds: int = 2
    known_tpm: int = 60_000
    known_warmup_s: float = 15.0
    known_window_s: float = 40.0
    unknown_rpm: int = 1200
    unknown_warmup_s: float = 10.0
    unknown_window_s: float = 50.0
    cpu_rows: int = 5000
    cpu_rounds: int = 3
    flow_rows: int = 10_000
    flow_rounds: int = 1
    #: Scenario e's simulator modes (``cpu``: instant answers; ``latency``: ``latency_s``) and
    #: chunk sizes (``auto``: what the job's config resolves to when it sets none).
    flow_modes: str = "cpu,latency"
    flow_chunks: str = "auto,50,1000"
    noisy_rpm: int = 900
    noisy_share: float = 0.1
    noisy_warmup_s: float = 15.0
    noisy_window_s: float = 45.0


FULL = Sizes()
QUICK = Sizes(
    latency_rows=1000,
    latency_rounds=1,
    known_warmup_s=10.0,
    known_window_s=15.0,
    unknown_window_s=20.0,
    cpu_rows=2000,
    cpu_rounds=2,
    flow_rows=2000,
    flow_rounds=1,
    noisy_window_s=20.0,
)


@dataclass
class Outcome:
    """One scenario's result: its setup, every figure, and one line for the table."""

    key: str
    title: str
    setup: dict[str, Any]
    figures: dict[str, Any]
    measure: str
    pipeline: str
    baseline: str
    reference: str
    target: str
    reached: str
    met: bool | None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "setup": self.setup,
            "figures": self.figures,
            "target": self.target,
            "reached": self.reached,
            "met": self.met,
        }


def pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def side_runs(runs: list[SideRun]) -> list[dict[str, Any]]:
    return [r.to_json() for r in runs]
