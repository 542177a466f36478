"""A real Prefect server for the integration tests: ``prefect server start`` on 127.0.0.1.

A pytest plugin (test modules name it in ``pytest_plugins``) so that every module shares one
server per session: it takes 10-20 s to start on a small machine. The server keeps its
database and home in a temporary directory and is stopped when the session ends. The test
process talks to it through ``PREFECT_API_URL``; :attr:`PrefectServer.env` is the environment
for Prefect CLI children (deploy, worker).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogWorker
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect_api import PrefectServer, prefect_command, wait_until_healthy
from support import ROOT, free_port, start_process, stop_process


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """A Prefect server for the whole session, and this process pointed at it."""
    home = tmp_path_factory.mktemp("prefect")
    api_url = f"http://127.0.0.1:{free_port()}/api"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")},
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": api_url,
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home}/prefect.db",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
        "DO_NOT_TRACK": "1",
    }
    log_path = home / "server.log"
    port = api_url.rsplit(":", 1)[1].removesuffix("/api")
    with open(log_path, "wb") as log:
        proc = start_process(
            prefect_command("server", "start", "--host", "127.0.0.1", "--port", port),
            env,
            log,
            home,
        )
        try:
            wait_until_healthy(proc, api_url, log_path)
            with temporary_settings(updates={PREFECT_API_URL: api_url}):
                yield PrefectServer(api_url=api_url, home=home, env=env)
                # Send what the runs of this process still hold before the server goes.
                APILogWorker.drain_all(timeout=10)
                EventsWorker.drain_all(timeout=10)
        finally:
            stop_process(proc)


@pytest.fixture
def in_repo(monkeypatch: pytest.MonkeyPatch, prefect_server: PrefectServer) -> None:
    """Job configs name repository paths, relative to the repository root (the server up)."""
    monkeypatch.chdir(ROOT)
