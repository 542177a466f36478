"""The catalogue fetched from a provider, kept on local disk for a day.

One file per endpoint under ``<cache dir>/catalogue/``: the provider's body as it came, the
endpoint and when it was fetched. The cache directory is ``$ENRICH_CACHE_DIR`` when set, else
the user's cache directory (``platformdirs`` when installed, else ``$XDG_CACHE_HOME/enrich`` or
``~/.cache/enrich``). A cache is *fresh* for :data:`TTL` after its fetch; a stale one is still
used when the provider cannot be reached. A cache that cannot be read or written is no cache:
never an error.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from enrich.hashing import digest

__all__ = ["CACHE_ENV", "TTL", "CachedBody", "CatalogueCache", "cache_dir"]

CACHE_ENV = "ENRICH_CACHE_DIR"
TTL = timedelta(days=1)


def cache_dir(environ: Mapping[str, str]) -> Path:
    """Where enrich keeps what it caches for this user."""
    if environ.get(CACHE_ENV):
        return Path(environ[CACHE_ENV])
    try:
        platformdirs: Any = importlib.import_module("platformdirs")
    except ImportError:
        base = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return Path(base) / "enrich"
    return Path(platformdirs.user_cache_dir("enrich"))


@dataclass(frozen=True, slots=True)
class CachedBody:
    """A provider's models body and when it was fetched."""

    fetched_at: datetime
    body: Any

    def fresh(self, now: datetime) -> bool:
        return now - self.fetched_at < TTL


class CatalogueCache:
    """Models bodies by endpoint, in one folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, endpoint: str) -> Path:
        """The file of ``endpoint`` (a readable prefix and a digest: endpoints never clash)."""
        readable = "".join(c if c.isalnum() else "-" for c in endpoint.split("://")[-1])
        return self.folder / f"{readable[:60]}-{digest(endpoint.encode(), 6)}.json"

    def read(self, endpoint: str) -> CachedBody | None:
        try:
            record = orjson.loads(self.path(endpoint).read_bytes())
            if record.get("endpoint") != endpoint:
                return None
            return CachedBody(datetime.fromisoformat(record["fetched_at"]), record["body"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def write(self, endpoint: str, cached: CachedBody) -> None:
        record = {
            "endpoint": endpoint,
            "fetched_at": cached.fetched_at.isoformat(),
            "body": cached.body,
        }
        path = self.path(endpoint)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary.write_bytes(orjson.dumps(record))
            temporary.replace(path)  # readers see the old file or the new one, whole
        except OSError:
            temporary.unlink(missing_ok=True)
