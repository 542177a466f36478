"""Reproduce the Prefect UI screenshots in the README.

    .venv/bin/python docs/screenshot.py          # needs Chromium: apt-get install chromium

Starts a Prefect server on 127.0.0.1 with a scratch database, the bundled simulator (with
some latency, so the runs take a few seconds), and a process worker; creates the work pool;
runs ``prefect deploy --all``; runs the sample backfill (2026-11-20 to 2026-11-23) into a
scratch output; then has headless Chromium save

* ``docs/prefect-ui.png``: the finished backfill run, its partition runs and its artifacts;
* ``docs/prefect-ui-report.png``: the backfill's markdown report.

Everything it starts is stopped at the end; nothing is written outside ``docs/`` and a
temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
START, END = "2026-11-20", "2026-11-23"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def process(args: list[str], env: dict[str, str], log: Path, cwd: Path) -> Iterator[None]:
    """A child in its own process group, stopped (group and all) on exit."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            args, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def wait_healthy(api_url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), urllib.request.urlopen(f"{api_url}/health", timeout=2):
            return
        time.sleep(0.5)
    raise RuntimeError("the Prefect server did not start")


def prefect(*args: str, env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-m", "prefect", *args], cwd=ROOT, env=env, check=True)


def screenshot(chromium: str, url: str, out: Path, size: str) -> None:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                "--virtual-time-budget=15000",  # let the single-page app fetch and render
                f"--window-size={size}",
                f"--screenshot={out}",
                url,
            ],
            check=True,
            capture_output=True,
        )
    print(f"wrote {out.relative_to(ROOT)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    options = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="enrich-screenshot-"))
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env |= {
        "PREFECT_HOME": str(scratch / "prefect"),
        "PREFECT_API_URL": api_url,
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{scratch}/prefect.db",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
        "DO_NOT_TRACK": "1",
    }
    sim_port = free_port()
    server = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1"]
    sim = [sys.executable, "-m", "enrich.sim", "--port", str(sim_port), "--ttft", "0.3"]
    worker = [sys.executable, "-m", "prefect", "worker", "start", "--pool", "enrich-process"]
    worker += ["--type", "process", "--install-policy", "never", "--name", "screenshot"]
    worker_env = env | {
        "CEREBRAS_BASE_URL": f"http://127.0.0.1:{sim_port}",
        "CEREBRAS_API_KEY": "demo-key-for-the-local-simulator",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
    }
    with contextlib.ExitStack() as stack:
        stack.enter_context(
            process([*server, "--port", str(port)], env, scratch / "s.log", scratch)
        )
        stack.enter_context(
            process([*sim, "--tokens-per-second", "300"], env, scratch / "m.log", ROOT)
        )
        wait_healthy(api_url)
        prefect("work-pool", "create", "enrich-process", "--type", "process", env=env)
        prefect("deploy", "--all", "--no-prompt", env=env)
        stack.enter_context(process(worker, worker_env, scratch / "w.log", scratch))

        os.environ.update({k: v for k, v in env.items() if k.startswith("PREFECT_")})
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
        from prefect.deployments import arun_deployment

        run = asyncio.run(
            arun_deployment(
                "enrich-backfill/reviews-backfill",
                parameters={
                    "start": START,
                    "end": END,
                    "parallelism": 2,
                    "overrides": [f"output.path={scratch}/out"],
                },
                timeout=600,
                poll_interval=1,
            )
        )
        if run.state is None or not run.state.is_completed():
            raise SystemExit(f"the backfill did not complete: {run.state}")
        with get_client(sync_client=True) as client:
            found = client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]))
            )
        report = next(a for a in found if a.key == "backfill-reviews-daily-report")
        ui = api_url.removesuffix("/api")
        time.sleep(2)  # the run graph's last events
        screenshot(
            options.chromium,
            f"{ui}/v2/runs/flow-run/{run.id}?tab=Artifacts",
            DOCS / "prefect-ui.png",
            "1400,1000",
        )
        screenshot(
            options.chromium,
            f"{ui}/v2/artifacts/artifact/{report.id}",
            DOCS / "prefect-ui-report.png",
            "1400,900",
        )
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
