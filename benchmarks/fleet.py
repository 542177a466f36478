"""The fleet benchmark: a Prefect server on SQLite and on PostgreSQL, and one worker against two.

    .venv/bin/python benchmarks/fleet.py databases   # part A, about 10 minutes
    .venv/bin/python benchmarks/fleet.py workers     # part B, about 5 minutes
    .venv/bin/python benchmarks/fleet.py all

Everything runs on 127.0.0.1 and is started by the script: the simulator at zero latency
(``enrich sim``, a child process), ``prefect server start`` in a temporary ``PREFECT_HOME``
(SQLite in that folder, or a throwaway PostgreSQL cluster: ``initdb`` + ``pg_ctl`` in a
temporary folder), the work pool and every deployment of ``prefect.yaml`` (``prefect deploy
--all``), and process workers (``prefect worker start --type process``). Flow runs are real
``enrich-dataset/enrich`` deployment runs doing real chunk task runs against the simulator.

**databases** (part A): the same fleet (two workers, flow runs of ``--tasks`` chunk task runs)
against each database, in steps of more load: smaller chunks, then more flow runs at once
(``--steps 1x200,1x100,...,4x10``: flow runs at once x rows a chunk). Per step: task runs per
minute run by the fleet and recorded by the server, the chunk task's wall time, the server's
lag in recording a finished task run (its ``updated`` time minus its end time: task-run states
reach the database as events), flow runs late or slow, task runs and events the server lost
(stored against what ran), and server CPU seconds per task run (PostgreSQL's processes
included). A step is sustained when nothing was lost and the p95 lag stayed within
``--lag-factor`` times the first step's (or under one second).

**workers** (part B): a CPU-bound job split in two shards (``execution.parallelism=2``, the
coordinating run in this process as ``enrich run`` does it; ``--split backfill``: a backfill of
two partitions, two at a time), on one worker (``--limit 1``: the shards run one after the
other) and on two, alternating, ``--rounds`` times each. Per run: wall time, where it went
(waiting for a free worker, the flow run's start on its worker, job preparation, chunks, its
commit, the coordinating run's own share before and after) and CPU seconds of the workers
(with their flow-run processes), the server, the simulator and this process.

Results go to ``benchmarks/results/fleet-<date>.json`` (both parts; a part run alone replaces
its own key) and ``fleet-<date>.md``. CPU is read from ``/proc``: Linux only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
from fleet_stack import ROOT, Postgres, PrefectStack

from enrich.bench.processes import tree_cpu_seconds
from enrich.bench.workload import API_KEY, write_input, write_job
from enrich.sim.process import SimProcess

DATASET = "enrich-dataset/enrich"
BACKFILL_DAYS = ("2027-01-01", "2027-01-02")
STEP_TIMEOUT_S = 600.0
SETTLE_TIMEOUT_S = 120.0
IDLE_S = 10.0  # the window the idle server and workers are measured over
SPLITS = {
    "shards": "one job in 2 shards (execution.parallelism=2)",
    "backfill": "a backfill of 2 partitions (enrich-backfill, parallelism 2)",
}
DEFAULT_STEPS = "1x200,1x100,1x50,1x20,1x10,2x10,4x10"
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
DROP_LINES = ("dropping message", "Subscription queue is full")
LOCK_LINES = ("database is locked",)


def pct(values: list[float], q: float) -> float | None:
    """The ``q``-quantile (0..1) of ``values`` by nearest rank; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def sustained(steps: list[dict[str, Any]], factor: float, floor_s: float = 1.0) -> int | None:
    """Index of the highest step that lost nothing and kept its p95 lag within ``factor`` x
    the first step's (or under ``floor_s``); None when even the first did not."""
    if not steps:
        return None
    base = steps[0]["lag_p95_s"] or 0.0
    best = None
    for i, step in enumerate(steps):
        lag = step["lag_p95_s"]
        ok = not step["lost_task_runs"] and not step["lost_events"] and not step["drop_lines"]
        ok = ok and lag is not None and (lag <= factor * base or lag <= floor_s)
        if ok:
            best = i
    return best


# -- reading runs back from the server -----------------------------------------------------------


async def read_flow_runs(client: Any, ids: list[UUID]) -> list[Any]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    where = FlowRunFilter(id=FlowRunFilterId(any_=ids))
    return list(await client.read_flow_runs(flow_run_filter=where, limit=len(ids) + 1))


async def read_task_runs(client: Any, flow_ids: list[UUID]) -> list[Any]:
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterFlowRunId

    where = TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=flow_ids))
    found: list[Any] = []
    while True:
        page = await client.read_task_runs(task_run_filter=where, limit=200, offset=len(found))
        found += page
        if len(page) < 200:
            return found


async def count_events(client: Any, name: str, flow_ids: list[UUID], since: float) -> int:
    from prefect.events.filters import (
        EventFilter,
        EventNameFilter,
        EventOccurredFilter,
        EventRelatedFilter,
    )

    where = EventFilter(
        occurred=EventOccurredFilter(since=dt.datetime.fromtimestamp(since - 60, dt.UTC)),
        event=EventNameFilter(name=[name]),
        related=EventRelatedFilter(id=[f"prefect.flow-run.{i}" for i in flow_ids]),
    )
    page = await client.read_events(filter=where, limit=1)
    return int(page.total)


async def wait_final(client: Any, ids: list[UUID], within: float) -> list[Any]:
    deadline = time.monotonic() + within
    while True:
        runs = await read_flow_runs(client, ids)
        if len(runs) == len(ids) and all(r.state_type.value in FINAL for r in runs):
            return runs
        if time.monotonic() > deadline:
            raise RuntimeError(f"flow runs not final after {within:.0f} s")
        await asyncio.sleep(1.0)


def ts(value: Any) -> float | None:
    return None if value is None else float(value.timestamp())


def chunk_runs(task_runs: list[Any]) -> list[Any]:
    return [t for t in task_runs if t.task_key.startswith("enrich-chunk") or "chunk" in t.name]


# -- part A: the same fleet against SQLite and PostgreSQL ----------------------------------------


class Cpu:
    """CPU seconds of the processes that make up one stack, read together."""

    def __init__(self, stack: PrefectStack, sim: SimProcess, pg: Postgres | None) -> None:
        self.stack, self.sim, self.pg = stack, sim, pg

    def read(self) -> dict[str, float]:
        return {
            "server": tree_cpu_seconds(self.stack.server_pid),
            "postgres": tree_cpu_seconds(self.pg.pid) if self.pg else 0.0,
            "workers": sum(tree_cpu_seconds(w.pid) for w in self.stack.workers),
            "simulator": self.sim.cpu_seconds(),
            "benchmark": time.process_time(),
        }

    @staticmethod
    def spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        return {k: round(after[k] - before[k], 2) for k in before}


async def settle(
    client: Any, ids: list[UUID], expected: int, since: float
) -> tuple[list[Any], int, int, float]:
    """Wait until the server holds every chunk task run as Completed and the events stop
    coming (or SETTLE_TIMEOUT_S); the task runs, the two event counts, the seconds waited."""
    started = time.monotonic()
    last: tuple[int, int, int] | None = None
    same = 0
    while True:
        tasks = chunk_runs(await read_task_runs(client, ids))
        done = sum(1 for t in tasks if t.state_type and t.state_type.value == "COMPLETED")
        chunk_events = await count_events(client, "enrich.chunk.committed", ids, since)
        task_events = await count_events(client, "prefect.task-run.Completed", ids, since)
        now = (done, chunk_events, task_events)
        waited = time.monotonic() - started
        if done >= expected and chunk_events >= expected and task_events >= expected:
            return tasks, chunk_events, task_events, waited
        same = same + 1 if now == last else 0
        last = now
        if same >= 5 or waited > SETTLE_TIMEOUT_S:
            return tasks, chunk_events, task_events, waited
        await asyncio.sleep(2.0)


async def fleet_step(
    stack: PrefectStack,
    cpu: Cpu,
    config: Path,
    work: Path,
    label: str,
    flow_runs: int,
    rows: int,
    rows_per_chunk: int,
) -> dict[str, Any]:
    """Start ``flow_runs`` deployment runs at once, wait for them and for the server to catch
    up; the step's figures."""
    data = work / f"input-{rows}.jsonl"
    if not data.exists():
        write_input(data, rows)
    from prefect.client.orchestration import get_client

    expected = flow_runs * math.ceil(rows / rows_per_chunk)
    drops, locks = stack.log_count(*DROP_LINES), stack.log_count(*LOCK_LINES)
    before = cpu.read()
    started = time.time()
    async with get_client() as client:
        deployment = await client.read_deployment_by_name(DATASET)
        ids = []
        for i in range(flow_runs):
            params = {
                "config": str(config),
                "overrides": [
                    f"input.path={data}",
                    f"output.path={work / 'out' / label / str(i)}",
                    f"execution.rows_per_chunk={rows_per_chunk}",
                ],
            }
            made = await client.create_flow_run_from_deployment(
                deployment.id, parameters=params, name=f"{label}-{i}"
            )
            ids.append(made.id)
        runs = await wait_final(client, ids, STEP_TIMEOUT_S)
        ended = time.time()
        tasks, chunk_events, task_events, settle_s = await settle(client, ids, expected, started)
    after = cpu.read()
    spent = Cpu.spent(before, after)
    completed = [t for t in tasks if t.state_type and t.state_type.value == "COMPLETED"]
    starts = [ts(t.start_time) for t in completed if t.start_time]
    ends = [ts(t.end_time) for t in completed if t.end_time]
    span = (max(ends) - min(starts)) if starts and ends else 0.0  # type: ignore[type-var]
    walls = [ts(t.end_time) - ts(t.start_time) for t in completed if t.start_time and t.end_time]  # type: ignore[operator]
    recorded = [ts(t.updated) for t in completed]
    recorded_span = (max(recorded) - min(starts)) if recorded and starts else 0.0  # type: ignore[type-var, operator]
    lags = [ts(t.updated) - ts(t.end_time) for t in completed if t.end_time]  # type: ignore[operator]
    late = [ts(r.start_time) - ts(r.expected_start_time) for r in runs if r.start_time]  # type: ignore[operator]
    durations = [ts(r.end_time) - ts(r.start_time) for r in runs if r.start_time and r.end_time]  # type: ignore[operator]
    server_cpu = spent["server"] + spent["postgres"]
    return {
        "label": label,
        "flow_runs": flow_runs,
        "rows_per_flow_run": rows,
        "rows_per_chunk": rows_per_chunk,
        "task_runs_expected": expected,
        "task_runs_completed": len(completed),
        "flow_runs_completed": sum(1 for r in runs if r.state_type.value == "COMPLETED"),
        "step_wall_s": round(ended - started, 2),
        "task_span_s": round(span, 2),
        "task_runs_per_min": round(len(completed) / span * 60, 1) if span else None,
        "recorded_span_s": round(recorded_span, 2),
        "recorded_task_runs_per_min": (
            round(len(completed) / recorded_span * 60, 1) if recorded_span else None
        ),
        "rows_per_s": round(len(completed) * rows_per_chunk / span, 1) if span else None,
        "chunk_wall_p50_s": _r(pct(walls, 0.5)),
        "chunk_wall_p95_s": _r(pct(walls, 0.95)),
        "lag_p50_s": _r(pct(lags, 0.5)),
        "lag_p95_s": _r(pct(lags, 0.95)),
        "lag_max_s": _r(max(lags) if lags else None),
        "flow_start_delay_p50_s": _r(pct(late, 0.5)),
        "flow_start_delay_max_s": _r(max(late) if late else None),
        "flow_run_p50_s": _r(pct(durations, 0.5)),
        "flow_run_max_s": _r(max(durations) if durations else None),
        "late_runs": sum(1 for r in runs if r.state_name == "Late"),
        "failed_runs": [
            {"name": r.name, "state": r.state_name, "message": r.state.message if r.state else None}
            for r in runs
            if r.state_type.value != "COMPLETED"
        ],
        "settle_s": round(settle_s, 1),
        "events_chunk_committed": chunk_events,
        "events_task_run_completed": task_events,
        "lost_task_runs": expected - len(completed),
        "lost_events": max(0, expected - chunk_events) + max(0, expected - task_events),
        "drop_lines": stack.log_count(*DROP_LINES) - drops,
        "locked_lines": stack.log_count(*LOCK_LINES) - locks,
        "cpu_s": spent,
        "server_cpu_ms_per_task_run": (
            round(server_cpu / len(completed) * 1000, 1) if completed else None
        ),
        "all_cpu_ms_per_task_run": (
            round(sum(v for k, v in spent.items() if k != "benchmark") / len(completed) * 1000, 1)
            if completed
            else None
        ),
    }


def _r(value: float | None, places: int = 3) -> float | None:
    return None if value is None else round(value, places)


def mark_slow(steps: list[dict[str, Any]], factor: float) -> None:
    """Per step, whether its slowest flow run took more than ``factor`` x the median flow run
    of the first step with the same chunk size (the same work per flow run)."""
    for step in steps:
        base = next(s for s in steps if s["rows_per_chunk"] == step["rows_per_chunk"])
        step["slow_runs_vs_first_step"] = int(
            (step["flow_run_max_s"] or 0.0) > factor * (base["flow_run_p50_s"] or 0.0)
        )


async def one_database(kind: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    print(f"[{kind}] starting", flush=True)
    pg = Postgres() if kind == "postgresql" else None
    with (
        pg if pg is not None else contextlib.nullcontext(),
        SimProcess("--ttft", "0") as sim,
    ):
        data = write_input(work / "input-40.jsonl", 40)
        config = write_job(
            work / "job", input_path=data, base_url=sim.base_url, name="fleet", rows_per_chunk=None
        )
        started = time.perf_counter()
        with PrefectStack(pg.url if pg else None, {"CEREBRAS_API_KEY": API_KEY}) as stack:
            startup_s = time.perf_counter() - started
            stack.deploy()
            for n in range(args.workers):
                stack.start_worker(f"worker-{n + 1}")
            cpu = Cpu(stack, sim, pg)
            with temporary_settings(updates={PREFECT_API_URL: stack.api}):
                await wait_workers(args.workers)
                await asyncio.sleep(IDLE_S)  # the workers finish starting
                idle = cpu.read()
                await asyncio.sleep(IDLE_S)
                idle_rate = Cpu.spent(idle, cpu.read())
                print(f"[{kind}] warm-up", flush=True)
                await fleet_step(stack, cpu, config, work, f"{kind}-warmup", 1, 40, 20)
                steps = []
                for n, size in args.steps:
                    label = f"{kind}-{n}x{size}"
                    rows = args.tasks * size
                    step = await fleet_step(stack, cpu, config, work, label, n, rows, size)
                    print(f"[{kind}] {_step_line(step)}", flush=True)
                    steps.append(step)
                    if step["lost_task_runs"] > step["task_runs_expected"] // 2:
                        break  # the server is overrun: the next step only takes longer
    mark_slow(steps, args.lag_factor)
    best = sustained(steps, args.lag_factor)
    return {
        "database": kind,
        "server_startup_s": round(startup_s, 1),
        "idle_cpu_s_per_s": {k: round(v / IDLE_S, 3) for k, v in idle_rate.items()},
        "steps": steps,
        "sustained_step": best,
        "sustained_task_runs_per_min": None if best is None else steps[best]["task_runs_per_min"],
        "peak_recorded_task_runs_per_min": max(
            (s["recorded_task_runs_per_min"] or 0.0 for s in steps), default=None
        ),
    }


def _step_line(s: dict[str, Any]) -> str:
    return (
        f"{s['flow_runs']} flow runs: {s['task_runs_completed']}/{s['task_runs_expected']} task "
        f"runs, {s['task_runs_per_min']}/min run, "
        f"{s['recorded_task_runs_per_min']}/min recorded, chunk p50 {s['chunk_wall_p50_s']} s, "
        f"lag p50/p95 "
        f"{s['lag_p50_s']}/{s['lag_p95_s']} s, events {s['events_chunk_committed']}+"
        f"{s['events_task_run_completed']}, drops {s['drop_lines']}, server "
        f"{s['server_cpu_ms_per_task_run']} ms/task run, settle {s['settle_s']} s"
    )


async def databases(args: argparse.Namespace) -> dict[str, Any]:
    results = []
    for kind in args.databases:
        with tempfile.TemporaryDirectory(prefix=f"fleet-{kind}-") as tmp:
            results.append(await one_database(kind, args, Path(tmp)))
    return {
        "workers": args.workers,
        "task_runs_per_flow_run": args.tasks,
        "lag_factor": args.lag_factor,
        "results": results,
    }


# -- part B: one worker against two ------------------------------------------------------------


async def wait_workers(n: int, within: float = 90.0) -> None:
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + within
    async with get_client() as client:
        while time.monotonic() < deadline:
            found = await client.read_workers_for_work_pool(PrefectStack.POOL)
            if sum(1 for w in found if w.status.value == "ONLINE") >= n:
                return
            await asyncio.sleep(0.5)
    raise RuntimeError(f"{n} workers did not come online")


async def split_job(split: str, config: Path, out: Path) -> tuple[float, Any, list[Any]]:
    """The job split in two flow runs, coordinated from this process (as ``enrich run`` does):
    wall seconds, the coordinating run, its children. ``split`` is ``shards`` (one job,
    ``execution.parallelism=2``) or ``backfill`` (two partitions, two at a time)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    from enrich_flows.backfill import enrich_backfill
    from enrich_flows.enrich import enrich_dataset

    started = time.perf_counter()
    if split == "shards":
        overrides = [f"output.path={out}", "execution.parallelism=2"]
        state = await enrich_dataset(str(config), overrides, return_state=True)
    else:
        state = await enrich_backfill(
            config=str(config),
            start=BACKFILL_DAYS[0],
            end=BACKFILL_DAYS[-1],
            parallelism=2,
            overrides=[f"output.path={out}"],
            return_state=True,
        )
    wall = time.perf_counter() - started
    if not state.is_completed():
        raise RuntimeError(f"the split job did not complete: {state.message}")
    parent_id = state.state_details.flow_run_id
    async with get_client() as client:
        parent = await client.read_flow_run(parent_id)
        where = FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent_id]))
        children = list(await client.read_flow_runs(flow_run_filter=where))
    return wall, parent, children


async def child_breakdown(child: Any) -> dict[str, Any]:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        tasks = chunk_runs(await read_task_runs(client, [child.id]))
        states = await client.read_flow_run_states(child.id)
    first = min(ts(t.start_time) for t in tasks)  # type: ignore[type-var]
    last = max(ts(t.end_time) for t in tasks)  # type: ignore[type-var]
    start, end, queued = ts(child.start_time), ts(child.end_time), ts(child.expected_start_time)
    # Pending: a worker took the run and is starting its process; Running: the flow started.
    taken = min((ts(s.timestamp) for s in states if s.type.value == "PENDING"), default=queued)
    return {
        "name": child.name,
        "queued_at": queued,
        "wait_for_worker_s": round(taken - queued, 2),  # type: ignore[operator]
        "start_s": round(start - taken, 2),  # type: ignore[operator]
        "prepare_s": round(first - start, 2),  # type: ignore[operator]
        "chunks_s": round(last - first, 2),
        "commit_report_s": round(end - last, 2),  # type: ignore[operator]
        "run_s": round(end - queued, 2),  # type: ignore[operator]
        "ended_at": end,
        "chunks": len(tasks),
    }


async def one_split_run(
    stack: PrefectStack,
    sim: SimProcess,
    split: str,
    config: Path,
    work: Path,
    workers: int,
    label: str,
) -> dict[str, Any]:
    for n in range(workers):
        stack.start_worker(f"{label}-worker-{n + 1}", limit=1)
    try:
        await wait_workers(workers)
        cpu = Cpu(stack, sim, None)
        before = cpu.read()
        wall, parent, children = await split_job(split, config, work / "out" / label)
        await asyncio.sleep(2)  # the workers reap their flow-run processes
        spent = Cpu.spent(before, cpu.read())
    finally:
        stack.stop_workers()
        await asyncio.sleep(3)  # the server marks them offline; the next round starts clean
    parts = [await child_breakdown(c) for c in children]
    first_queued = min(p["queued_at"] for p in parts)
    last_end = max(p["ended_at"] for p in parts)
    parent_start, parent_end = ts(parent.start_time), ts(parent.end_time)
    return {
        "label": label,
        "workers": workers,
        "wall_s": round(wall, 2),
        "children": parts,
        "coordinator_before_children_s": round(first_queued - parent_start, 2),  # type: ignore[operator]
        "children_span_s": round(last_end - first_queued, 2),
        "coordinator_after_children_s": round(parent_end - last_end, 2),  # type: ignore[operator]
        "cpu_s": spent,
    }


async def workers_part(args: argparse.Namespace) -> dict[str, Any]:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with (
        tempfile.TemporaryDirectory(prefix="fleet-workers-") as tmp,
        SimProcess("--ttft", "0") as sim,
    ):
        work = Path(tmp)
        if args.split == "shards":
            data = write_input(work / "input.jsonl", 2 * args.split_rows)
        else:
            for i, day in enumerate(BACKFILL_DAYS):
                write_input(work / "raw" / f"dt={day}" / "part-0.jsonl", args.split_rows, i * 10**6)
            data = work / "raw" / "dt={date}" / "*.jsonl"
        config = write_job(
            work / "job", input_path=data, base_url=sim.base_url, name="split", rows_per_chunk=None
        )
        with PrefectStack(None, {"CEREBRAS_API_KEY": API_KEY}) as stack:
            stack.deploy()
            with temporary_settings(updates={PREFECT_API_URL: stack.api}):
                print("[workers] warm-up", flush=True)
                await one_split_run(stack, sim, args.split, config, work, 2, "warmup")
                runs = []
                for r in range(args.rounds):
                    for n in (1, 2):
                        label = f"r{r + 1}-{n}w"
                        run = await one_split_run(stack, sim, args.split, config, work, n, label)
                        print(f"[workers] {_split_line(run)}", flush=True)
                        runs.append(run)
    one = [r["wall_s"] for r in runs if r["workers"] == 1]
    two = [r["wall_s"] for r in runs if r["workers"] == 2]
    return {
        "job": SPLITS[args.split],
        "rows": args.split_rows * len(BACKFILL_DAYS),
        "runs": runs,
        "median_wall_1_worker_s": round(statistics.median(one), 2),
        "median_wall_2_workers_s": round(statistics.median(two), 2),
        "ratio_2_over_1": round(statistics.median(two) / statistics.median(one), 3),
        "ratios_per_round": [round(b / a, 3) for a, b in zip(one, two, strict=True)],
    }


def _split_line(r: dict[str, Any]) -> str:
    kids = ", ".join(
        f"{c['wait_for_worker_s']}+{c['start_s']}+{c['prepare_s']}+{c['chunks_s']}+"
        f"{c['commit_report_s']} s"
        for c in r["children"]
    )
    return (
        f"{r['label']}: {r['wall_s']} s wall; children (wait+start+prepare+chunks+commit) {kids}; "
        f"coordinator {r['coordinator_before_children_s']} s before, "
        f"{r['coordinator_after_children_s']} s after; CPU {r['cpu_s']}"
    )


# -- results ---------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": os.getloadavg(),
    }


def write_results(part: str, found: dict[str, Any], folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"fleet-{dt.date.today().isoformat()}"
    json_path, md_path = stem.with_suffix(".json"), stem.with_suffix(".md")
    doc: dict[str, Any] = orjson.loads(json_path.read_bytes()) if json_path.exists() else {}
    doc[part] = {**found, "machine": machine(), "finished": dt.datetime.now(dt.UTC).isoformat()}
    json_path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    md_path.write_text(markdown(doc))
    return json_path, md_path


def net_server_ms(step: dict[str, Any], idle: dict[str, float]) -> float | None:
    """Server (and PostgreSQL) CPU ms per task run of a step, less what the idle server would
    have used over the step (its wall time and the wait for the server to catch up)."""
    if not step["task_runs_completed"]:
        return None
    spent = step["cpu_s"]["server"] + step["cpu_s"]["postgres"]
    idle_s = (idle["server"] + idle["postgres"]) * (step["step_wall_s"] + step["settle_s"])
    return round((spent - idle_s) / step["task_runs_completed"] * 1000, 1)


def markdown(doc: dict[str, Any]) -> str:
    lines = ["# Fleet benchmark", "", "`python benchmarks/fleet.py`; every figure is in the JSON."]
    lines += ["Server, workers, flow runs and simulator share the same 2 cores.", ""]
    if "databases" in doc:
        part = doc["databases"]
        lines += [
            "## A. Prefect server on SQLite and on PostgreSQL",
            "",
            f"{part['workers']} process workers; flow runs of {part['task_runs_per_flow_run']} "
            "chunk task runs each; load average at the end "
            f"{part['machine']['load_average'][0]:.1f}.",
            "",
            "| database | flow runs x rows a chunk | task runs (done/expected) | task runs/min: "
            "run, recorded | chunk p50/p95 s | lag p50/p95 s | flow start delay p50/max s "
            "| events lost | database locked | server CPU ms/task run (net of idle) |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for db in part["results"]:
            for s in db["steps"]:
                lines.append(
                    f"| {db['database']} | {s['flow_runs']} x {s['rows_per_chunk']} | "
                    f"{s['task_runs_completed']}/{s['task_runs_expected']} | "
                    f"{s['task_runs_per_min']}, {s['recorded_task_runs_per_min']} | "
                    f"{s['chunk_wall_p50_s']}/{s['chunk_wall_p95_s']} | {s['lag_p50_s']}/"
                    f"{s['lag_p95_s']} | {s['flow_start_delay_p50_s']}/"
                    f"{s['flow_start_delay_max_s']} | {s['lost_events']} (drops {s['drop_lines']})"
                    f" | {s['locked_lines']} | {s['server_cpu_ms_per_task_run']} "
                    f"({net_server_ms(s, db['idle_cpu_s_per_s'])}) |"
                )
        lines.append("")
        for db in part["results"]:
            lines.append(
                f"- **{db['database']}**: sustained {db['sustained_task_runs_per_min']} task runs "
                f"per minute (step {db['sustained_step']}: nothing lost, p95 lag within "
                f"{part['lag_factor']}x the first step's or under a second); the most it "
                f"recorded in any step {db['peak_recorded_task_runs_per_min']} a minute."
            )
        lines.append("")
    if "workers" in doc:
        part = doc["workers"]
        lines += [
            "## B. One worker against two",
            "",
            f"{part['job']}, {part['rows']} rows at zero latency.",
            "",
            "| run | workers | wall s | children: wait for a worker + start + prepare + chunks + "
            "commit s "
            "| coordinator before/after s | CPU s: workers, server, simulator, coordinator |",
            "|---|---|---|---|---|---|",
        ]
        for r in part["runs"]:
            kids = "; ".join(
                f"{c['wait_for_worker_s']} + {c['start_s']} + {c['prepare_s']} + {c['chunks_s']}"
                f" + {c['commit_report_s']}"
                for c in r["children"]
            )
            c = r["cpu_s"]
            lines.append(
                f"| {r['label']} | {r['workers']} | {r['wall_s']} | {kids} | "
                f"{r['coordinator_before_children_s']}/{r['coordinator_after_children_s']} | "
                f"{c['workers']}, {c['server']}, {c['simulator']}, {c['benchmark']} |"
            )
        lines += [
            "",
            f"Median wall: {part['median_wall_1_worker_s']} s on one worker, "
            f"{part['median_wall_2_workers_s']} s on two: ratio **{part['ratio_2_over_1']}** "
            f"(per round {part['ratios_per_round']}).",
            "",
        ]
    return "\n".join(lines)


def _names(text: str) -> list[str]:
    return text.split(",")


def _steps(text: str) -> list[tuple[int, int]]:
    """``1x200,2x10``: (flow runs at once, rows per chunk) per step."""
    pairs = [item.split("x") for item in text.split(",")]
    return [(int(n), int(size)) for n, size in pairs]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    sub = parser.add_subparsers(dest="part", required=True)
    a = sub.add_parser("databases", help="part A: SQLite against PostgreSQL")
    b = sub.add_parser("workers", help="part B: one worker against two")
    both = sub.add_parser("all", help="part A, then part B")
    for p in (a, both):
        p.add_argument(
            "--databases", type=_names, default=["sqlite", "postgresql"], help="in this order"
        )
        p.add_argument(
            "--steps",
            type=_steps,
            default=_steps(DEFAULT_STEPS),
            help=f"flow runs at once x rows per chunk, per step (default {DEFAULT_STEPS})",
        )
        p.add_argument("--tasks", type=int, default=200, help="chunk task runs per flow run")
        p.add_argument("--workers", type=int, default=2, help="process workers")
        p.add_argument(
            "--lag-factor",
            type=float,
            default=2.0,
            help="sustained: p95 lag within this x the first step's",
        )
    for p in (b, both):
        p.add_argument("--split-rows", type=int, default=15000, help="rows per half")
        p.add_argument("--split", choices=sorted(SPLITS), default="shards")
        p.add_argument("--rounds", type=int, default=2, help="runs of each layout")
    for p in (a, b, both):
        p.add_argument(
            "--results", type=Path, default=ROOT / "benchmarks" / "results", help="folder"
        )
    return parser.parse_args(argv)


async def main(argv: list[str]) -> None:
    args = parse(argv)
    os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="fleet-client-"))
    os.chdir(ROOT)
    if args.part in ("databases", "all"):
        found = await databases(args)
        print(write_results("databases", found, args.results))
    if args.part in ("workers", "all"):
        found = await workers_part(args)
        print(write_results("workers", found, args.results))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
