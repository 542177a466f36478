"""A sample run of several variants, from prepared jobs to the comparison.

The sample is read once, from the first job's input, with every column any variant reads;
the variants then run on it one after another (so their latencies are not each other's
load), each under its own output's lease. The gold field is settled before anything is
sent: a ``--gold`` that names nothing costs nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from enrich.completer import Completer
from enrich.job import Job
from enrich.trial.compare import gold_field
from enrich.trial.comparison import Comparison, compare, fields_of
from enrich.trial.figures import FieldRef
from enrich.trial.sample import read_sample
from enrich.trial.session import run_trial

__all__ = ["try_jobs"]


async def try_jobs(
    labels: Sequence[str],
    jobs: Sequence[Job],
    sample_rows: int,
    *,
    stratify: str | None = None,
    gold: str | None = None,
    api_key: str | None = None,
    completer: Completer | None = None,
) -> Comparison:
    """Run ``jobs`` (the first is the base) on one sample of ``sample_rows`` rows and
    compare them; every result stays in its job's output for the full run."""
    base = jobs[0]
    columns = [c for job in jobs for c in job.read_columns]
    if gold is not None:
        column, _ = gold_field(
            gold, [FieldRef(f.label, f.column) for f in fields_of(base)], base.where
        )
        columns.append(column)
    sample = await asyncio.to_thread(
        read_sample, base, sample_rows, stratify=stratify, columns=list(dict.fromkeys(columns))
    )
    trials = []
    for label, job in zip(labels, jobs, strict=True):
        trials.append(
            await run_trial(job, sample, label=label, api_key=api_key, completer=completer)
        )
    return compare(sample, trials, gold=gold)
