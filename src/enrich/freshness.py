"""Whether an output's committed dataset is still the job's, told without reading the input.

The schedule and the backfill ask this of every partition in their window, every run; the
answer must cost what the window's outputs and listings cost, not what its data weighs.
:func:`current_manifest` reads the output's success marker and manifest and lists the input
once. The manifest records what the dataset was made from
(:class:`~enrich.output.provenance.InputRecord`): each file's key, pin (size and ETag, or
modification time on local disk) and row count, and the input's columns. When the listing
shows exactly those files at those pins, the input is the one surveyed at commit, so the job
is rebuilt from the record (no byte read) and :func:`~enrich.output.committed.is_committed`
decides as it would after a full survey: same fingerprint (an edited prompt, model or price
is not this dataset) and same chunks (another chunk size is not). A file added, gone or
rewritten makes the output not current, and the run that follows surveys the input as always.

A manifest that recorded no input (committed by an earlier version) is checked the old way,
by preparing the job, which surveys the whole input.
"""

from __future__ import annotations

from enrich.config import JobConfig
from enrich.inputs import list_sources
from enrich.job import Job
from enrich.output.committed import committed_manifest, is_committed
from enrich.output.provenance import InputRecord
from enrich.output.records import Manifest
from enrich.storage import Store

__all__ = ["current_manifest"]


def current_manifest(config: JobConfig, where: str = "job") -> Manifest | None:
    """The committed manifest under ``config``'s output if it is this job's over the input now.

    None when nothing is committed, when the input changed since the commit, or when the
    dataset was made by another config. Raises what listing the input raises (InputError when
    nothing matches, StorageError), and ConfigError when the config no longer fits the
    recorded input (a template naming a column it lacks), as preparing the job would.
    """
    manifest = committed_manifest(Store(config.output.path, config.output.storage_options))
    if manifest is None:
        return None
    if manifest.inputs is None:
        job: Job | None = Job.prepare(config, where=where)
    else:
        job = _recorded_job(config, manifest.inputs, where)
    if job is None or not is_committed(manifest, job.fingerprint, (c.chunk_id for c in job.chunks)):
        return None
    return manifest


def _recorded_job(config: JobConfig, record: InputRecord, where: str) -> Job | None:
    """The job over the input as recorded, if one listing shows it unchanged; else None."""
    listed = list_sources(config.input)
    if record.change(listed) is not None:
        return None
    return Job(config, record.sources(listed), list(record.columns), where)
