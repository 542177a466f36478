"""The provider's rate limits, one record each: what it counts, over what period, how reported.

Cerebras limits an account by requests and by tokens, per minute and per day (OpenAI-style
servers by the minute ones). Each of these is a :class:`ProviderLimit`; :data:`PROVIDER_LIMITS`
lists them, and everything that treats "every limit" (the controller's buckets, the header
re-sync, live limit changes) iterates over it rather than over parallel tuples. A limit's
``name`` is its key in a job's ``execution`` section and in ``RateController.update_limits``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from operator import attrgetter
from typing import Literal

from enrich.ratelimit.headers import RateSnapshot

__all__ = ["DAY", "MINUTE", "PROVIDER_LIMITS", "LimitName", "ProviderLimit", "Reported", "Unit"]

MINUTE = 60.0
DAY = 86_400.0

LimitName = Literal[
    "requests_per_minute", "tokens_per_minute", "requests_per_day", "tokens_per_day"
]
Unit = Literal["requests", "tokens"]
#: What one response's headers report about a limit: (limit, remaining, reset in seconds).
Reported = tuple[float | None, float | None, float | None]


@dataclass(frozen=True, slots=True)
class ProviderLimit:
    """One of the provider's limits.

    ``unit``: what a request costs against it, one request or the tokens it reserves.
    ``period``: seconds a full bucket's worth takes to come back. ``fixed_window``: the quota
    resets at a fixed time (the daily ones), so a wait for it may be hours long; the controller
    ends the run instead of waiting past its ``max_wait_s``. ``adapts``: the controller lowers it
    on 429s and probes it back up (the per-minute ones; a daily quota is what it says it is).
    """

    name: LimitName
    unit: Unit
    period: float
    fixed_window: bool
    adapts: bool
    _read: attrgetter[Reported] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        suffix = f"{self.unit}_{'day' if self.period == DAY else 'minute'}"
        fields = (f"limit_{suffix}", f"remaining_{suffix}", f"reset_{suffix}")
        object.__setattr__(self, "_read", attrgetter(*fields))

    def cost(self, tokens: float) -> float:
        """What a request reserving ``tokens`` takes from this limit's bucket."""
        return 1 if self.unit == "requests" else tokens

    def reported(self, snapshot: RateSnapshot) -> Reported:
        """(limit, remaining, reset) of this limit in a response's headers; ``None`` if absent."""
        values: Reported = self._read(snapshot)
        return values


#: Requests before tokens, minute before day: the order in which admission checks them.
PROVIDER_LIMITS: tuple[ProviderLimit, ...] = (
    ProviderLimit("requests_per_minute", "requests", MINUTE, fixed_window=False, adapts=True),
    ProviderLimit("requests_per_day", "requests", DAY, fixed_window=True, adapts=False),
    ProviderLimit("tokens_per_minute", "tokens", MINUTE, fixed_window=False, adapts=True),
    ProviderLimit("tokens_per_day", "tokens", DAY, fixed_window=True, adapts=False),
)
