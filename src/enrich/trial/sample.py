"""Which rows a sample run takes, and reading only them.

:func:`pick_rows` is the decision, pure: each row's key (its ``row_id``: the id column's value,
else ``<file key>:<position>``) is hashed, and the rows with the smallest hashes are the sample.
So the same rows are picked every time, whatever order the files are listed or read in, a
larger sample holds every row of a smaller one (its results are reused), and an edit to other
rows moves nothing. With strata (the values of a ``--stratify`` column) the strata take turns,
each giving its next row in hash order, so every value is represented as evenly as ``n``
allows.

:func:`read_sample` reads what the pick needs: nothing when the keys are file positions and no
column stratifies, else only the id and stratifying columns; then only the sampled rows' row
ranges, with every column the variants read.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from itertools import groupby

import pyarrow as pa

from enrich.errors import ConfigError
from enrich.inputs import reader_for
from enrich.job import Job

__all__ = ["Sample", "pick_rows", "read_sample", "row_rank"]


def row_rank(key: str) -> bytes:
    """A row's place in every sample: the first 8 bytes of SHA-256 of its key."""
    return hashlib.sha256(key.encode()).digest()[:8]


def pick_rows(keys: Sequence[str], n: int, strata: Sequence[Hashable] | None = None) -> list[int]:
    """The positions (into ``keys``) of the ``n`` sampled rows, in ascending position order.

    Without ``strata``: the ``n`` keys of smallest :func:`row_rank` (ties by key). With
    ``strata`` (one value per key): the strata, ordered by their values' text, take turns
    giving their next row in rank order until ``n`` are taken or every row is.
    """
    if n < 1:
        raise ValueError("a sample has at least 1 row")
    order = sorted(range(len(keys)), key=lambda i: (row_rank(keys[i]), keys[i]))
    if strata is None:
        return sorted(order[:n])
    groups: dict[Hashable, list[int]] = defaultdict(list)
    for i in order:
        groups[strata[i]].append(i)
    queues = [groups[v] for v in sorted(groups, key=lambda v: (v is None, str(v)))]
    taken: list[int] = []
    depth = 0
    while len(taken) < n and any(depth < len(q) for q in queues):
        taken += [q[depth] for q in queues if depth < len(q)][: n - len(taken)]
        depth += 1
    return sorted(taken)


@dataclass(frozen=True, slots=True)
class Sample:
    """The sampled rows: their input columns (in input order) and their row ids."""

    table: pa.Table
    row_ids: list[str]
    total_rows: int
    stratify: str | None = None
    #: ``(source index, row)`` of each sampled row, in the table's order.
    positions: tuple[tuple[int, int], ...] = ()

    @property
    def rows(self) -> int:
        return int(self.table.num_rows)


def _require(job: Job, column: str, option: str) -> None:
    if column not in job.input_columns:
        raise ConfigError(
            f"{job.where}: {option} {column}: the input has no such column "
            f"(has: {', '.join(job.input_columns)})"
        )


def read_sample(
    job: Job,
    n: int,
    *,
    stratify: str | None = None,
    columns: Sequence[str] = (),
) -> Sample:
    """Read the ``n`` sampled rows of ``job``'s input (:func:`pick_rows`), with the columns
    the job reads plus ``columns`` (another variant's, the gold column). A missing stratify
    or extra column is a one-line error naming it, before anything is sent."""
    if stratify is not None:
        _require(job, stratify, "--stratify")
    for column in columns:
        _require(job, column, "column")
    id_column = job.config.input.id_column
    keys: list[str] = []
    strata: list[Hashable] | None = None if stratify is None else []
    located: list[tuple[int, int]] = []  # (source index, row) of each key
    survey = [c for c in (id_column, stratify) if c is not None]
    for index, source in enumerate(job.sources):
        located += [(index, row) for row in range(source.num_rows)]
        if not survey:
            keys += [f"{source.key}:{row}" for row in range(source.num_rows)]
            continue
        reader = reader_for(source, job.config.input)
        for _, table in reader.read_slices([(0, source.num_rows)], survey):
            if id_column is None:
                keys += [f"{source.key}:{row}" for row in range(table.num_rows)]
            else:
                keys += [str(v) for v in table.column(id_column).to_pylist()]
            if strata is not None and stratify is not None:
                strata += [_hashable(v) for v in table.column(stratify).to_pylist()]
    picked = pick_rows(keys, n, strata)
    wanted = list(dict.fromkeys([*job.read_columns, *columns, *([stratify] if stratify else [])]))
    read = [c for c in job.input_columns if c in wanted]
    tables: list[pa.Table] = []
    for index, group in groupby((located[i] for i in picked), key=lambda at: at[0]):
        rows = [row for _, row in group]
        reader = reader_for(job.sources[index], job.config.input)
        tables += [t for _, t in reader.read_slices(_runs(rows), read)]
    table = pa.concat_tables(tables, promote_options="default")
    at = tuple(located[i] for i in picked)
    return Sample(table, [keys[i] for i in picked], len(keys), stratify, at)


def _runs(rows: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted row numbers as the fewest ``[start, stop)`` ranges."""
    runs: list[tuple[int, int]] = []
    for row in rows:
        if runs and runs[-1][1] == row:
            runs[-1] = (runs[-1][0], row + 1)
        else:
            runs.append((row, row + 1))
    return runs


def _hashable(value: object) -> Hashable:
    """A stratum's value as a dict key (lists and mappings by their text)."""
    return value if isinstance(value, Hashable) else repr(value)
