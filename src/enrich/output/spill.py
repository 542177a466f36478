"""Results that storage would not take, kept on local disk until it does.

When the output's storage stays down past the journal's retries, a chunk that ends (or a run
that stops) writes its unwritten results here rather than drop them: they were paid for. The
next run of the same output uploads them into its journal before it builds its result index
(:meth:`Spill.upload`), so nothing is asked again.

The folder is ``$ENRICH_SPILL_DIR`` if set, else ``$XDG_CACHE_HOME/enrich/spill`` (by default
``~/.cache/enrich/spill``), with one subfolder per output location. A file's name is the name of
the journal entry it becomes (``<chunk_id>-<nonce>.arrow``), and each is written whole (a
temporary name, then a rename). Spilled results live on one machine: a run elsewhere does not
see them until that machine's next run of the output uploads them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from enrich.hashing import digest
from enrich.output.layout import LAYOUT
from enrich.storage import Store

__all__ = ["SPILL_ENV", "Spill", "spill_root"]

SPILL_ENV = "ENRICH_SPILL_DIR"


def spill_root(environ: Mapping[str, str] = os.environ) -> Path:
    """Where spilled results of every output live on this machine."""
    configured = environ.get(SPILL_ENV)
    if configured:
        return Path(configured)
    cache = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "enrich" / "spill"


class Spill:
    """The spilled results of one output location (``store``) on this machine."""

    def __init__(self, store: Store, root: Path | None = None) -> None:
        self._store = store
        where = f"{store.fs.protocol}|{store.root}"
        self.folder = (root or spill_root()) / digest(where.encode(), 8)

    def save(self, chunk_id: str, nonce: str, data: bytes) -> Path:
        """Keep one journal entry's bytes on local disk; returns the file."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / self._name(chunk_id, nonce)
        partial = path.with_name(f".{path.name}.partial")
        partial.write_bytes(data)
        os.replace(partial, path)
        return path

    def files(self) -> list[Path]:
        """Every spilled entry, sorted (temporary files excluded)."""
        if not self.folder.is_dir():
            return []
        return sorted(p for p in self.folder.iterdir() if self._key(p) is not None)

    def upload(self) -> int:
        """Write every spilled entry into the output's journal, then delete it; the count.

        Raises the store's error if storage is still down (the entries stay for the next try).
        """
        files = self.files()
        for path in files:
            key = self._key(path)
            assert key is not None
            self._store.write_bytes(key, path.read_bytes())
            path.unlink(missing_ok=True)
        return len(files)

    def drop(self, chunk_id: str) -> None:
        """Delete a chunk's spilled entries (its results are in its committed part now)."""
        for path in self.files():
            parsed = LAYOUT.parse_journal_entry(f"{LAYOUT.journal}/{path.name}")
            if parsed is not None and parsed.chunk_id == chunk_id:
                path.unlink(missing_ok=True)

    @staticmethod
    def _name(chunk_id: str, nonce: str) -> str:
        return LAYOUT.journal_entry(chunk_id, nonce).rpartition("/")[2]

    @staticmethod
    def _key(path: Path) -> str | None:
        """The journal key a spilled file becomes, or None for a file that is not one."""
        key = f"{LAYOUT.journal}/{path.name}"
        parsed = LAYOUT.parse_journal_entry(key)
        if parsed is None or path.name.startswith("."):
            return None
        return key
