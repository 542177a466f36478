"""The two sides of every comparison: the pipeline, and a bare loop over the same SDK client.

:func:`run_pipeline` runs a job through :func:`enrich.run.run_job` exactly as ``enrich run
--direct`` does. :func:`run_bare` is what a person would write without the pipeline: the same
``AsyncCerebras`` (same aiohttp transport and connection limit, SDK retries off, no warm-up,
built by :func:`enrich.client.build_sdk_client`), an ``asyncio.Semaphore`` of the same
concurrency, ``asyncio.gather`` over every request, and the SDK's normal
``chat.completions.create`` with its response models. With ``retry_throttled`` it sleeps for
the 429's ``retry-after`` and tries again, the simplest way to survive a quota; with
``retry_errors`` it also tries a 5xx again after half a second.

Both measure wall time and the CPU time of this process (every thread) and can be cut off
after ``stop_after`` seconds, for runs that are measured over a time window.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cerebras.cloud.sdk import APIError, APIStatusError, RateLimitError

from enrich.bench.workload import API_KEY, MAX_COMPLETION_TOKENS, MODEL
from enrich.client import build_sdk_client
from enrich.config import load_job_config
from enrich.engine import Engine
from enrich.job import Job
from enrich.run import run_job


@dataclass
class SideRun:
    """What one side did: rows finished, wall and CPU seconds, requests sent, 429s received.

    A pipeline cut off before the end counts as finished only the rows of committed chunks;
    its ``requests`` are the attempts its rate controller let through.
    """

    side: str
    rows: int
    elapsed_s: float
    cpu_s: float
    requests: int = 0
    throttled: int = 0
    errors: int = 0
    complete: bool = True
    controller: dict[str, Any] = field(default_factory=dict)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def cpu_s_per_1000_rows(self) -> float:
        return 1000 * self.cpu_s / self.rows if self.rows else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "elapsed_s": round(self.elapsed_s, 3),
            "rows_per_s": round(self.rows_per_s, 2),
            "cpu_s": round(self.cpu_s, 3),
            "cpu_s_per_1000_rows": round(self.cpu_s_per_1000_rows, 4),
            "requests": self.requests,
            "throttled": self.throttled,
            "errors": self.errors,
            "complete": self.complete,
            **({"controller": self.controller} if self.controller else {}),
        }


async def _until(work: Awaitable[Any], stop_after: float | None) -> tuple[bool, Any]:
    """Await ``work``, cancelling it after ``stop_after`` seconds: ``(finished, result)``."""
    task = asyncio.ensure_future(work)
    done, _ = await asyncio.wait({task}, timeout=stop_after)
    if done:
        return True, task.result()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return False, None


async def run_pipeline(config_path: Path, *, stop_after: float | None = None) -> SideRun:
    """Run the job at ``config_path`` end to end (or for ``stop_after`` seconds)."""
    job = Job.prepare(load_job_config(config_path), where=str(config_path))
    engines: list[Engine] = []

    async def monitor(engine: Engine) -> None:
        engines.append(engine)
        await asyncio.Event().wait()  # until run_job cancels it

    cpu, started = time.process_time(), time.perf_counter()
    finished, summary = await _until(run_job(job, api_key=API_KEY, monitor=monitor), stop_after)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    engine = engines[0] if engines else None
    stats = engine.controller.stats if engine is not None else None
    if finished:
        rows, failed, complete = summary.ok, summary.failed, summary.complete
    else:
        progress = engine.progress if engine is not None else None
        rows = progress.rows_done if progress is not None else 0
        failed, complete = 0, False
    return SideRun(
        side="pipeline",
        rows=rows,
        elapsed_s=elapsed,
        cpu_s=cpu,
        requests=stats.acquired if stats is not None else 0,
        throttled=stats.throttled if stats is not None else 0,
        errors=failed,
        complete=complete,
        controller={
            "throttled": stats.throttled,
            "backoffs": stats.backoffs,
            "effective_rpm": stats.effective_rpm,
            "effective_tpm": stats.effective_tpm,
        }
        if stats is not None
        else {},
    )


async def run_bare(
    base_url: str,
    messages: Sequence[Sequence[dict[str, str]]],
    *,
    concurrency: int,
    retry_throttled: bool = False,
    retry_errors: bool = False,
    stop_after: float | None = None,
) -> SideRun:
    """Send ``messages`` with a semaphore and ``asyncio.gather``; see the module doc."""
    client = build_sdk_client(api_key=API_KEY, base_url=base_url, max_connections=concurrency)
    semaphore = asyncio.Semaphore(concurrency)
    counts = {"ok": 0, "errors": 0, "throttled": 0, "requests": 0, "server_errors": 0}

    async def one(request: Sequence[dict[str, str]]) -> None:
        async with semaphore:
            while True:
                counts["requests"] += 1
                try:
                    await client.chat.completions.create(
                        model=MODEL,
                        messages=request,  # type: ignore[arg-type]
                        max_completion_tokens=MAX_COMPLETION_TOKENS,
                    )
                except RateLimitError as exc:
                    counts["throttled"] += 1
                    if retry_throttled:
                        await asyncio.sleep(_retry_after(exc.response.headers.get("retry-after")))
                        continue
                    counts["errors"] += 1
                except APIStatusError as exc:
                    if retry_errors and exc.status_code >= 500:
                        counts["server_errors"] += 1
                        await asyncio.sleep(0.5)
                        continue
                    counts["errors"] += 1
                except APIError:
                    counts["errors"] += 1
                else:
                    counts["ok"] += 1
                return

    try:
        cpu, started = time.process_time(), time.perf_counter()
        finished, _ = await _until(asyncio.gather(*(one(m) for m in messages)), stop_after)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    finally:
        await client.close()
    return SideRun(
        side="bare",
        rows=counts["ok"],
        elapsed_s=elapsed,
        cpu_s=cpu,
        requests=counts["requests"],
        throttled=counts["throttled"],
        errors=counts["errors"],
        complete=finished,
    )


def _retry_after(value: str | None) -> float:
    try:
        return max(0.0, float(value)) if value is not None else 1.0
    except ValueError:
        return 1.0
