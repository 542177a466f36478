"""What the simulator served, counted on the server side.

`Counters` is the mutable tally the server updates on its event loop; `SimStats` is an
immutable snapshot of it, safe to hand to another thread or serialise as JSON. `Counters` also
logs each chat request's arrival (wall-clock time and the tokens it reserves, admitted or
refused), the most recent `ARRIVALS_KEPT`, for checking the rates a fleet sent.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class SimStats:
    """A snapshot of the counters.

    Attributes:
        requests: chat completion requests received (every outcome).
        by_status: responses sent, by HTTP status (dropped and hung requests have none).
        faults: injected faults, by kind (`fail_429`, `fail_500`, `fail_503`, `hang`, `drop`,
            `error_body`, `stream_drop`, `stream_cut`).
        prompt_tokens, completion_tokens: usage summed over successful completions.
        distinct_requests: distinct request bodies among the requests received.
        retried: requests whose `x-stainless-retry-count` header was above zero.
        in_flight, max_in_flight: chat requests being handled now, and the most at once.
    """

    requests: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    distinct_requests: int = 0
    retried: int = 0
    in_flight: int = 0
    max_in_flight: int = 0

    @property
    def completed(self) -> int:
        """Successful completions (200 responses, not counting error bodies or cut streams)."""
        return (
            self.by_status.get(200, 0)
            - self.faults.get("error_body", 0)
            - self.faults.get("stream_cut", 0)
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (status codes become string keys)."""
        return {
            "requests": self.requests,
            "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
            "faults": dict(sorted(self.faults.items())),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "distinct_requests": self.distinct_requests,
            "retried": self.retried,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SimStats:
        """The inverse of `to_json`."""
        return cls(
            requests=data["requests"],
            by_status={int(k): v for k, v in data["by_status"].items()},
            faults=dict(data["faults"]),
            prompt_tokens=data["prompt_tokens"],
            completion_tokens=data["completion_tokens"],
            distinct_requests=data["distinct_requests"],
            retried=data["retried"],
            in_flight=data["in_flight"],
            max_in_flight=data["max_in_flight"],
        )


ARRIVALS_KEPT = 200_000


class Counters:
    """The live tally; only the server's event loop touches it."""

    __slots__ = (
        "arrivals",
        "by_status",
        "completion_tokens",
        "digests",
        "faults",
        "in_flight",
        "max_in_flight",
        "prompt_tokens",
        "requests",
        "retried",
    )

    def __init__(self) -> None:
        self.in_flight = 0
        self.clear()

    def clear(self) -> None:
        """Back to zero (requests in flight stay counted as in flight)."""
        self.requests = 0
        self.by_status: dict[int, int] = {}
        self.faults: dict[str, int] = {}
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.digests: set[bytes] = set()
        self.retried = 0
        self.max_in_flight = self.in_flight
        self.arrivals: deque[tuple[float, int]] = deque(maxlen=ARRIVALS_KEPT)

    def snapshot(self) -> SimStats:
        """An immutable copy."""
        return SimStats(
            requests=self.requests,
            by_status=dict(self.by_status),
            faults=dict(self.faults),
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            distinct_requests=len(self.digests),
            retried=self.retried,
            in_flight=self.in_flight,
            max_in_flight=self.max_in_flight,
        )
