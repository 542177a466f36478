"""Every key under an output location, built and parsed in one place.

Layout under the output URL (keys are relative to it)::

    parts/<slot>/<chunk_id>.<ext>            one data file per committed chunk
    _chunks/<chunk_id>.json                  the chunk's commit record (written after its part)
    _journal/<chunk_id>-<nonce>.arrow        results journaled while a chunk runs
    _plan.json                               what the current job plans to commit
    _lease.json                              held by the run writing here (see enrich.lease)
    _shards/<run>.json                       a sharded run's shards (see enrich.shards)
    _shards/<run>-<n>.lease.json             held by the flow run working on shard n
    _shards/<run>-<n>.end.json               the stop of the job a run of shard n met
    _budget/<YYYY-MM>.json                   a monthly budget's record (see enrich.ledger)
    _manifest.json                           the committed dataset: the only list readers trust
    _SUCCESS                                 written last

:class:`OutputLayout` is the only code that spells these names. Each kind of key has one
function that builds it and one that parses it back (``None`` for a key that is not of that
kind), so a listing of the store is read with the same rule that wrote it. Pure: no IO.

Journal entries are read output-wide, by request hash (:mod:`enrich.output.index`): the chunk
in their name only tells whose they were. Entries written by earlier versions under a slot
folder (``_journal/<slot>/<chunk_id>-<nonce>.arrow``) are still parsed, so a run interrupted
before an upgrade keeps what it paid for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from enrich.results import OutputFormat

# The file extension of a part, per output format.
_EXTENSIONS: Final[dict[OutputFormat, str]] = {"parquet": "parquet", "jsonl": "jsonl"}
_FORMATS: Final[dict[str, OutputFormat]] = {ext: fmt for fmt, ext in _EXTENSIONS.items()}


@dataclass(frozen=True, slots=True)
class PartKey:
    """What a part's key says: the slot it belongs to, its chunk and its format."""

    slot_id: str
    chunk_id: str
    fmt: OutputFormat


@dataclass(frozen=True, slots=True)
class JournalKey:
    """What a journal entry's key says: its chunk and the nonce of that flush.

    ``slot_id`` is set only for an entry of the earlier per-slot layout.
    """

    chunk_id: str
    nonce: str
    slot_id: str | None = None


def _name(key: str, folder: str, depth: int) -> list[str] | None:
    """The ``depth`` path components of ``key`` below ``folder``, or None if it is not there."""
    head, sep, rest = key.partition("/")
    if head != folder or not sep:
        return None
    components = rest.split("/")
    if len(components) != depth or not all(components):
        return None
    return components


@dataclass(frozen=True, slots=True)
class OutputLayout:
    """The names of an output location's folders and files, and how their keys are made."""

    parts: str = "parts"
    chunks: str = "_chunks"
    journal: str = "_journal"
    plan: str = "_plan.json"
    lease: str = "_lease.json"
    manifest: str = "_manifest.json"
    success: str = "_SUCCESS"
    budget: str = "_budget"
    shards: str = "_shards"

    # -- parts --------------------------------------------------------------------------------

    def part(self, slot_id: str, chunk_id: str, fmt: OutputFormat) -> str:
        return f"{self.parts}/{slot_id}/{chunk_id}.{_EXTENSIONS[fmt]}"

    def parse_part(self, key: str) -> PartKey | None:
        found = _name(key, self.parts, 2)
        if found is None:
            return None
        slot_id, name = found
        chunk_id, dot, ext = name.rpartition(".")
        fmt = _FORMATS.get(ext)
        if not (dot and chunk_id and fmt):
            return None
        return PartKey(slot_id, chunk_id, fmt)

    # -- chunk records ------------------------------------------------------------------------

    def chunk_record(self, chunk_id: str) -> str:
        return f"{self.chunks}/{chunk_id}.json"

    def parse_chunk_record(self, key: str) -> str | None:
        """The chunk id a record's key names, or None."""
        found = _name(key, self.chunks, 1)
        if found is None or not found[0].endswith(".json"):
            return None
        return found[0].removesuffix(".json") or None

    # -- a monthly budget's record (at the ledger's root, never collected as garbage) --------

    def budget_month(self, month: str) -> str:
        """The key of month ``month`` (``YYYY-MM``)."""
        return f"{self.budget}/{month}.json"

    # -- a sharded run's plan, its shards' leases and ends (collected at the dataset commit) --

    def shard_plan(self, run: str) -> str:
        return f"{self.shards}/{run}.json"

    def shard_lease(self, run: str, number: int) -> str:
        return f"{self.shards}/{run}-{number}.lease.json"

    def shard_end(self, run: str, number: int) -> str:
        return f"{self.shards}/{run}-{number}.end.json"

    # -- the journal --------------------------------------------------------------------------

    def journal_entry(self, chunk_id: str, nonce: str) -> str:
        return f"{self.journal}/{chunk_id}-{nonce}.arrow"

    def parse_journal_entry(self, key: str) -> JournalKey | None:
        found = _name(key, self.journal, 1) or _name(key, self.journal, 2)
        if found is None or not found[-1].endswith(".arrow"):
            return None
        chunk_id, dash, nonce = found[-1].removesuffix(".arrow").rpartition("-")
        if not (dash and chunk_id and nonce):
            return None
        return JournalKey(chunk_id, nonce, found[0] if len(found) == 2 else None)


#: The layout of every output this version writes and reads.
LAYOUT: Final = OutputLayout()
