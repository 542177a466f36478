"""Shared fixtures: the simulator and a moto S3 server (real HTTP on 127.0.0.1), job configs.

The helpers behind them live in the ``support`` package; tests import those from there.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import (
    AWS_ENV,
    AWS_UNSET,
    JobFactory,
    Location,
    MotoServer,
    counting_reads,
    job_writer,
    make_location,
    point_sdk_at,
)

from enrich.catalogue import CACHE_ENV, OFFLINE_ENV
from enrich.output.spill import SPILL_ENV
from enrich.sim.config import Faults, SimConfig
from enrich.sim.harness import ThreadedSimulator

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")


@pytest.fixture(autouse=True)
def spill_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Results spilled while storage is down go under the test's tmp_path, never ~/.cache."""
    folder = tmp_path / "spill"
    monkeypatch.setenv(SPILL_ENV, str(folder))
    return folder


@pytest.fixture(autouse=True)
def catalogue_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The model catalogue is cached under the test's tmp_path, and never fetched from the
    real provider: a test pointed at a simulator (``point_sdk_at``) fetches it from there."""
    folder = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(folder))
    monkeypatch.setenv(OFFLINE_ENV, "1")
    return folder


@pytest.fixture(scope="session")
def sim_server() -> Iterator[ThreadedSimulator]:
    with ThreadedSimulator(SimConfig()) as server:
        yield server


@pytest.fixture
def sim(sim_server: ThreadedSimulator, monkeypatch: pytest.MonkeyPatch) -> ThreadedSimulator:
    """The shared simulator, counters zeroed, limits and faults cleared, SDK pointed at it."""
    sim_server.reset()
    sim_server.set_limits(rpm=None, tpm=None, rpd=None, tpd=None)
    sim_server.set_faults(**{fault.name: fault.default for fault in dataclasses.fields(Faults)})
    point_sdk_at(sim_server, monkeypatch)
    return sim_server


@pytest.fixture
def make_job(tmp_path: Path) -> JobFactory:
    """Write a job config (and optionally its input) under tmp_path; returns the YAML path."""
    return job_writer(tmp_path)


@pytest.fixture
def counted_reads() -> Counter[str]:
    """Reads per file of everything opened through ``counted://`` (a local path) from now."""
    return counting_reads()


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


@pytest.fixture
def s3(moto_server: MotoServer) -> Location:
    """A new, empty bucket on the moto server."""
    bucket = moto_server.new_bucket()
    return Location("s3", f"s3://{bucket}", {"endpoint_url": moto_server.endpoint_url})


@pytest.fixture(params=["file", "memory", "s3"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> Location:
    """A fresh root on each backend in turn: file://, memory:// and s3:// (moto)."""
    return make_location(str(request.param), request, tmp_path)


@pytest.fixture(params=["file", "s3"])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Location:
    """A fresh root on local disk, then on S3 (moto): the two backends of a real deployment."""
    return make_location(str(request.param), request, tmp_path)
