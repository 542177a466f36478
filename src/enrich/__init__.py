"""cerebras-enrich: enrich datasets with Cerebras chat completions.

The public API is what this module exports; every other name is internal and may change::

    from enrich import Job, load_job_config, run_job, read_dataset, output_status

    config = load_job_config("configs/reviews.yaml", ["execution.max_concurrency=32"])
    job = Job.prepare(config)             # every input check, nothing spent yet
    summary = asyncio.run(run_job(job))   # -> JobSummary; committed when summary.complete
    table = read_dataset(config.output.path, config.output.storage_options)
    print(*output_status(config.output.path).lines(), sep="\\n")

Module map (the whole one, with the facts each module owns, is docs/architecture.md):

* ``config`` (schema, loader), ``job``: what a job is and its checks before any request.
* ``inputs``, ``storage``: reading input files; every byte through fsspec.
* ``engine``, ``completer``, ``client``, ``ratelimit``, ``retry``: sending requests.
* ``usage``, ``results``, ``summary``: what a request returned, a row's result, run figures.
* ``output``, ``lease``, ``run``: the output location, its commit protocol, one run at a time.
* ``partitions``, ``planning``, ``hashing``, ``template``, ``tokens``: pure decisions.
* ``sim``, ``bench``, ``cli``: the simulator, ``enrich bench`` and the engine's command line.

Names are imported on first use, so ``import enrich.sim`` does not load the engine.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_PUBLIC: dict[str, str] = {
    "JobConfig": "enrich.config",
    "load_job_config": "enrich.config",
    "Job": "enrich.job",
    "run_job": "enrich.run",
    "JobSummary": "enrich.summary",
    "read_dataset": "enrich.output.reader",
    "output_status": "enrich.output.reader",
    "OutputStatus": "enrich.output.reader",
    "EnrichError": "enrich.errors",
}

__all__ = [
    "EnrichError",
    "Job",
    "JobConfig",
    "JobSummary",
    "OutputStatus",
    "load_job_config",
    "output_status",
    "read_dataset",
    "run_job",
]

if TYPE_CHECKING:
    from enrich.config import JobConfig, load_job_config
    from enrich.errors import EnrichError
    from enrich.job import Job
    from enrich.output.reader import OutputStatus, output_status, read_dataset
    from enrich.run import run_job
    from enrich.summary import JobSummary


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'enrich' has no attribute {name!r}")
    return getattr(import_module(module), name)
