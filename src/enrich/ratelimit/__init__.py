"""Rate limiting: pacing requests under the provider's limits, and learning them as we go.

Module map (each pure except the controller, which only awaits an injected sleep):

* :mod:`~enrich.ratelimit.bucket` -- :class:`PacingBucket`, the client-side token bucket.
* :mod:`~enrich.ratelimit.adaptive` -- :class:`AdaptiveLimit`, a limit that backs off once per
  congestion event and climbs back in proportion to successes.
* :mod:`~enrich.ratelimit.headers` -- :class:`RateSnapshot` and the parsers of the
  ``x-ratelimit-*`` and ``retry-after`` headers.
* :mod:`~enrich.ratelimit.limits` -- :class:`ProviderLimit`, one record per provider limit
  (:data:`PROVIDER_LIMITS`: requests and tokens, per minute and per day).
* :mod:`~enrich.ratelimit.throttle` -- :func:`classify_429`: which limit a 429 hit (or that it is
  noise) and how long to wait, used by the controller and by the retry policy (:mod:`enrich.retry`).
* :mod:`~enrich.ratelimit.congestion` -- :class:`NoiseTest`: whether 429s that name no limit
  fall when we slow down (a quota) or hold (noise).
* :mod:`~enrich.ratelimit.pacing` -- :class:`Paced`: every limit of a controller with its bucket.
* :mod:`~enrich.ratelimit.grants` -- a fleet's per-minute budget in grants: the
  :class:`Grants` port, how big an ask is, what becomes of an unused grant.
* :mod:`~enrich.ratelimit.share` -- :class:`FleetShare`, what a process holds of the fleet's
  budget; the controller draws every request from it.
* :mod:`~enrich.ratelimit.controller` -- :class:`RateController`, the one per process.
"""

from enrich.ratelimit.adaptive import AdaptiveLimit
from enrich.ratelimit.bucket import PacingBucket
from enrich.ratelimit.congestion import NoiseTest
from enrich.ratelimit.controller import Permit, RateController, RateStats
from enrich.ratelimit.headers import (
    RateSnapshot,
    parse_count,
    parse_duration,
    parse_rate_headers,
    parse_retry_after,
)
from enrich.ratelimit.limits import PROVIDER_LIMITS, LimitName, ProviderLimit, Unit
from enrich.ratelimit.throttle import Throttle, ThrottleCause, Trend, classify_429

__all__ = [
    "PROVIDER_LIMITS",
    "AdaptiveLimit",
    "LimitName",
    "NoiseTest",
    "PacingBucket",
    "Permit",
    "ProviderLimit",
    "RateController",
    "RateSnapshot",
    "RateStats",
    "Throttle",
    "ThrottleCause",
    "Trend",
    "Unit",
    "classify_429",
    "parse_count",
    "parse_duration",
    "parse_rate_headers",
    "parse_retry_after",
]
