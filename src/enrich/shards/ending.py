"""Why a shard's run stopped for a reason of the job, and whether a new run could finish it.

A shard's run stopped by a reason of the job, one a new run would meet again, records it in
``_shards/<run>-<n>.end.json`` (:func:`record_end`) for the run that split the job
(:func:`stop_of`): the shard's share of the budget spent, the day's quota gone, too many error
rows, a refused key or unknown model, a config or input changed since the split, another run
already working on the shard. Any other unfinished end records nothing: rows that failed
transiently, storage that failed for a while, a lost lease (the job run may still hold the
output), and any failure outside the job (the Prefect API or the worker failed).

:func:`restarts` is the coordinator's decision, pure: a run that crashed (its process died) is
started again, and so is one that failed with no stop recorded, and one that ended orphaned
(it found the coordinator gone: a coordinator that reads this is not, it was only late to renew
its lease). A run that recorded a stop, one a person cancelled, and one that completed are not.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Literal

from enrich.errors import BudgetReached, ConfigError, InputError, QuotaExhausted, RunStopped
from enrich.lease import LeaseHeld, LeaseLost
from enrich.output.layout import LAYOUT
from enrich.shards.plan import ShardRef
from enrich.storage import Store

__all__ = ["RunEnd", "ShardEnd", "read_end", "record_end", "restarts", "stop_of"]

#: How a shard's flow run ended, as the coordinator reads its state (``orphaned``: cancelled by
#: the shard itself because it found the run that split the job gone).
RunEnd = Literal["completed", "failed", "crashed", "cancelled", "orphaned"]


def stop_of(error: BaseException) -> str | None:
    """The reason of the job ``error`` stopped a shard for, one a new run would meet again, or
    None when a new run may get past it."""
    if isinstance(error, BudgetReached):
        return "budget"
    if isinstance(error, QuotaExhausted):
        return "quota"
    if isinstance(error, LeaseHeld):
        return "lease"  # another run works on the shard
    if isinstance(error, LeaseLost):
        return None  # a new run goes on if the job run still holds the output, else stops
    if isinstance(error, RunStopped):
        return error.kind  # job_error (a refused key, an unknown model) or error_rate
    if isinstance(error, (ConfigError, InputError)):
        return "config"
    return None


@dataclass(frozen=True, slots=True)
class ShardEnd:
    """A shard's stop, as its run recorded it: why, in a line, and which reason of the job."""

    message: str
    stopped: str

    @classmethod
    def of(cls, error: BaseException) -> ShardEnd | None:
        """The stop ``error`` is, or None when it is not a reason of the job."""
        stopped = stop_of(error)
        if stopped is None:
            return None
        lines = str(error).strip().splitlines()
        return cls(lines[0] if lines else type(error).__name__, stopped)

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> ShardEnd | None:
        """The record in ``data``; None when it is not one (then nothing was recorded)."""
        try:
            raw = json.loads(data)
            return cls(str(raw["message"]), str(raw["stopped"]))
        except (ValueError, KeyError, TypeError):
            return None


def record_end(store: Store, ref: ShardRef, end: ShardEnd) -> None:
    """Record that shard ``ref`` stopped for a reason of the job (the last stop wins)."""
    store.write_bytes(LAYOUT.shard_end(ref.run, ref.number), end.to_bytes())


def read_end(store: Store, ref: ShardRef) -> ShardEnd | None:
    """The stop a run of shard ``ref`` recorded, if one did."""
    found = store.read_versioned(LAYOUT.shard_end(ref.run, ref.number))
    return ShardEnd.from_bytes(found.data) if found is not None else None


def restarts(run: RunEnd, end: ShardEnd | None) -> bool:
    """Whether a shard whose run ended so is started again as a new run (see the module)."""
    return run in ("crashed", "orphaned") or (run == "failed" and end is None)
