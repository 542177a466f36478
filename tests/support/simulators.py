"""A simulator with given settings, in a thread, and the SDK pointed at it.

The session-wide default simulator is the ``sim`` fixture; a test that needs other settings
(latency, quotas, a small context window, required keys) starts its own with
``simulator(monkeypatch, ttft=0.02, limits=Limits(rpd=25))``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from enrich.catalogue import OFFLINE_ENV
from enrich.sim.config import SimConfig
from enrich.sim.harness import ThreadedSimulator
from support.jobs import API_KEY


def point_sdk_at(server: ThreadedSimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every client built from the environment talk to ``server`` with the test key;
    the model catalogue is fetched from it too."""
    monkeypatch.setenv("CEREBRAS_BASE_URL", server.base_url)
    monkeypatch.setenv("CEREBRAS_API_KEY", API_KEY)
    monkeypatch.delenv(OFFLINE_ENV, raising=False)


@contextmanager
def simulator(
    monkeypatch: pytest.MonkeyPatch | None = None, **settings: Any
) -> Iterator[ThreadedSimulator]:
    """A fresh simulator with ``SimConfig(**settings)``; with ``monkeypatch``, the SDK uses it."""
    with ThreadedSimulator(SimConfig(**settings)) as server:
        if monkeypatch is not None:
            point_sdk_at(server, monkeypatch)
        yield server
