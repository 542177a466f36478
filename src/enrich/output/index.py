"""The result index: every reusable result under an output, found by request hash.

Results belong to requests, not to chunks. :meth:`ResultIndex.build` reads, once per run that
has work to do, every part under ``parts/`` (any slot, any chunk, any earlier chunking,
committed or not) and every journal entry under ``_journal/`` (this layout's and the earlier
per-slot one), so a rerun under any chunking, or over an input whose rows moved, finds every
result it has. Building reads only the columns that decide reuse and keeps the best copy of
each hash (:mod:`enrich.output.scan`); a result itself is read when a chunk asks for its hash
(:meth:`~ResultIndex.lookup`), from a few decoded files kept at a time. Which results: those
:func:`enrich.results.reusable` keeps (``ok``, or an error that belongs to the request; none
with ``retry_errors``).

Who pays (:meth:`~ResultIndex.claim`): a hash whose paying copy sits in a part that the new
manifest keeps is paid for in the dataset already, so every pending chunk takes it as a shared
(zero) copy. Otherwise the first chunk of this run to take it pays (it carries the tokens and
cost) and every later one shares. So the token and cost columns of the committed dataset add
up to what was paid, each request once, whatever the chunking.

Compact, so an output of a million results costs tens of megabytes: per result 16 bytes of
hash (sorted, binary-searched), a file number and a row (4 bytes each) and two flag bytes.
"""

from __future__ import annotations

import threading
from array import array
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Container, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import pyarrow as pa

from enrich.output.scan import HASH_BYTES, IndexArrays, read_file, scan_output
from enrich.results import Result, results_from_table
from enrich.storage import Store

__all__ = ["Found", "ResultIndex"]

# Decoded files kept for lookups: chunks in flight mostly want the same few.
_CACHED_FILES = 4


@dataclass(slots=True)
class Found:
    """What the index has for a chunk's hashes: the results, and where each sits."""

    results: dict[str, Result] = field(default_factory=dict)
    positions: dict[str, int] = field(default_factory=dict)


class _Keys(Sequence[bytes]):
    """The sorted 16-byte hashes, as a sequence ``bisect`` can search."""

    def __init__(self, blob: bytes) -> None:
        self._blob = blob

    def __len__(self) -> int:
        return len(self._blob) // HASH_BYTES

    def __getitem__(self, i: int) -> bytes:  # type: ignore[override]
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self._blob[i * HASH_BYTES : (i + 1) * HASH_BYTES]


class ResultIndex:
    """Request hash -> where a reusable result of it lives under the output (see module doc)."""

    def __init__(
        self, store: Store | None, arrays: IndexArrays, completion_column: str = "completion"
    ) -> None:
        self._store = store
        self._files = arrays.files
        self._keys = _Keys(arrays.hashes)
        self._file_of = arrays.file_of
        self._row_of = arrays.row_of
        self._kept = kept = arrays.kept
        self._claimed = bytearray(len(kept))
        self._completion_column = completion_column
        self._cache: OrderedDict[int, pa.Table] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def empty(cls) -> ResultIndex:
        return cls(None, IndexArrays([], b"", array("i"), array("i"), bytearray()))

    @classmethod
    def build(
        cls,
        store: Store,
        *,
        completion_column: str,
        keep: Container[str] = (),
        retry_errors: bool = False,
    ) -> ResultIndex:
        """Index every part and journal entry under ``store``.

        ``keep`` holds the chunks whose parts the next manifest names as they are (committed,
        not run again): their paying copies are paid for already.
        """
        arrays = scan_output(store, keep=keep, retry_errors=retry_errors)
        return cls(store, arrays, completion_column)

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[str]:
        """Every request hash with a result, in no useful order."""
        return (key.hex() for key in self._keys)

    @property
    def nbytes(self) -> int:
        """Bytes held by the index itself (not the decoded-file cache)."""
        parts = (self._keys._blob, self._file_of, self._row_of, self._kept, self._claimed)
        return sum(len(memoryview(p).cast("B")) for p in parts)

    def position(self, request_hash: str) -> int | None:
        """Where ``request_hash`` sits in the index, or None when it has no result."""
        try:
            key = bytes.fromhex(request_hash)
        except ValueError:
            return None
        keys = self._keys
        at = bisect_left(keys, key)
        return at if at < len(keys) and keys[at] == key else None

    def lookup(self, hashes: Iterable[str]) -> Found:
        """The results the index has for ``hashes`` (reads their files; thread-safe)."""
        wanted: dict[int, dict[str, int]] = {}
        for h in dict.fromkeys(hashes):
            at = self.position(h)
            if at is not None:
                wanted.setdefault(self._file_of[at], {})[h] = at
        found = Found()
        with self._lock:
            for number, positions in wanted.items():
                table = self._table(number)
                rows = pa.array([self._row_of[at] for at in positions.values()], pa.int64())
                # A step's columns are read without their prefix: its completion is
                # ``completion``.
                column = "completion" if self._files[number].prefix else self._completion_column
                results = results_from_table(table.take(rows), column)
                for h, at in positions.items():
                    if h in results:
                        found.results[h] = results[h]
                        found.positions[h] = at
        return found

    def claim(self, found: Found) -> set[str]:
        """The hashes of ``found`` whose cost the caller carries (see the module doc).

        The first caller to claim a hash gets it, unless a kept part carries its cost already;
        not thread-safe: call it from one thread (the event loop).
        """
        paying: set[str] = set()
        for h, at in found.positions.items():
            if not (self._kept[at] or self._claimed[at]):
                self._claimed[at] = 1
                paying.add(h)
        return paying

    def _table(self, number: int) -> pa.Table:
        cache = self._cache
        table = cache.get(number)
        if table is None:
            assert self._store is not None
            table = read_file(self._store, self._files[number], None)
            cache[number] = table
            while len(cache) > _CACHED_FILES:
                cache.popitem(last=False)
        cache.move_to_end(number)
        return table
