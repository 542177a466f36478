"""The adaptive controller against a model provider, on a virtual-time event loop."""

from __future__ import annotations

import asyncio
import random

import pytest
from support import VirtualTimeLoop, run_virtual

from enrich.ratelimit import RateController


class ModelProvider:
    """A provider with a true requests bucket of ``rpm`` and optionally a token bucket of ``tpm``.

    Like Cerebras: both full at start, refilled continuously, tokens reserved on arrival and
    refunded to usage on completion, remaining tokens in headers, no request headers.
    """

    def __init__(self, loop: VirtualTimeLoop, rpm: float, tpm: float | None = None) -> None:
        self.loop, self.rpm, self.tpm = loop, rpm, tpm
        self.requests, self.tokens, self.stamp = rpm, tpm or 0.0, 0.0
        self.log: list[tuple[float, int]] = []

    def _refill(self) -> float:
        now = self.loop.time()
        elapsed, self.stamp = now - self.stamp, now
        self.requests = min(self.rpm, self.requests + elapsed * self.rpm / 60)
        if self.tpm is not None:
            self.tokens = min(self.tpm, self.tokens + elapsed * self.tpm / 60)
        return now

    def headers(self) -> dict[str, str]:
        if self.tpm is None:
            return {}
        return {
            "x-ratelimit-limit-tokens-minute": str(int(self.tpm)),
            "x-ratelimit-remaining-tokens-minute": str(int(self.tokens)),
        }

    def admit(self, reserve: int) -> tuple[int, str | None]:
        now = self._refill()
        if self.requests < 1:
            status, code = 429, "request_quota_exceeded"
        elif self.tpm is not None and self.tokens < reserve:
            status, code = 429, "token_quota_exceeded"
        else:
            self.requests -= 1
            self.tokens -= reserve
            status, code = 200, None
        self.log.append((now, status))
        return status, code

    def complete(self, reserve: int, used: int) -> None:
        self._refill()
        if self.tpm is not None:
            self.tokens = min(self.tpm, self.tokens + reserve - used)


def simulate(
    rpm: float, configured_rpm: float, *, tpm: float | None = None, workers: int = 256
) -> tuple[float, float]:
    """Drive a controller against a :class:`ModelProvider` for two minutes.

    Returns (429 fraction, successes per minute) from 10 s on.
    """
    duration, warm_up = 130.0, 10.0
    rng = random.Random(7)

    async def main(loop: VirtualTimeLoop) -> list[tuple[float, int]]:
        server = ModelProvider(loop, rpm, tpm)
        ctl = RateController(
            max_in_flight=workers,
            requests_per_minute=configured_rpm,
            tokens_per_minute=None if tpm is None else 2 * tpm,
            clock=loop.time,
            sleep=asyncio.sleep,
        )

        async def worker() -> None:
            while True:
                reserve = 1000
                permit = await ctl.acquire(reserve)
                status, code = server.admit(reserve)
                if status == 200:
                    await asyncio.sleep(0.2 + 0.6 * rng.random())
                    used = rng.randrange(200, 800)
                    server.complete(reserve, used)
                    ctl.release(permit, used_tokens=used, status=200, headers=server.headers())
                else:
                    await asyncio.sleep(0.01)
                    ctl.release(
                        permit, used_tokens=None, status=429, code=code, headers=server.headers()
                    )
                    await asyncio.sleep(rng.random())  # the retry policy's backoff

        tasks = [asyncio.create_task(worker()) for _ in range(workers)]
        await asyncio.sleep(duration)
        for task in tasks:
            task.cancel()  # most are queued in acquire()
        await asyncio.gather(*tasks, return_exceptions=True)
        return server.log

    log = [status for t, status in run_virtual(main) if warm_up <= t < duration]
    rejected = log.count(429) / len(log)
    return rejected, log.count(200) / (duration - warm_up) * 60


@pytest.mark.parametrize("rpm", [60, 600, 3000])
def test_adaptive_rpm_converges_from_twice_the_real_limit(rpm: float) -> None:
    rejected, achieved = simulate(rpm, configured_rpm=2 * rpm)
    assert rejected <= 0.02
    assert achieved >= 0.85 * rpm


def test_token_headers_keep_a_token_bound_run_clean() -> None:
    # 60k TPM at ~500 tokens a request is ~120 requests a minute; the RPM is not the limit.
    rejected, achieved = simulate(10_000, configured_rpm=20_000, tpm=60_000)
    assert rejected <= 0.02
    assert achieved >= 0.85 * 60_000 / 500
