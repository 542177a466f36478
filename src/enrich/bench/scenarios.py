"""The benchmark scenarios: each runs the pipeline and a bare SDK loop against the simulator.

* a. latency-bound: fixed latency, fixed concurrency; rows/s against the bare loop and the
  ideal ``concurrency / latency``.
* b. quota-bound, known: the simulator enforces a tokens-per-minute quota and the job is
  configured with the same; share of the quota over a window after the initial burst, 429s.
* c. quota-bound, unknown: the simulator enforces a requests-per-minute quota it never reports
  in headers (as Cerebras does not), and the job is configured with twice as much; share of the
  real quota and the share of 429s after the first seconds.
* d. CPU per row: an instant simulator; CPU seconds of this process per 1,000 rows.
* e. Prefect overhead: the same job through the flow and through the engine directly, in a
  child process (:mod:`enrich.bench.flowcost`), so this process never imports Prefect.

Sides alternate round by round (pipeline, bare, pipeline, bare...) so that drift of a noisy
machine falls on both; figures are medians over rounds and targets compare medians.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from enrich.bench.measure import Sampler, median, window
from enrich.bench.sides import SideRun, run_bare, run_pipeline
from enrich.bench.simproc import SimProcess
from enrich.bench.workload import bare_messages, write_input, write_job

Log = Callable[[str], None]


@dataclass(frozen=True)
class Sizes:
    """How big each scenario is; :data:`FULL` is the documented run, :data:`QUICK` a short one."""

    concurrency: int = 64
    latency_s: float = 0.3
    latency_rows: int = 5000
    latency_rounds: int = 2
    known_tpm: int = 60_000
    known_warmup_s: float = 15.0
    known_window_s: float = 40.0
    unknown_rpm: int = 1200
    unknown_warmup_s: float = 10.0
    unknown_window_s: float = 50.0
    cpu_rows: int = 5000
    cpu_rounds: int = 3
    flow_rows: int = 10_000
    flow_rounds: int = 2


FULL = Sizes()
QUICK = Sizes(
    latency_rows=1000,
    latency_rounds=1,
    known_warmup_s=10.0,
    known_window_s=15.0,
    unknown_window_s=20.0,
    cpu_rows=2000,
    cpu_rounds=2,
    flow_rows=2000,
    flow_rounds=1,
)


@dataclass
class Outcome:
    """One scenario's result: its setup, every figure, and one line for the table."""

    key: str
    title: str
    setup: dict[str, Any]
    figures: dict[str, Any]
    measure: str
    pipeline: str
    baseline: str
    reference: str
    target: str
    reached: str
    met: bool | None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "setup": self.setup,
            "figures": self.figures,
            "target": self.target,
            "reached": self.reached,
            "met": self.met,
        }


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _sides(runs: list[SideRun]) -> list[dict[str, Any]]:
    return [r.to_json() for r in runs]


# -- a. latency-bound ---------------------------------------------------------------------------


async def latency_bound(sizes: Sizes, work: Path, log: Log) -> Outcome:
    rows, conc, latency = sizes.latency_rows, sizes.concurrency, sizes.latency_s
    ideal = conc / latency
    source = write_input(work / "a" / "input.jsonl", rows)
    messages = bare_messages(rows)
    pipeline: list[SideRun] = []
    bare: list[SideRun] = []
    with SimProcess("--ttft", str(latency)) as sim:
        for r in range(sizes.latency_rounds):
            job = write_job(
                work / "a" / f"round{r}", input_path=source, base_url=sim.base_url, concurrency=conc
            )
            pipeline.append(await run_pipeline(job))
            log(f"a round {r + 1}: pipeline {pipeline[-1].rows_per_s:.1f} rows/s")
            bare.append(await run_bare(sim.base_url, messages, concurrency=conc))
            log(f"a round {r + 1}: bare     {bare[-1].rows_per_s:.1f} rows/s")
    p, b = median([x.rows_per_s for x in pipeline]), median([x.rows_per_s for x in bare])
    ratio = p / b if b else 0.0
    return Outcome(
        key="a",
        title="latency-bound",
        setup={"rows": rows, "concurrency": conc, "latency_s": latency, "rounds": len(pipeline)},
        figures={
            "pipeline_rows_per_s": round(p, 2),
            "bare_rows_per_s": round(b, 2),
            "ideal_rows_per_s": round(ideal, 2),
            "pipeline_vs_bare": round(ratio, 4),
            "pipeline_vs_ideal": round(p / ideal, 4),
            "bare_vs_ideal": round(b / ideal, 4),
            "pipeline_runs": _sides(pipeline),
            "bare_runs": _sides(bare),
        },
        measure="rows/s",
        pipeline=f"{p:.1f}",
        baseline=f"{b:.1f}",
        reference=f"ideal {ideal:.1f}",
        target=">= 0.9 x bare",
        reached=f"{ratio:.3f} x bare ({p / ideal:.3f} x ideal)",
        met=ratio >= 0.9,
    )


# -- b/c. quota-bound ---------------------------------------------------------------------------


async def _windowed(
    sim: SimProcess,
    run: Callable[[float], Any],
    warmup: float,
    span: float,
) -> tuple[SideRun, dict[str, Any], Any]:
    """Run one side on a fresh account for ``warmup + span`` s; its window after ``warmup``."""
    await asyncio.to_thread(sim.reset)
    async with Sampler(sim.stats, interval=0.5) as sampler:
        side: SideRun = await run(warmup + span + 0.5)
    w = window(sampler.samples, warmup, warmup + span)
    last = sampler.samples[-1]
    totals = {"requests": last.requests, "ok": last.ok, "throttled": last.throttled}
    return side, totals, w


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
        sides: dict[str, Callable[[float], Any]] = {
            "pipeline": lambda t: run_pipeline(job, stop_after=t),
            "bare": lambda t: run_bare(
                sim.base_url, messages, concurrency=conc, retry_throttled=True, stop_after=t
            ),
        }
        for name, run in sides.items():
            side, totals, w = await _windowed(sim, run, warmup, span)
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
            log(f"b {name}: {_pct(shares[name])} of the quota, {totals['throttled']} 429s")
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
        pipeline=f"{_pct(shares['pipeline'])}, {throttled['pipeline']}",
        baseline=f"{_pct(shares['bare'])}, {throttled['bare']}",
        reference=f"{tpm} TPM",
        target=">= 95 %, 0 429s",
        reached=f"{_pct(shares['pipeline'])}, {throttled['pipeline']} 429s",
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
        sides: dict[str, Callable[[float], Any]] = {
            "pipeline": lambda t: run_pipeline(job, stop_after=t),
            "bare": lambda t: run_bare(
                sim.base_url, messages, concurrency=conc, retry_throttled=True, stop_after=t
            ),
        }
        for name, run in sides.items():
            side, totals, w = await _windowed(sim, run, warmup, span)
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
                f"c {name}: {_pct(shares[name])} of the real quota, "
                f"{_pct(throttled_share[name])} 429s after {warmup:g} s"
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
        pipeline=f"{_pct(p_share)}, {_pct(p_throttled)}",
        baseline=f"{_pct(shares['bare'])}, {_pct(throttled_share['bare'])}",
        reference=f"{rpm} RPM (configured {2 * rpm})",
        target=">= 85 %, <= 2 % 429s",
        reached=f"{_pct(p_share)}, {_pct(p_throttled)} 429s",
        met=p_share >= 0.85 and p_throttled <= 0.02,
    )


# -- d. CPU per row -----------------------------------------------------------------------------


async def cpu_per_row(sizes: Sizes, work: Path, log: Log) -> Outcome:
    rows, conc = sizes.cpu_rows, sizes.concurrency
    source = write_input(work / "d" / "input.jsonl", rows)
    messages = bare_messages(rows)
    pipeline: list[SideRun] = []
    bare: list[SideRun] = []
    sim_cpu: dict[str, list[float]] = {"pipeline": [], "bare": []}
    with SimProcess() as sim:
        # One small warm-up of each side: imports, first connections, allocator.
        warm = write_job(work / "d" / "warm", input_path=source, base_url=sim.base_url)
        await run_pipeline(warm, stop_after=2.0)
        await run_bare(sim.base_url, messages[:500], concurrency=conc)
        for r in range(sizes.cpu_rounds):
            job = write_job(
                work / "d" / f"round{r}", input_path=source, base_url=sim.base_url, concurrency=conc
            )
            before = sim.cpu_seconds()
            pipeline.append(await run_pipeline(job))
            sim_cpu["pipeline"].append(1000 * (sim.cpu_seconds() - before) / rows)
            before = sim.cpu_seconds()
            bare.append(await run_bare(sim.base_url, messages, concurrency=conc))
            sim_cpu["bare"].append(1000 * (sim.cpu_seconds() - before) / rows)
            log(
                f"d round {r + 1}: pipeline {pipeline[-1].cpu_s_per_1000_rows:.3f}, "
                f"bare {bare[-1].cpu_s_per_1000_rows:.3f} CPU s per 1,000 rows"
            )
    p = median([x.cpu_s_per_1000_rows for x in pipeline])
    b = median([x.cpu_s_per_1000_rows for x in bare])
    ratio = p / b if b else 0.0
    return Outcome(
        key="d",
        title="CPU per row",
        setup={"rows": rows, "concurrency": conc, "latency_s": 0.0, "rounds": len(pipeline)},
        figures={
            "pipeline_cpu_s_per_1000_rows": round(p, 4),
            "bare_cpu_s_per_1000_rows": round(b, 4),
            "pipeline_vs_bare": round(ratio, 4),
            "pipeline_rows_per_s": round(median([x.rows_per_s for x in pipeline]), 1),
            "bare_rows_per_s": round(median([x.rows_per_s for x in bare]), 1),
            "simulator_cpu_s_per_1000_rows": {k: round(median(v), 4) for k, v in sim_cpu.items()},
            "pipeline_runs": _sides(pipeline),
            "bare_runs": _sides(bare),
        },
        measure="CPU s / 1,000 rows",
        pipeline=f"{p:.3f}",
        baseline=f"{b:.3f}",
        reference="",
        target="<= 1.2 x bare",
        reached=f"{ratio:.3f} x bare",
        met=ratio <= 1.2,
    )


# -- e. Prefect overhead ------------------------------------------------------------------------


def prefect_overhead(sizes: Sizes, work: Path, log: Log) -> Outcome:
    """Run :mod:`enrich.bench.flowcost` in a child process and read its JSON."""
    command = [
        sys.executable,
        "-m",
        "enrich.bench.flowcost",
        "--rows",
        str(sizes.flow_rows),
        "--rounds",
        str(sizes.flow_rounds),
        "--concurrency",
        str(sizes.concurrency),
        "--latency",
        str(sizes.latency_s),
        "--work",
        str(work / "e"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = "\n".join(done.stderr.splitlines()[-20:])
        raise RuntimeError(f"the Prefect overhead run failed ({done.returncode}):\n{tail}")
    figures: dict[str, Any] = orjson.loads(lines[-1])
    flow, direct = figures["flow_s"], figures["direct_s"]
    overhead = figures["overhead"]
    log(f"e: flow {flow:.2f} s, direct {direct:.2f} s, overhead {_pct(overhead)}")
    return Outcome(
        key="e",
        title="Prefect overhead",
        setup=figures.pop("setup"),
        figures=figures,
        measure="s per job (wall)",
        pipeline=f"flow {flow:.2f}",
        baseline=f"direct {direct:.2f}",
        reference="",
        target="<= 3 % overhead",
        reached=_pct(overhead),
        met=overhead <= 0.03,
    )


SCENARIOS = {
    "a": latency_bound,
    "b": quota_known,
    "c": quota_unknown,
    "d": cpu_per_row,
}


async def run_scenarios(keys: str, sizes: Sizes, log: Log) -> list[Outcome]:
    """Run the scenarios named in ``keys`` (e.g. ``"abcde"``), in order."""
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="enrich-bench-") as tmp:
        work = Path(tmp)
        for key in keys:
            load = os.getloadavg()[0]
            if key == "e":
                outcome = await asyncio.to_thread(prefect_overhead, sizes, work, log)
            else:
                outcome = await SCENARIOS[key](sizes, work, log)
            # Other processes on the machine skew every figure: say how busy it was.
            outcome.setup["load_average_1m"] = [round(load, 2), round(os.getloadavg()[0], 2)]
            outcomes.append(outcome)
    return outcomes
