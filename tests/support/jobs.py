"""A job to run: input rows, a job config on a location, preparing and running it.

``job_writer(tmp_path)`` is the body of the ``make_job`` fixture: it writes a small, valid job
config (reviews in, a classification prompt, a fast retry policy) and returns its path; keyword
sections are merged over the defaults. ``job_on`` puts the input and the output of such a job
on one storage location (``job_reading`` when the input is already there). ``run_config``
prepares and runs a config the way ``enrich run --direct`` does and returns the job with its
summary.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import orjson
import yaml

from enrich.config import load_job_config
from enrich.job import Job
from enrich.run import run_job
from enrich.summary import JobSummary
from support.storage import Location

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "test-key-not-a-secret"

JobFactory = Callable[..., Path]


def jsonl_bytes(rows: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in rows)


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jsonl_bytes(rows))
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


def job_writer(tmp_path: Path) -> JobFactory:
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
            # Above the simulator's longest answer (48 tokens): every row finishes ("stop").
            "params": {"max_completion_tokens": 64, "temperature": 0},
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


def job_reading(location: Location, make_job: JobFactory, source: str, **sections: Any) -> Path:
    """A job that reads ``source`` and writes its output and checkpoints under ``location``."""
    options = location.storage_options
    return make_job(
        input={"path": source, "storage_options": options},
        output={"path": location.url("out"), "storage_options": options},
        **sections,
    )


def job_on(
    location: Location, make_job: JobFactory, rows: list[dict[str, Any]], **sections: Any
) -> Path:
    """A job whose input (``rows`` as JSONL), output and checkpoints are all under ``location``."""
    source = location.put("in/reviews.jsonl", jsonl_bytes(rows))
    return job_reading(location, make_job, source, **sections)


def prepare_job(config: Path, overrides: Sequence[str] | Mapping[str, Any] = ()) -> Job:
    """The job ``enrich run CONFIG`` would run, with ``KEY.PATH=VALUE`` overrides."""
    return Job.prepare(load_job_config(config, overrides), where=str(config))


class Ran(NamedTuple):
    """A job run to its end, and the summary the run returned."""

    job: Job
    summary: JobSummary


def run_config(
    config: Path, overrides: Sequence[str] | Mapping[str, Any] = (), **options: Any
) -> Ran:
    """Prepare and run ``config`` without Prefect; ``options`` go to ``run_job``."""
    job = prepare_job(config, overrides)
    return Ran(job, asyncio.run(run_job(job, **options)))
