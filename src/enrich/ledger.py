"""A monthly budget across runs: what each month's runs spent, kept with the outputs.

A deployment that runs every day (one partition a run) may cap what a calendar month (UTC)
spends with ``budget.monthly_usd``. The month's record lives under the job's output (its
``budget.ledger``: by default the output, for a partitioned job its root, before the
partition's ``{date}``), at ``_budget/<YYYY-MM>.json``, never in a process's memory, so runs on
any worker, one after another or at once, share it.

A run *holds* its share of the month before it sends anything: what it may spend
(``budget.max_usd``, or everything left of the month without one), capped by what the month has
left once what was spent and what other runs hold are taken off. When it ends it *settles*: its
hold is replaced by what it spent. Two runs at once therefore cannot both spend the same
dollars. A run that died without settling leaves its hold behind; the next run of the same
output charges that hold in full (it cannot know what the dead run spent, and it may have spent
all of it) before it takes its own. Give runs a ``max_usd`` so a hold, and what a crash can
cost the month, stays small.

Every change is a compare-and-swap of the record (:meth:`enrich.storage.Store.swap`), read
again and retried when another run changed it in between. :func:`take_hold` and
:func:`settle_hold` are the pure arithmetic; :class:`Ledger` does the IO.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from enrich.errors import StorageError
from enrich.output.layout import LAYOUT
from enrich.storage import Store

__all__ = ["FORMAT_VERSION", "Ledger", "MonthRecord", "month_of", "settle_hold", "take_hold"]

FORMAT_VERSION = 1
_ATTEMPTS = 50


def month_of(moment: datetime) -> str:
    """The month (``YYYY-MM``, UTC) ``moment`` falls in; a naive moment is taken as UTC."""
    return f"{moment.astimezone(UTC) if moment.tzinfo else moment:%Y-%m}"


@dataclass(frozen=True)
class MonthRecord:
    """One month: ``spent`` units settled by runs (by output), ``holds`` of runs going on."""

    month: str
    spent: dict[str, int] = field(default_factory=dict)
    holds: dict[str, int] = field(default_factory=dict)

    @property
    def total_spent(self) -> int:
        return sum(self.spent.values())

    def to_bytes(self) -> bytes:
        body = {
            "format_version": FORMAT_VERSION,
            "month": self.month,
            "spent": dict(sorted(self.spent.items())),
            "holds": dict(sorted(self.holds.items())),
        }
        return json.dumps(body, indent=1).encode()

    @classmethod
    def parse(cls, data: bytes, where: str) -> MonthRecord:
        try:
            body: Any = json.loads(data)
            version = body.get("format_version", 1)
            if version > FORMAT_VERSION:
                raise StorageError(
                    f"{where}: written by a newer version (format {version}); upgrade to read it"
                )
            return cls(
                str(body["month"]),
                {str(k): int(v) for k, v in body["spent"].items()},
                {str(k): int(v) for k, v in body["holds"].items()},
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StorageError(f"{where}: not a monthly budget record ({exc})") from None


def take_hold(
    record: MonthRecord, run: str, want: int | None, limit: int
) -> tuple[MonthRecord, int]:
    """``(the record with run's hold, units held)``: ``want`` (``None``: all that is left),
    at most what ``limit`` leaves once spending and other runs' holds are taken off.

    A hold ``run`` left behind (it never settled) is charged in full first. Nothing is held
    (and 0 returned) when nothing is left.
    """
    spent, holds = dict(record.spent), dict(record.holds)
    stale = holds.pop(run, 0)
    if stale:
        spent[run] = spent.get(run, 0) + stale
    left = max(0, limit - sum(spent.values()) - sum(holds.values()))
    held = left if want is None else min(want, left)
    if held:
        holds[run] = held
    return replace(record, spent=spent, holds=holds), held


def settle_hold(record: MonthRecord, run: str, spent_units: int) -> MonthRecord:
    """The record once ``run`` spent ``spent_units``: its hold replaced by what it spent."""
    spent, holds = dict(record.spent), dict(record.holds)
    holds.pop(run, None)
    if spent_units:
        spent[run] = spent.get(run, 0) + spent_units
    return replace(record, spent=spent, holds=holds)


class Ledger:
    """The monthly record of one month under ``store``, changed by compare-and-swap."""

    def __init__(self, store: Store, moment: datetime) -> None:
        self.store = store
        self.month = month_of(moment)
        self.key = LAYOUT.budget_month(self.month)

    def read(self) -> MonthRecord:
        """The month's record as it is now (empty when no run has written it)."""
        found = self.store.read_versioned(self.key)
        if found is None:
            return MonthRecord(self.month)
        return MonthRecord.parse(found.data, self.store.url_of(self.key))

    def hold(self, run: str, want: int | None, limit: int) -> tuple[MonthRecord, int]:
        """Take ``run``'s hold (:func:`take_hold`); ``(the record before, units held)``."""
        result: list[tuple[MonthRecord, int]] = []

        def change(before: MonthRecord) -> MonthRecord:
            after, held = take_hold(before, run, want, limit)
            result[:] = [(before, held)]
            return after

        self._swap(change)
        return result[0]

    def settle(self, run: str, spent_units: int) -> None:
        """Replace ``run``'s hold with what it spent (:func:`settle_hold`)."""
        self._swap(lambda before: settle_hold(before, run, spent_units))

    def _swap(self, change: Callable[[MonthRecord], MonthRecord]) -> None:
        where = self.store.url_of(self.key)
        for _ in range(_ATTEMPTS):
            found = self.store.read_versioned(self.key)
            before = (
                MonthRecord(self.month) if found is None else MonthRecord.parse(found.data, where)
            )
            after = change(before)
            expected = None if found is None else found.version
            if self.store.swap(self.key, after.to_bytes(), expected) is not None:
                return
        raise StorageError(f"{where}: changed by other runs {_ATTEMPTS} times in a row; try again")
