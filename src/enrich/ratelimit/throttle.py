"""Which limit a 429 hit, whether it is a quota at all, and how long to wait: decided here.

:func:`classify_429` is the one answer to "what did this 429 mean?". The rate controller uses it
to decide whom to hold back and which limit to lower; the retry policy uses it to decide how long
one request waits before its next attempt. Pure: it reads the parsed headers and what the caller
passes in, nothing else.

Cerebras answers a throttled request with one of three codes: ``queue_exceeded`` (its own load,
not the account's quota), ``request_quota_exceeded`` (per-minute *or* per-day requests) and
``token_quota_exceeded`` (per-minute or, it seems, per-day tokens). The headers tell the minute
from the day. OpenAI-style servers send no code we know; their headers show which bucket is
empty.

Not every 429 is a quota. Providers refuse under their own load, and proxies and gateways add
429s of their own, at random and whatever our rate. Such a 429 is *noise*: the request that got
it waits for its ``retry-after`` and tries again, and nobody else slows down. A 429 is a quota
signal when its headers show an empty bucket or its code names a quota; it is noise when its
headers show room in the buckets it could be about, when the provider reports the minute's
requests on its answers and this one does not (it came from something in between), or when the
caller has seen that slowing down does not reduce the share of such 429s (``trend="holds"``,
measured by :class:`~enrich.ratelimit.congestion.NoiseTest`). A 429 that says nothing either
way is taken as the minute's requests until that evidence is in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from enrich.ratelimit.headers import RateSnapshot
from enrich.ratelimit.limits import LimitName, Unit

__all__ = ["Throttle", "ThrottleCause", "classify_429"]

#: A provider limit; the provider's own load (``capacity``); a 429 that is no limit of ours
#: (``noise``); or a 429 that says nothing more (``unknown``, taken as the minute's requests).
ThrottleCause = LimitName | Literal["capacity", "noise", "unknown"]
#: What slowing down did to the share of 429s that name no limit: it ``falls`` (a quota), it
#: ``holds`` (noise), or it is not known yet.
Trend = Literal["falls", "holds", "unknown"]


@dataclass(frozen=True, slots=True)
class Throttle:
    """What a 429 says: the ``limit`` it hit and when that limit has room again.

    ``retry_after`` is the wait the server asked for explicitly (``retry-after`` headers);
    ``resets_in`` is when the limit that was hit resets according to its ``x-ratelimit-reset-*``
    header (``None``: no header says). Both are seconds from the response.
    """

    limit: ThrottleCause
    retry_after: float | None = None
    resets_in: float | None = None

    @property
    def unit(self) -> Unit:
        """What ran out: tokens for a token limit, otherwise requests."""
        return "tokens" if self.limit.startswith("tokens") else "requests"

    @property
    def quota(self) -> bool:
        """Whether this 429 says a limit of ours is spent (everyone slows down), not noise."""
        return self.limit not in ("capacity", "noise")

    @property
    def wait(self) -> float | None:
        """The wait: the server's explicit hint, else the limit's reset; ``None`` if unsaid."""
        return self.retry_after if self.retry_after is not None else self.resets_in


def classify_429(
    code: str | None,
    snapshot: RateSnapshot,
    *,
    retry_after: float | None,
    reserved: int | None = None,
    reports_requests: bool = False,
    trend: Trend = "unknown",
) -> Throttle:
    """Classify a 429 from its error ``code`` and the rate-limit headers that came with it.

    ``retry_after`` is the server's explicit hint (parsed from the headers, or given by the
    caller). ``reserved`` is the tokens the throttled request reserved, when the caller knows
    them (the rate controller does, the retry policy does not); without it a request is taken to
    need one token, and a token 429 is never put down to the daily quota by the heuristic below.

    In order: ``queue_exceeded`` is the provider's capacity. No requests left today is the
    daily requests quota; fewer tokens left today than the request needs, the daily tokens
    quota. ``token_quota_exceeded`` (or no code, with fewer tokens left this minute than the
    request needs) is the minute's tokens, unless the minute bucket still holds twice the
    request and a quarter of its limit: then only the daily token quota (which no header
    reports) can have refused it. ``request_quota_exceeded``, or an empty minute requests bucket,
    is the minute's requests. All of these are quota signals.

    A 429 that names no limit and shows no empty bucket is ``noise`` when its headers show room
    in the minute's requests, when the provider is known to report that bucket on its answers
    (``reports_requests``) and this 429 does not, or when slowing down did not reduce the share
    of such 429s (``trend="holds"``); otherwise it is ``unknown``. Neither ``noise`` nor
    ``capacity`` is a quota (:attr:`Throttle.quota`).
    """
    if code == "queue_exceeded":
        return Throttle("capacity", retry_after)  # the provider's load, never our quota
    need = 1 if reserved is None else reserved
    if snapshot.remaining_requests_day is not None and snapshot.remaining_requests_day < 1:
        return Throttle("requests_per_day", retry_after, snapshot.reset_requests_day)
    if snapshot.remaining_tokens_day is not None and snapshot.remaining_tokens_day < need:
        return Throttle("tokens_per_day", retry_after, _tokens_day_reset(snapshot))
    left = snapshot.remaining_tokens_minute
    if code == "token_quota_exceeded" or (code is None and left is not None and left < need):
        limit = snapshot.limit_tokens_minute
        if (
            reserved is not None
            and left is not None
            and left >= 2 * reserved
            and (limit is None or left >= limit / 4)
        ):
            return Throttle("tokens_per_day", retry_after, _tokens_day_reset(snapshot))
        return Throttle("tokens_per_minute", retry_after, snapshot.reset_tokens_minute)
    requests_left = snapshot.remaining_requests_minute
    if code == "request_quota_exceeded" or (requests_left is not None and requests_left < 1):
        return Throttle("requests_per_minute", retry_after, snapshot.reset_requests_minute)
    # Nothing names a limit. Room in the minute's requests, or a provider that reports that
    # bucket on every answer but not on this one, means something other than our quota refused
    # it; so does a share of such 429s that stayed put when we slowed down.
    room = left is None or left >= need
    if room and (requests_left is not None or reports_requests or trend == "holds"):
        return Throttle("noise", retry_after)
    return Throttle("unknown", retry_after)


def _tokens_day_reset(snapshot: RateSnapshot) -> float | None:
    # No header says when the daily token quota resets; assume the requests' day does.
    reset = snapshot.reset_tokens_day
    return snapshot.reset_requests_day if reset is None else reset
