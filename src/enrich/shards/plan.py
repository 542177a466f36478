"""How a job splits into shards, and the record a sharded run leaves for its shards.

A shard is a run of consecutive pending chunks, worked on by a flow run of its own (on any
worker); the run that split the job (the coordinator) commits the dataset once every shard is
done. :func:`shard_count` and :func:`split` decide, purely: as many shards as ``parallelism``
allows, but never so many that a shard has fewer chunks than it keeps in flight (a shard that
cannot fill its pipeline costs a flow run's start-up for little work); shards are consecutive
chunks, so each reads a contiguous stretch of the input, as even as whole chunks let.

:class:`ShardPlan` is ``_shards/<run>.json``: which chunks each shard runs, which job and
fingerprint they belong to (a shard whose job changed since refuses to run), the coordinator's
lease owner (a shard works only while that run holds the output) and each shard's share of the
run's budget, the input as the coordinator surveyed it (so a shard rebuilds the job from a
listing instead of reading the whole input again) and what the model catalogue said of the job's
models (so a shard on another machine, whose catalogue is another copy or of another hour, costs
rows at the same prices and has the same fingerprint).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from enrich.catalogue import Catalogue
from enrich.errors import EnrichError
from enrich.output.provenance import InputRecord
from enrich.planning import ChunkSpec

__all__ = ["ShardPlan", "ShardRef", "shard_count", "split"]

SHARD_PLAN_FORMAT = 1


def shard_count(pending_chunks: int, parallelism: int, chunks_in_flight: int) -> int:
    """How many shards ``pending_chunks`` chunks run in: at most ``parallelism``, each with at
    least ``chunks_in_flight`` chunks when there are that many (at least 1)."""
    if parallelism < 1 or chunks_in_flight < 1:
        raise ValueError("parallelism and chunks_in_flight must be at least 1")
    return max(1, min(parallelism, pending_chunks // chunks_in_flight))


def split(chunks: Sequence[ChunkSpec], shards: int) -> list[list[ChunkSpec]]:
    """``chunks`` in ``shards`` runs of consecutive chunks whose counts differ by at most one
    (chunks hold ``rows_per_chunk`` rows but for each file's last); fewer shards when there
    are fewer chunks, none empty."""
    if shards < 1:
        raise ValueError("shards must be at least 1")
    shards = min(shards, len(chunks))
    n = len(chunks)
    return [list(chunks[i * n // shards : (i + 1) * n // shards]) for i in range(shards)]


class ShardPlanUnreadable(EnrichError):
    """A shard plan that cannot be read (corrupt, or written by a newer version)."""


@dataclass(frozen=True, slots=True)
class ShardRef:
    """Which shard a flow run works on: ``number`` (1-based) of ``count`` of sharded run
    ``run``. Spelled ``<run>/<number>/<count>`` as a flow parameter."""

    run: str
    number: int
    count: int

    def __str__(self) -> str:
        return f"{self.run}/{self.number}/{self.count}"

    @classmethod
    def parse(cls, text: str) -> ShardRef:
        """The reference ``text`` spells; ValueError naming it when it spells none."""
        parts = text.split("/")
        try:
            run, number, count = parts[0], int(parts[1]), int(parts[2])
        except (IndexError, ValueError):
            raise ValueError(f"shard {text!r}: expected <run>/<number>/<count>") from None
        if len(parts) != 3 or not run.isalnum() or not 1 <= number <= count:
            raise ValueError(f"shard {text!r}: expected <run>/<number>/<count>")
        return cls(run, number, count)

    @property
    def label(self) -> str:
        return f"shard {self.number} of {self.count}"


@dataclass(frozen=True, slots=True)
class ShardPlan:
    """A sharded run's shards: chunk ids per shard, in order, and what they belong to.

    ``budget_shares`` are each shard's fraction of the run's budget (its share of the rows);
    ``inputs`` the input as surveyed (None: a file was not pinned, the shard surveys it again);
    ``catalogue`` the coordinator's, its entries of the job's models alone (None: not recorded,
    the shard loads its own).
    """

    run: str
    job: str
    fingerprint: str
    owner: str
    shards: tuple[tuple[str, ...], ...]
    budget_shares: tuple[float, ...]
    inputs: InputRecord | None = None
    catalogue: Catalogue | None = None

    @classmethod
    def of(
        cls,
        run: str,
        job: str,
        fingerprint: str,
        owner: str,
        shards: Sequence[Sequence[ChunkSpec]],
        inputs: InputRecord | None = None,
        catalogue: Catalogue | None = None,
    ) -> ShardPlan:
        rows = [sum(c.rows for c in shard) for shard in shards]
        total = sum(rows) or 1
        return cls(
            run=run,
            job=job,
            fingerprint=fingerprint,
            owner=owner,
            shards=tuple(tuple(c.chunk_id for c in shard) for shard in shards),
            budget_shares=tuple(r / total for r in rows),
            inputs=inputs,
            catalogue=catalogue,
        )

    def refs(self) -> list[ShardRef]:
        return [ShardRef(self.run, n, len(self.shards)) for n in range(1, len(self.shards) + 1)]

    def chunk_ids(self, ref: ShardRef) -> tuple[str, ...]:
        """The chunks of shard ``ref``; ShardPlanUnreadable when this plan has no such shard."""
        if ref.run != self.run or ref.count != len(self.shards):
            raise ShardPlanUnreadable(f"{ref.label} of run {ref.run} is not in this plan")
        return self.shards[ref.number - 1]

    def to_bytes(self) -> bytes:
        data: dict[str, Any] = {
            "format_version": SHARD_PLAN_FORMAT,
            "run": self.run,
            "job": self.job,
            "fingerprint": self.fingerprint,
            "owner": self.owner,
            "shards": [list(s) for s in self.shards],
            "budget_shares": list(self.budget_shares),
        }
        if self.inputs is not None:
            data["inputs"] = self.inputs.to_dict()
        if self.catalogue is not None:
            data["catalogue"] = self.catalogue.to_dict()
        return orjson.dumps(data)

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> ShardPlan:
        try:
            raw = orjson.loads(data)
            version = int(raw["format_version"])
            if version > SHARD_PLAN_FORMAT:
                raise ShardPlanUnreadable(
                    f"{where}: written by a newer version (format {version}); upgrade to run it"
                )
            return cls(
                run=str(raw["run"]),
                job=str(raw["job"]),
                fingerprint=str(raw["fingerprint"]),
                owner=str(raw["owner"]),
                shards=tuple(tuple(str(c) for c in s) for s in raw["shards"]),
                budget_shares=tuple(float(x) for x in raw["budget_shares"]),
                inputs=InputRecord.from_dict(raw["inputs"]) if "inputs" in raw else None,
                catalogue=(Catalogue.from_dict(raw["catalogue"]) if "catalogue" in raw else None),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ShardPlanUnreadable(f"{where}: not a shard plan ({exc})") from None
