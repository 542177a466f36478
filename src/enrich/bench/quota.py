"""Scenarios b and c: quota-bound runs, measured as rates over a window after the first burst.

* b. known limit: the simulator enforces a tokens-per-minute quota and the job is configured
  with the same; share of the quota over a window after the initial burst, and 429s.
* c. unknown limit: the simulator enforces a requests-per-minute quota it never reports in
  headers (as Cerebras does not), and the job is configured with twice as much; share of the
  real quota and the share of 429s after the first seconds.

Each side runs on a fresh account (the simulator is reset: counters zeroed, buckets full) and is
cut off after the window; the figures are the simulator's own counters (see
:mod:`enrich.bench.measure`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from enrich.bench.measure import Sampler, Window, window
from enrich.bench.outcome import Log, Outcome, Sizes, pct
from enrich.bench.sides import SideRun, run_bare, run_pipeline
from enrich.bench.workload import bare_messages, write_input, write_job
from enrich.sim.process import SimProcess


async def _windowed(
    sim: SimProcess,
    run: Callable[[float], Any],
    warmup: float,
    span: float,
) -> tuple[SideRun, dict[str, Any], Window]:
    """Run one side on a fresh account for ``warmup + span`` s; its window after ``warmup``."""
    await asyncio.to_thread(sim.reset)
    async with Sampler(sim.stats, interval=0.5) as sampler:
        side: SideRun = await run(warmup + span + 0.5)
    w = window(sampler.samples, warmup, warmup + span)
    last = sampler.samples[-1]
    totals = {"requests": last.requests, "ok": last.ok, "throttled": last.throttled}
    return side, totals, w


async def _both_sides(
    sim: SimProcess,
    job: Path,
    messages: list[list[dict[str, str]]],
    conc: int,
    warmup: float,
    span: float,
) -> AsyncIterator[tuple[str, SideRun, dict[str, Any], Window]]:
    """The pipeline, then the bare loop, each windowed on a fresh account."""
    sides: dict[str, Callable[[float], Any]] = {
        "pipeline": lambda t: run_pipeline(job, stop_after=t),
        "bare": lambda t: run_bare(
            sim.base_url, messages, concurrency=conc, retry_throttled=True, stop_after=t
        ),
    }
    for name, run in sides.items():
        side, totals, w = await _windowed(sim, run, warmup, span)
        yield name, side, totals, w


async def quota_known(sizes: Sizes, work: Path, log: Log) -> Outcome:
    tpm, conc = sizes.known_tpm, sizes.concurrency
    warmup, span = sizes.known_warmup_s, sizes.known_window_s
    # Rows to outlast the run: about 45 tokens a request; the burst plus the window, and more.
    rows = int(tpm / 40 * (1 + (warmup + span) / 60) * 1.5)
    source = write_input(work / "b" / "input.jsonl", rows)
    messages = bare_messages(rows)
    quota_per_s = tpm / 60
    figures: dict[str, Any] = {}
    shares: dict[str, float] = {}
    throttled: dict[str, int] = {}
    with SimProcess("--ttft", str(sizes.latency_s), "--tpm", str(tpm)) as sim:
        job = write_job(
            work / "b" / "pipeline",
            input_path=source,
            base_url=sim.base_url,
            concurrency=conc,
            tokens_per_minute=tpm,
        )
        async for name, side, totals, w in _both_sides(sim, job, messages, conc, warmup, span):
            shares[name] = w.tokens_per_s / quota_per_s
            throttled[name] = totals["throttled"]
            figures[name] = {
                "share_of_quota": round(shares[name], 4),
                "tokens_per_s_in_window": round(w.tokens_per_s, 2),
                "window_s": [round(w.start, 2), round(w.end, 2)],
                "throttled_total": totals["throttled"],
                "throttled_in_window": w.throttled,
                "requests_total": totals["requests"],
                "side": side.to_json(),
            }
            log(f"b {name}: {pct(shares[name])} of the quota, {totals['throttled']} 429s")
    met = shares["pipeline"] >= 0.95 and throttled["pipeline"] == 0
    return Outcome(
        key="b",
        title="quota-bound, known",
        setup={
            "simulator_tpm": tpm,
            "configured_tpm": tpm,
            "latency_s": sizes.latency_s,
            "concurrency": conc,
            "window_after_s": warmup,
            "window_s": span,
        },
        figures=figures,
        measure="share of TPM, 429s",
        pipeline=f"{pct(shares['pipeline'])}, {throttled['pipeline']}",
        baseline=f"{pct(shares['bare'])}, {throttled['bare']}",
        reference=f"{tpm} TPM",
        target=">= 95 %, 0 429s",
        reached=f"{pct(shares['pipeline'])}, {throttled['pipeline']} 429s",
        met=met,
    )


async def quota_unknown(sizes: Sizes, work: Path, log: Log) -> Outcome:
    rpm, conc = sizes.unknown_rpm, sizes.concurrency
    warmup, span = sizes.unknown_warmup_s, sizes.unknown_window_s
    rows = int(rpm * (1 + (warmup + span) / 60) * 1.5)
    source = write_input(work / "c" / "input.jsonl", rows)
    messages = bare_messages(rows)
    quota_per_s = rpm / 60
    figures: dict[str, Any] = {}
    shares: dict[str, float] = {}
    throttled_share: dict[str, float] = {}
    with SimProcess("--ttft", str(sizes.latency_s), "--rpm", str(rpm)) as sim:
        job = write_job(
            work / "c" / "pipeline",
            input_path=source,
            base_url=sim.base_url,
            concurrency=conc,
            requests_per_minute=2 * rpm,
        )
        async for name, side, totals, w in _both_sides(sim, job, messages, conc, warmup, span):
            shares[name] = w.ok_per_s / quota_per_s
            throttled_share[name] = w.throttled_share
            figures[name] = {
                "share_of_quota": round(shares[name], 4),
                "throttled_share_after_warmup": round(w.throttled_share, 4),
                "ok_per_s_in_window": round(w.ok_per_s, 3),
                "window_s": [round(w.start, 2), round(w.end, 2)],
                "throttled_in_window": w.throttled,
                "requests_in_window": w.requests,
                "throttled_total": totals["throttled"],
                "requests_total": totals["requests"],
                "side": side.to_json(),
            }
            log(
                f"c {name}: {pct(shares[name])} of the real quota, "
                f"{pct(throttled_share[name])} 429s after {warmup:g} s"
            )
    p_share, p_throttled = shares["pipeline"], throttled_share["pipeline"]
    return Outcome(
        key="c",
        title="quota-bound, unknown",
        setup={
            "simulator_rpm": rpm,
            "configured_rpm": 2 * rpm,
            "rpm_in_headers": False,
            "latency_s": sizes.latency_s,
            "concurrency": conc,
            "window_after_s": warmup,
            "window_s": span,
        },
        figures=figures,
        measure="share of real RPM, 429 share after 10 s",
        pipeline=f"{pct(p_share)}, {pct(p_throttled)}",
        baseline=f"{pct(shares['bare'])}, {pct(throttled_share['bare'])}",
        reference=f"{rpm} RPM (configured {2 * rpm})",
        target=">= 85 %, <= 2 % 429s",
        reached=f"{pct(p_share)}, {pct(p_throttled)} 429s",
        met=p_share >= 0.85 and p_throttled <= 0.02,
    )
