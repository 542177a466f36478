"""A quota-bound job finishes at the ideal bucket time, with no 429, on virtual time.

The server side is the simulator's own quota arithmetic (:class:`AccountQuotas`, full at
start, charged when a request arrives); the client side is the rate controller, driven as the
engine drives it: a worker acquires, sends, releases with the answer's headers, and after a 429
waits for ``retry-after`` and tries again. A request reaches the server a moment after it was
admitted, and the first request on each new connection later still (connection set-up), which is
what a real run looks like: its first requests arrive about 0.15 s after they were admitted.
"""

from __future__ import annotations

import asyncio
import math

import pytest
from support import VirtualTimeLoop, run_virtual

from enrich.ratelimit import RateController
from enrich.sim.buckets import AccountQuotas
from enrich.sim.config import Limits

RPM = 600
ROWS = 1000
WORKERS = 64
RESERVE = 82  # prompt estimate + max_completion_tokens
USED = 40
CONNECT = 0.15  # a new connection's set-up, before its first request reaches the server
TRANSIT = 0.005  # admission to arrival on an open connection, and back
ANSWER = 0.08  # time to first token + generation
#: 600 requests at once from the full bucket, the other 400 at 10 a second: the last is admitted
#: at 40 s. The band allows the last answer and the refill the client forgoes at the start, until
#: an answer shows the server has counted the first request (about CONNECT + ANSWER).
IDEAL = (ROWS - RPM) / (RPM / 60)
BAND = (IDEAL, IDEAL + 0.5)


def run_job(*, adaptive: bool) -> tuple[float, int]:
    """Run ``ROWS`` requests through a controller against the quota; (seconds, 429s)."""

    async def main(loop: VirtualTimeLoop) -> tuple[float, int]:
        quotas = AccountQuotas(Limits(rpm=RPM), loop.time)
        controller = RateController(
            max_in_flight=WORKERS,
            requests_per_minute=RPM,
            tokens_per_minute=None,
            adaptive=adaptive,
            clock=loop.time,
            sleep=asyncio.sleep,
        )
        rows = list(range(ROWS))
        refused = 0

        async def worker() -> None:
            nonlocal refused
            connected = False
            while rows:
                rows.pop()
                while True:
                    permit = await controller.acquire(RESERVE)
                    await asyncio.sleep(TRANSIT + (0.0 if connected else CONNECT))
                    connected = True
                    refusal = quotas.admit(RESERVE)
                    if refusal is None:
                        await asyncio.sleep(ANSWER)
                        quotas.refund(RESERVE - USED)
                        headers = quotas.headers()
                        await asyncio.sleep(TRANSIT)
                        controller.release(permit, used_tokens=USED, headers=headers, status=200)
                        break
                    refused += 1
                    wait = max(1, math.ceil(refusal.wait))  # as the simulator's retry-after
                    headers = quotas.headers()
                    await asyncio.sleep(TRANSIT)
                    controller.release(
                        permit,
                        used_tokens=None,
                        headers=headers,
                        status=429,
                        retry_after=wait,
                        code=refusal.code,
                    )
                    await asyncio.sleep(wait)

        start = loop.time()
        await asyncio.gather(*(worker() for _ in range(WORKERS)))
        return loop.time() - start, refused

    return run_virtual(main)


@pytest.mark.parametrize("adaptive", [True, False])
def test_a_quota_bound_job_finishes_at_the_ideal_bucket_time_with_no_429(
    adaptive: bool,
) -> None:
    seconds, refused = run_job(adaptive=adaptive)
    assert refused == 0
    assert BAND[0] <= seconds <= BAND[1], seconds
