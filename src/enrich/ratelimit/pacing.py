"""Every provider limit of one controller, each with its value and the bucket sized to it.

:class:`Paced` holds one :class:`~enrich.ratelimit.adaptive.AdaptiveLimit` per entry of
:data:`~enrich.ratelimit.limits.PROVIDER_LIMITS` and, while that limit has a value, the
:class:`~enrich.ratelimit.bucket.PacingBucket` that paces it. It answers "does a request of this
many tokens fit, and when" and books what requests take and give back; what a response means
for the limits is the controller's business. Pure: ``now`` comes from the caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from enrich.ratelimit.adaptive import AdaptiveLimit
from enrich.ratelimit.bucket import PacingBucket
from enrich.ratelimit.headers import RateSnapshot
from enrich.ratelimit.limits import PROVIDER_LIMITS, LimitName, ProviderLimit

__all__ = ["Paced", "PacedLimit"]


@dataclass(slots=True, eq=False)
class PacedLimit:
    """One provider limit: its value (``adaptive.effective``; ``None``: no limit, no bucket)."""

    spec: ProviderLimit
    adaptive: AdaptiveLimit
    bucket: PacingBucket | None = None


class Paced:
    """The provider's limits of one controller and their buckets."""

    __slots__ = ("adapting", "all", "buckets", "by_name")

    def __init__(self) -> None:
        self.all = tuple(
            PacedLimit(spec, AdaptiveLimit(None, per_seconds=spec.period))
            for spec in PROVIDER_LIMITS
        )
        self.by_name: dict[LimitName, PacedLimit] = {x.spec.name: x for x in self.all}
        # Daily limits never adapt; they only take the min of configured and server-reported.
        self.adapting = tuple(x for x in self.all if x.spec.adapts)
        # The limits that have a bucket now, with it (rebuilt when one comes or goes).
        self.buckets: tuple[tuple[ProviderLimit, PacingBucket], ...] = ()

    def configure(self, values: Mapping[LimitName, float | None], now: float) -> None:
        """Set the configured value of the named limits (``None``: no limit)."""
        for name, value in values.items():
            adaptive = self.by_name[name].adaptive
            adaptive.set_limits(configured=value, server=adaptive.server)
        self.apply(now)

    def fits(self, tokens: int, now: float) -> bool:
        """Whether a request reserving ``tokens`` fits every bucket now."""
        return all(bucket.wait_time(spec.cost(tokens), now) <= 0 for spec, bucket in self.buckets)

    def take(self, tokens: int, now: float) -> None:
        """Book one request reserving ``tokens`` in every bucket, unseen until :meth:`settle`."""
        for spec, bucket in self.buckets:
            bucket.send(spec.cost(tokens), now)

    def settle(self, tokens: int, now: float) -> None:
        """A request booked with ``tokens`` was answered (or failed): the server has counted
        it, or never will."""
        for spec, bucket in self.buckets:
            bucket.settle(spec.cost(tokens), now)

    def charge(self, delta: float, now: float) -> None:
        """Charge (``delta`` > 0) or refund tokens beyond a reservation."""
        for spec, bucket in self.buckets:
            if spec.unit != "tokens":
                continue
            if delta > 0:
                bucket.take(delta, now)
            elif delta < 0:
                bucket.refund(-delta, now)

    def refund_request(self, now: float) -> None:
        """Give back the request a refused attempt took: the server did not count it."""
        for spec, bucket in self.buckets:
            if spec.unit == "requests":
                bucket.refund(1, now)

    def sync(self, snap: RateSnapshot, now: float) -> None:
        """Adopt the limits and levels a response's headers report."""
        reported = [limit.spec.reported(snap) for limit in self.all]
        changed = False
        for limit, (server, _, _) in zip(self.all, reported, strict=True):
            if server is not None and server != limit.adaptive.server:
                limit.adaptive.set_limits(configured=limit.adaptive.configured, server=server)
                changed = True
        if changed:
            self.apply(now)
        for limit, (_, remaining, reset) in zip(self.all, reported, strict=True):
            if limit.bucket is not None and (remaining is not None or reset is not None):
                limit.bucket.sync(remaining, reset, now)

    def apply(self, now: float) -> None:
        """Size every bucket to its limit's effective value, creating or dropping buckets."""
        regroup = False
        for limit in self.all:
            bucket, capacity, spec = limit.bucket, limit.adaptive.effective, limit.spec
            if capacity is None:
                regroup |= bucket is not None
                limit.bucket = None
            elif bucket is None:
                limit.bucket = PacingBucket(
                    capacity, spec.period, now, fixed_window=spec.fixed_window
                )
                regroup = True
            elif bucket.capacity != capacity:
                bucket.set_capacity(capacity, now)
        if regroup:
            self.buckets = tuple((x.spec, x.bucket) for x in self.all if x.bucket is not None)
