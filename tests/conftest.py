"""Shared fixtures: the simulator and a moto S3 server (real HTTP on 127.0.0.1), job configs."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from enrich.sim.config import SimConfig
from enrich.sim.harness import SimServer
from enrich.storage import Store

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "test-key-not-a-secret"

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")


@pytest.fixture(scope="session")
def sim_server() -> Iterator[SimServer]:
    with SimServer(SimConfig()) as server:
        yield server


@pytest.fixture
def sim(sim_server: SimServer, monkeypatch: pytest.MonkeyPatch) -> SimServer:
    """The shared simulator, counters zeroed, limits and faults cleared, SDK pointed at it."""
    sim_server.reset()
    sim_server.set_limits(rpm=None, tpm=None, rpd=None, tpd=None)
    sim_server.set_faults(fail_429=0, fail_500=0, fail_503=0, hang=0, drop=0, error_body=0)
    monkeypatch.setenv("CEREBRAS_BASE_URL", sim_server.base_url)
    monkeypatch.setenv("CEREBRAS_API_KEY", API_KEY)
    return sim_server


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path


def review_rows(n: int, duplicates: int = 0) -> list[dict[str, Any]]:
    """``n`` small reviews; the last ``duplicates`` repeat earlier texts (same request)."""
    rows = [
        {
            "review_id": f"r-{i:05d}",
            "rating": 1 + i % 5,
            "text": f"Review number {i}: the product did {'well' if i % 3 else 'poorly'}.",
        }
        for i in range(n - duplicates)
    ]
    for j in range(duplicates):
        rows.append({**rows[j], "review_id": f"r-dup-{j:05d}"})
    return rows


JobFactory = Callable[..., Path]


async def eventually(predicate: Callable[[], bool], within_s: float = 30.0) -> None:
    """Poll ``predicate`` on the event loop until it holds (fails after ``within_s``)."""
    for _ in range(int(within_s / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition never held")


@pytest.fixture
def make_job(tmp_path: Path) -> JobFactory:
    """Write a job config (and optionally its input) under tmp_path; returns the YAML path."""

    def make(
        rows: list[dict[str, Any]] | None = None,
        *,
        input_path: str | None = None,
        output_path: str | None = None,
        **sections: Any,
    ) -> Path:
        if input_path is None:
            input_path = str(
                write_jsonl(tmp_path / "in" / "reviews.jsonl", rows or review_rows(20))
            )
        config: dict[str, Any] = {
            "input": {"path": input_path, "id_column": "review_id"},
            "prompt": {"system": "Classify the review.", "template": "Rating {rating}: {text}"},
            "model": "gpt-oss-120b",
            "params": {"max_completion_tokens": 32, "temperature": 0},
            "output": {"path": output_path or str(tmp_path / "out")},
            "execution": {
                "rows_per_chunk": 7,
                "chunks_in_flight": 3,
                "max_concurrency": 16,
                "journal_interval_s": 0.05,
                "journal_rows": 5,
                "retry": {"attempts": 3, "backoff_initial": 0.01, "backoff_max": 0.05},
            },
            "pricing": {"input_per_million": 0.35, "output_per_million": 0.75},
        }
        for key, value in sections.items():
            if isinstance(value, dict) and isinstance(config.get(key), dict):
                config[key] = {**config[key], **value}
            else:
                config[key] = value
        path = tmp_path / "job.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    return make


# -- object storage: a real S3-protocol server (moto) on 127.0.0.1 ------------------------------

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
# Variables that would point boto at a real account or another endpoint.
AWS_UNSET = (
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MotoServer:
    """``python -m moto.server`` in its own process: an S3 endpoint on 127.0.0.1."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self._env = {**os.environ, **AWS_ENV, **(env or {})}
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> MotoServer:
        command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        self._process = subprocess.Popen(
            command, env=self._env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{self.endpoint_url}/moto-api/data.json", timeout=1):
                    return self
            except OSError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the moto S3 server did not start") from None
                time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)

    def client(self, service: str = "s3", **credentials: str) -> Any:
        import boto3

        return boto3.client(
            service, endpoint_url=self.endpoint_url, region_name="us-east-1", **credentials
        )

    def new_bucket(self) -> str:
        name = f"test-{uuid.uuid4().hex[:20]}"
        self.client().create_bucket(Bucket=name)
        return name


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """One moto S3 server for the session; the session's AWS environment points at nothing real.

    The endpoint is not put in the environment: tests pass it in ``storage_options`` (or set
    ``AWS_ENDPOINT_URL`` themselves), so a missing option fails instead of passing by luck.
    """
    with pytest.MonkeyPatch.context() as mp:
        for name, value in AWS_ENV.items():
            mp.setenv(name, value)
        for name in AWS_UNSET:
            mp.delenv(name, raising=False)
        with MotoServer() as server:
            yield server


@dataclass(frozen=True)
class Location:
    """A fresh root on one backend: ``url(key)`` and the ``storage_options`` to reach it."""

    backend: str
    root: str
    storage_options: dict[str, Any]

    def url(self, key: str = "") -> str:
        return f"{self.root}/{key}" if key else self.root

    def store(self, key: str = "") -> Store:
        return Store(self.url(key), self.storage_options)

    def put(self, key: str, data: bytes) -> str:
        self.store().write_bytes(key, data)
        return self.url(key)


@pytest.fixture
def s3(moto_server: MotoServer) -> Location:
    """A new, empty bucket on the moto server."""
    bucket = moto_server.new_bucket()
    return Location("s3", f"s3://{bucket}", {"endpoint_url": moto_server.endpoint_url})


def make_location(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Location:
    if backend == "file":
        return Location("file", f"file://{tmp_path}/store", {})
    if backend == "memory":
        return Location("memory", f"memory://test-{uuid.uuid4().hex[:12]}", {})
    location: Location = request.getfixturevalue("s3")
    return location


@pytest.fixture(params=["file", "memory", "s3"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> Location:
    """A fresh root on each backend in turn: file://, memory:// and s3:// (moto)."""
    return make_location(str(request.param), request, tmp_path)
