"""Whose output this is: one output location belongs to one job.

Every record a job leaves under its output names the job: the plan (written when a run starts
sending), the manifest (the committed dataset) and the lease (while a run goes). A job with
another ``name`` must not write there: its commit would replace the other job's dataset and
its garbage collection delete the other job's parts and checkpoints. :func:`refuse_other_job`
refuses it in one line naming both jobs, before the input is read and before the lease is
taken. The same job with an edited prompt, model or input is the same name: it re-commits.

Only a live lease counts (:func:`enrich.holder.holder_state`); an expired one is taken over by
whoever runs next, and the plan or manifest it left still names its job. A plan or manifest
that cannot be read names nobody (the run that writes it next replaces it); one written by a
newer version raises NewerFormat, as everywhere.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from enrich.errors import EnrichError, StorageError
from enrich.holder import Here, holder_state, look_here
from enrich.lease import read_lease
from enrich.output.layout import LAYOUT
from enrich.output.records import Manifest, NewerFormat, Plan
from enrich.storage import Store

__all__ = ["OutputTaken", "recorded_jobs", "refuse_other_job"]


class OutputTaken(EnrichError):
    """The output location belongs to another job; nothing was read, sent or written."""


def recorded_jobs(store: Store) -> list[tuple[str, str]]:
    """``(job, url of the record)`` for the plan and manifest under ``store`` that name one."""
    found = []
    for key, parse in ((LAYOUT.plan, Plan.from_bytes), (LAYOUT.manifest, Manifest.from_bytes)):
        url = store.url_of(key)
        try:
            if not store.exists(key):
                continue
            found.append((parse(store.read_bytes(key), url).job, url))
        except NewerFormat:
            raise
        except StorageError:
            continue  # unreadable: names nobody
    return found


def refuse_other_job(
    store: Store,
    job: str,
    *,
    clock: Callable[[], float] = time.time,
    look: Callable[[int], Here] = look_here,
) -> None:
    """Raise OutputTaken when a record or a live lease under ``store`` names another job."""
    for other, url in recorded_jobs(store):
        if other != job:
            raise OutputTaken(
                f"{store.url}: the output of job {other!r} ({url}), not of job {job!r}; "
                f"give job {job!r} another output.path, or delete {store.url} to reuse it"
            )
    lease = read_lease(store)
    if lease is None or lease.job == job:
        return
    now = clock()
    if holder_state(lease.holder, lease.expires_at, now=now, here=look(lease.pid)) == "live":
        raise OutputTaken(
            f"{store.url}: job {lease.job!r} is writing here ({lease.describe(now)}), not job "
            f"{job!r}; give job {job!r} another output.path"
        )
