"""A simulator that the program using it starts and stops: its URL, `start()`, `stop()`, `with`.

Two kinds exist: `ThreadedSimulator` serves from a thread of this process (tests, scripts) and
`SimProcess` from a child process (benchmarks, so that its CPU is not charged to the client
being measured). Both start on entering a `with` block and stop on leaving it, and both refuse
to be used while they are not running, with the same message.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self, TypeVar

T = TypeVar("T")


class SimulatorHandle(ABC):
    """A simulator this program starts and stops; `base_url` is set once it serves."""

    base_url: str

    @abstractmethod
    def start(self) -> Self:
        """Start serving; returns once `base_url` answers."""

    @abstractmethod
    def stop(self) -> None:
        """Stop serving (a no-op when not running)."""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def running(part: T | None) -> T:
    """`part` of a running simulator (its loop, its process...); `RuntimeError` when stopped."""
    if part is None:
        raise RuntimeError("the simulator is not running")
    return part
