"""Helpers for the Prefect integration tests: the server, its CLI, and reading runs via the API.

The server itself is the ``prefect_server`` fixture of :mod:`prefect_harness`; child processes
are started and stopped with :mod:`support.processes`.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterParentFlowRunId,
    LogFilter,
    LogFilterFlowRunId,
    TaskRunFilter,
    TaskRunFilterFlowRunId,
)
from prefect.client.schemas.objects import Artifact, FlowRun, Log, State, TaskRun
from support import start_process, stop_process

from enrich.sim.process import SimProcess

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class PrefectServer:
    api_url: str
    home: Path
    env: Mapping[str, str]

    @property
    def ui_url(self) -> str:
        return self.api_url.removesuffix("/api")

    def cli(
        self,
        *args: str,
        cwd: Path = ROOT,
        timeout: float = 120,
        env: Mapping[str, str] | None = None,
    ) -> str:
        """Run ``prefect ARGS`` against this server (``env`` added to its environment); its
        output (fails the test on error)."""
        done = subprocess.run(
            prefect_command(*args),
            cwd=cwd,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise AssertionError(f"prefect {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout


def prefect_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "prefect", *args]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def wait_until_healthy(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not _healthy(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the Prefect server did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.25)


# -- reading what runs left behind, through the API ---------------------------------------------


def run_id(state: State[Any]) -> UUID:
    """The flow run a returned state belongs to."""
    found = state.state_details.flow_run_id
    assert found is not None
    return found


def flow_run(run_id: UUID) -> FlowRun:
    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id)


def child_runs(parent_id: UUID) -> list[FlowRun]:
    """The flow runs started from ``parent_id`` (subflows and linked deployment runs)."""
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent_id])
            )
        )


def task_runs(run_id: UUID) -> list[TaskRun]:
    with get_client(sync_client=True) as client:
        return client.read_task_runs(
            task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[run_id]))
        )


def artifacts(run_id: UUID | None = None) -> dict[str, Artifact]:
    """The artifacts of a flow run (of every run when ``run_id`` is None), by key."""
    where = (
        None
        if run_id is None
        else ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
    )
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=where, limit=200)
    return {str(a.key or a.id): a for a in found}


def table(artifact: Artifact) -> list[dict[str, Any]]:
    data = artifact.data
    rows: list[dict[str, Any]] = json.loads(data) if isinstance(data, str) else data
    return rows


def logs(run_id: UUID | None = None) -> list[Log]:
    where = None if run_id is None else LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id]))
    with get_client(sync_client=True) as client:
        return client.read_logs(log_filter=where, limit=200)


#: The work pool prefect.yaml deploys to.
POOL = "enrich-process"


@contextlib.contextmanager
def simulator_and_workers(
    server: PrefectServer, tmp_path: Path, api_key: str, *sim_args: str, workers: int = 2
) -> Iterator[tuple[SimProcess, list[subprocess.Popen[bytes]]]]:
    """prefect.yaml deployed, the simulator in a process of its own (``sim_args``, accepting
    ``api_key``) and ``workers`` process workers pointed at it; all stopped on exit. Logs go
    to ``sim.log`` and ``worker-<n>/worker.log`` under ``tmp_path``."""
    server.cli("work-pool", "create", POOL, "--type", "process", "--overwrite")
    server.cli("deploy", "--all", "--no-prompt", cwd=ROOT)
    with contextlib.ExitStack() as stack:
        sim_log = stack.enter_context(open(tmp_path / "sim.log", "wb"))
        sim = SimProcess("--api-keys", api_key, *sim_args, stderr=sim_log).start()
        stack.callback(sim.stop)
        env = {
            **server.env,
            "CEREBRAS_BASE_URL": sim.base_url,
            "CEREBRAS_API_KEY": api_key,
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_WORKER_HEARTBEAT_SECONDS": "5",
        }
        started = []
        for n in range(1, workers + 1):
            home = tmp_path / f"worker-{n}"
            home.mkdir()
            log = stack.enter_context(open(home / "worker.log", "wb"))
            command = [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL]
            command += ["--type", "process", "--install-policy", "never"]
            command += ["--name", f"worker-{n}-{uuid.uuid4().hex[:6]}"]
            worker = start_process(command, env, log, cwd=home)
            stack.callback(stop_process, worker)
            started.append(worker)
        yield sim, started


def sim_arrivals(base_url: str) -> list[tuple[float, float]]:
    """Every chat request the simulator at ``base_url`` saw: ``(time, reserved tokens)``."""
    with urllib.request.urlopen(f"{base_url}/_sim/arrivals", timeout=10) as response:
        return [(t, float(n)) for t, n in json.loads(response.read())["arrivals"]]


def run_story(run: FlowRun, logs_under: Path | None = None) -> str:
    """What a failed deployment run's assertion shows: its state and message whole, each child
    run's, and the end of every worker's log under ``logs_under``."""
    lines = [f"{run.name}: {run.state_name}: {run.state.message if run.state else ''}"]
    for child in child_runs(run.id):
        message = child.state.message if child.state else ""
        lines.append(f"  {child.name}: {child.state_name}: {message}")
    for log in sorted(logs_under.glob("worker-*/worker.log")) if logs_under else ():
        lines.append(f"--- {log.parent.name}:\n{log.read_text(errors='replace')[-4000:]}")
    return "\n".join(lines)
