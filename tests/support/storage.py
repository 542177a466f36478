"""Storage for tests: a real S3-protocol server (moto) on 127.0.0.1, and fresh roots per backend.

``MotoServer`` runs ``python -m moto.server`` in a child process, so boto and s3fs talk to it
over HTTP exactly as to S3. A :class:`Location` is a fresh, empty root on one backend
(``file://``, ``memory://`` or ``s3://``) with the ``storage_options`` that reach it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from enrich.storage import Store
from support.processes import free_port, start_process, stop_process, wait_for_http

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


class MotoServer:
    """``python -m moto.server`` in its own process: an S3 endpoint on 127.0.0.1."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self._env = {**os.environ, **AWS_ENV, **(env or {})}
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> MotoServer:
        command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        self._process = start_process(command, self._env)
        try:
            wait_for_http(f"{self.endpoint_url}/moto-api/data.json", self._process)
        except RuntimeError:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        process, self._process = self._process, None
        if process is not None:
            stop_process(process)

    def client(self, service: str = "s3", **credentials: str) -> Any:
        import boto3

        return boto3.client(
            service, endpoint_url=self.endpoint_url, region_name="us-east-1", **credentials
        )

    def new_bucket(self) -> str:
        name = f"test-{uuid.uuid4().hex[:20]}"
        self.client().create_bucket(Bucket=name)
        return name


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


def make_location(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Location:
    """A fresh root on ``backend``; ``s3`` takes a new bucket from the ``s3`` fixture."""
    if backend == "file":
        return Location("file", f"file://{tmp_path}/store", {})
    if backend == "memory":
        return Location("memory", f"memory://test-{uuid.uuid4().hex[:12]}", {})
    location: Location = request.getfixturevalue("s3")
    return location
