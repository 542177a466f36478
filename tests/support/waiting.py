"""Waiting for something to become true, without betting on how long it takes.

Tests poll a condition up to a generous deadline instead of sleeping a fixed time: on a loaded
machine a fixed sleep is too short, and on a quiet one it wastes time. The deadline only bounds
a hang; no test asserts on how long anything took.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable

# Long enough for two busy cores and several test sessions sharing them.
DEADLINE_S = 60.0


async def eventually(
    predicate: Callable[[], bool], within_s: float = DEADLINE_S, message: str = ""
) -> None:
    """Poll ``predicate`` on the event loop until it holds (fails after ``within_s``)."""
    deadline = time.monotonic() + within_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(message or "the condition never held")
        await asyncio.sleep(0.01)


def until(predicate: Callable[[], bool], within_s: float = DEADLINE_S, message: str = "") -> None:
    """Poll ``predicate`` from a thread until it holds (fails after ``within_s``)."""
    deadline = time.monotonic() + within_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(message or "the condition never held")
        time.sleep(0.01)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_http(url: str, process: subprocess.Popen[bytes], within_s: float = DEADLINE_S) -> None:
    """Wait until ``url`` answers; fail if ``process`` (the server) exits or time runs out."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(
                    f"the server exited ({process.returncode}) before {url} answered"
                ) from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer within {within_s:.0f} s") from None
            time.sleep(0.05)
