"""Shared fixtures: the simulator (real HTTP on 127.0.0.1) and job configs in temp dirs."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from enrich.sim.config import SimConfig
from enrich.sim.harness import SimServer

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
