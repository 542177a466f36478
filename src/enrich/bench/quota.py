"""Scenarios b and c: quota-bound runs, measured as rates over a window after the first burst.

* b. known limit: the simulator enforces a tokens-per-minute quota and the job is configured
  with the same; share of the quota over a window after the initial burst, and 429s.
* c. unknown limit: the simulator enforces a requests-per-minute quota it never reports in
  headers (as Cerebras does not), and the job is configured with twice as much; share of the
  real quota and the share of 429s after the first seconds.

* f. a noisy server: the simulator enforces a requests-per-minute quota (not in headers) and
  answers a share of requests, at random, with a 429 (``rate_limit_exceeded``, ``retry-after:
  1``, no rate-limit headers, as a proxy sends) and another share with a 500 or 503; the job is
  configured at the quota. Rows done per second over the window, as a share of the quota, and
  the 429s and 5xx each side met. The bare loop retries 429s after their ``retry-after`` and
  5xx after half a second.

All run the same way (:func:`_run_sides`): each side on a fresh account (the simulator is
reset: counters zeroed, buckets full), cut off after the window; the figures are the
simulator's own counters (see :mod:`enrich.bench.measure`). They differ in the quota, in the
rate that measures its share, and in how the 429s are counted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from enrich.bench.measure import Sampler, Window, window
from enrich.bench.outcome import Log, Outcome, Sizes, pct
from enrich.bench.sides import SideRun, run_bare, run_pipeline
from enrich.bench.workload import bare_messages, write_input, write_job
from enrich.sim.process import SimProcess


@dataclass(frozen=True)
class QuotaSide:
    """One side on a fresh account: its own summary, the simulator's counters over the whole
    run (``requests``, ``throttled``), and the ``window`` after the burst."""

    run: SideRun
    requests: int
    throttled: int
    window: Window

    server_errors: int = 0

    def figures(self, share: float, **rates: float) -> dict[str, Any]:
        """The side's figures: its share of the quota, the scenario's ``rates``, the counts."""
        w = self.window
        return {
            "share_of_quota": round(share, 4),
            **rates,
            "window_s": [round(w.start, 2), round(w.end, 2)],
            "throttled_in_window": w.throttled,
            "throttled_total": self.throttled,
            "server_errors_total": self.server_errors,
            "requests_total": self.requests,
            "side": self.run.to_json(),
        }


async def _windowed(
    sim: SimProcess, run: Callable[[float], Any], warmup: float, span: float
) -> QuotaSide:
    """Run one side on a fresh account for ``warmup + span`` s; its window after ``warmup``."""
    await asyncio.to_thread(sim.reset)
    async with Sampler(sim.stats, interval=0.5) as sampler:
        side: SideRun = await run(warmup + span + 0.5)
    last = sampler.samples[-1]
    return QuotaSide(
        side,
        last.requests,
        last.throttled,
        window(sampler.samples, warmup, warmup + span),
        last.server_errors,
    )


async def _run_sides(
    sizes: Sizes,
    work: Path,
    rows: int,
    enforced: tuple[str, int],
    warmup: float,
    span: float,
    done: Callable[[str, QuotaSide], None],
    *,
    requests_per_minute: int | None = None,
    tokens_per_minute: int | None = None,
    sim_options: tuple[str, ...] = (),
    retry_errors: bool = False,
) -> dict[str, QuotaSide]:
    """The pipeline, then the bare loop, on a simulator enforcing ``enforced`` (an ``enrich
    sim`` option and its value, with any further ``sim_options``); the job is configured with
    the given quota. ``done`` is called after each side, with its name."""
    source = write_input(work / "input.jsonl", rows)
    messages = bare_messages(rows)
    conc = sizes.concurrency
    option, limit = enforced
    sides: dict[str, QuotaSide] = {}
    with SimProcess("--ttft", str(sizes.latency_s), option, str(limit), *sim_options) as sim:
        job = write_job(
            work / "pipeline",
            input_path=source,
            base_url=sim.base_url,
            concurrency=conc,
            requests_per_minute=requests_per_minute,
            tokens_per_minute=tokens_per_minute,
        )
        runs: dict[str, Callable[[float], Any]] = {
            "pipeline": lambda t: run_pipeline(job, stop_after=t),
            "bare": lambda t: run_bare(
                sim.base_url,
                messages,
                concurrency=conc,
                retry_throttled=True,
                retry_errors=retry_errors,
                stop_after=t,
            ),
        }
        for name, run in runs.items():
            sides[name] = await _windowed(sim, run, warmup, span)
            done(name, sides[name])
    return sides


def _setup(sizes: Sizes, warmup: float, span: float, **quota: Any) -> dict[str, Any]:
    """A quota scenario's setup: its ``quota`` settings, then what both scenarios share."""
    return {
        **quota,
        "latency_s": sizes.latency_s,
        "concurrency": sizes.concurrency,
        "window_after_s": warmup,
        "window_s": span,
    }


def _outcome(
    key: str,
    title: str,
    setup: dict[str, Any],
    figures: dict[str, Any],
    said: Mapping[str, str],
    *,
    measure: str,
    reference: str,
    target: str,
    met: bool,
) -> Outcome:
    """A quota scenario's outcome: its table cells are what ``said`` says of each side (its
    share of the quota, then its 429s), the pipeline's again as what it reached."""
    return Outcome(
        key=key,
        title=title,
        setup=setup,
        figures=figures,
        measure=measure,
        pipeline=said["pipeline"],
        baseline=said["bare"],
        reference=reference,
        target=target,
        reached=said["pipeline"],
        met=met,
    )


async def quota_known(sizes: Sizes, work: Path, log: Log) -> Outcome:
    tpm = sizes.known_tpm
    warmup, span = sizes.known_warmup_s, sizes.known_window_s
    # Rows to outlast the run: about 45 tokens a request; the burst plus the window, and more.
    rows = int(tpm / 40 * (1 + (warmup + span) / 60) * 1.5)

    def share(side: QuotaSide) -> float:
        return side.window.tokens_per_s / (tpm / 60)

    def done(name: str, side: QuotaSide) -> None:
        log(f"b {name}: {pct(share(side))} of the quota, {side.throttled} 429s")

    sides = await _run_sides(
        sizes, work / "b", rows, ("--tpm", tpm), warmup, span, done, tokens_per_minute=tpm
    )
    said = {name: f"{pct(share(side))}, {side.throttled} 429s" for name, side in sides.items()}
    pipeline = sides["pipeline"]
    return _outcome(
        "b",
        "quota-bound, known",
        _setup(sizes, warmup, span, simulator_tpm=tpm, configured_tpm=tpm),
        {
            name: side.figures(
                share(side), tokens_per_s_in_window=round(side.window.tokens_per_s, 2)
            )
            for name, side in sides.items()
        },
        said,
        measure="share of TPM, 429s",
        reference=f"{tpm} TPM",
        target=">= 95 %, 0 429s",
        met=share(pipeline) >= 0.95 and pipeline.throttled == 0,
    )


async def quota_unknown(sizes: Sizes, work: Path, log: Log) -> Outcome:
    rpm = sizes.unknown_rpm
    warmup, span = sizes.unknown_warmup_s, sizes.unknown_window_s
    rows = int(rpm * (1 + (warmup + span) / 60) * 1.5)

    def share(side: QuotaSide) -> float:
        return side.window.ok_per_s / (rpm / 60)

    def done(name: str, side: QuotaSide) -> None:
        log(
            f"c {name}: {pct(share(side))} of the real quota, "
            f"{pct(side.window.throttled_share)} 429s after {warmup:g} s"
        )

    sides = await _run_sides(
        sizes, work / "c", rows, ("--rpm", rpm), warmup, span, done, requests_per_minute=2 * rpm
    )
    said = {
        name: f"{pct(share(side))}, {pct(side.window.throttled_share)} 429s"
        for name, side in sides.items()
    }
    pipeline = sides["pipeline"]
    return _outcome(
        "c",
        "quota-bound, unknown",
        _setup(
            sizes, warmup, span, simulator_rpm=rpm, configured_rpm=2 * rpm, rpm_in_headers=False
        ),
        {
            name: side.figures(
                share(side),
                throttled_share_after_warmup=round(side.window.throttled_share, 4),
                ok_per_s_in_window=round(side.window.ok_per_s, 3),
                requests_in_window=side.window.requests,
            )
            for name, side in sides.items()
        },
        said,
        measure="share of real RPM, 429 share after 10 s",
        reference=f"{rpm} RPM (configured {2 * rpm})",
        target=">= 85 %, <= 2 % 429s",
        met=share(pipeline) >= 0.85 and pipeline.window.throttled_share <= 0.02,
    )


async def quota_noisy(sizes: Sizes, work: Path, log: Log) -> Outcome:
    rpm, noise = sizes.noisy_rpm, sizes.noisy_share
    warmup, span = sizes.noisy_warmup_s, sizes.noisy_window_s
    rows = int(rpm * (1 + (warmup + span) / 60) * 1.5)
    faults = (
        *("--fail-429", str(noise), "--code-429", "rate_limit_exceeded"),
        *("--retry-after-429", "1", "--no-headers-429"),
        *("--fail-500", str(noise / 2), "--fail-503", str(noise / 2)),
    )

    def share(side: QuotaSide) -> float:
        return side.window.ok_per_s / (rpm / 60)

    def said(side: QuotaSide) -> str:
        return f"{pct(share(side))}, {side.throttled} 429s, {side.server_errors} 5xx"

    def done(name: str, side: QuotaSide) -> None:
        log(f"f {name}: {said(side)}")

    sides = await _run_sides(
        sizes,
        work / "f",
        rows,
        ("--rpm", rpm),
        warmup,
        span,
        done,
        requests_per_minute=rpm,
        sim_options=faults,
        retry_errors=True,
    )
    pipeline = sides["pipeline"]
    return _outcome(
        "f",
        "noisy server",
        _setup(
            sizes,
            warmup,
            span,
            simulator_rpm=rpm,
            configured_rpm=rpm,
            random_429_share=noise,
            random_5xx_share=noise,
        ),
        {
            name: side.figures(
                share(side),
                ok_per_s_in_window=round(side.window.ok_per_s, 3),
                throttled_in_window=side.window.throttled,
                server_errors_in_window=side.window.server_errors,
            )
            for name, side in sides.items()
        },
        {name: said(side) for name, side in sides.items()},
        measure="rows/s as a share of the quota, 429s, 5xx",
        reference=f"{rpm} RPM, {pct(noise)} random 429s + {pct(noise)} 5xx",
        target=">= 72 %",
        met=share(pipeline) >= 0.72,
    )
