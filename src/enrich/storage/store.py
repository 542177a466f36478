"""The one place that talks to fsspec: resolve URLs, list and open inputs, and the Store.

A :class:`Store` is a root location (``/data/out``, ``file:///data/out``, ``s3://bucket/out``,
``memory://out``, any fsspec URL whose package is installed) with a handful of operations on
keys relative to it. Writes are atomic as a reader sees them: a local write goes to a temporary
name and is renamed into place; an object store write is one PUT. Conditional writes (the run
lease) go to the compare-and-swap of the store's backend, chosen once when the store is built
(:mod:`enrich.storage.cas`).

``storage_options`` go to the filesystem (for S3: ``endpoint_url``, ``key``/``secret``,
``client_kwargs``...); without them s3fs uses the standard AWS chain and environment, including
``AWS_ENDPOINT_URL``. Listing caches are off for remote stores, so a listing always sees what
other processes committed.

Every failure is re-raised as :class:`~enrich.errors.StorageError` naming the URL
(:mod:`enrich.storage.errors`); no credential ever appears in a message or a ``repr``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any

from fsspec.core import split_protocol, url_to_fs

from enrich.storage.cas import Versioned, cas_for
from enrich.storage.errors import error_code, redact_secrets, storage_errors
from enrich.storage.local import replace_local
from enrich.storage.pins import Pin, current_pin, pin_of

__all__ = [
    "ObjectInfo",
    "Store",
    "filesystem",
    "input_pin",
    "is_local",
    "list_inputs",
    "open_input",
    "qualify",
]

_LOCAL_PROTOCOLS = {"file", "local"}
_UNCACHED_PROTOCOLS = _LOCAL_PROTOCOLS | {"memory"}


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """One object found under an input URL: full URL, size in bytes, a version tag, its pin.

    ``version`` goes into chunk ids (it must stay what it has always been); ``pin`` is what a
    read compares with (:mod:`enrich.storage.pins`).
    """

    url: str
    size: int
    version: str
    pin: Pin | None = None


def _protocol(fs: Any) -> str:
    protocol = fs.protocol
    return str(protocol[0] if isinstance(protocol, (tuple, list)) else protocol)


def _options(url: str, storage_options: Mapping[str, Any] | None) -> dict[str, Any]:
    options = dict(storage_options or {})
    protocol = split_protocol(url)[0] or "file"
    if protocol not in _UNCACHED_PROTOCOLS:
        # Checkpoint state is shared between processes: never answer from a stale listing.
        options.setdefault("use_listings_cache", False)
    return options


def filesystem(url: str, storage_options: Mapping[str, Any] | None = None) -> tuple[Any, str]:
    """Resolve ``url`` to ``(filesystem, path)``; ``storage_options`` go to the filesystem."""
    with storage_errors(url, storage_options):
        fs, path = url_to_fs(url, **_options(url, storage_options))
    return fs, str(path)


def is_local(fs: Any) -> bool:
    return _protocol(fs) in _LOCAL_PROTOCOLS


def qualify(fs: Any, path: str) -> str:
    """The full URL of ``path`` on ``fs`` (``s3://b/k``, ``memory://k`` or a local path)."""
    if is_local(fs):
        return path
    return str(fs.unstrip_protocol(path))


def _version(info: Mapping[str, Any]) -> str:
    for key in ("ETag", "etag", "VersionId", "mtime", "LastModified", "last_modified", "created"):
        value = info.get(key)
        if value is not None:
            return str(value).strip('"')
    return ""


def list_inputs(url: str, storage_options: Mapping[str, Any] | None = None) -> list[ObjectInfo]:
    """Every file that ``url`` names: one file, a directory's files, or a glob's matches.

    Sorted by URL so planning is deterministic. Raises StorageError when the bucket or path
    cannot be reached, and returns an empty list when a glob matches nothing.
    """
    fs, path = filesystem(url, storage_options)
    with storage_errors(url, storage_options):
        if any(ch in path for ch in "*?["):
            found = fs.glob(path, detail=True)
            infos = [dict(v, name=k) for k, v in found.items() if v.get("type") != "directory"]
        elif fs.isdir(path):
            infos = [i for i in fs.find(path, detail=True).values() if i.get("type") != "directory"]
        else:
            infos = [fs.info(path)]
        infos = [i for i in infos if not os.path.basename(str(i["name"])).startswith(("_", "."))]
        local = is_local(fs)
        objects = [
            ObjectInfo(
                qualify(fs, str(i["name"])),
                int(i.get("size") or 0),
                _version(i),
                pin_of(i, local=local),
            )
            for i in infos
        ]
    return sorted(objects, key=lambda o: o.url)


def input_pin(url: str, storage_options: Mapping[str, Any] | None = None) -> Pin:
    """The pin of the input object at ``url`` as it is now (StorageError when it is gone)."""
    fs, path = filesystem(url, storage_options)
    return current_pin(fs, path, url, local=is_local(fs), options=storage_options or {})


def open_input(
    url: str, storage_options: Mapping[str, Any] | None = None, compression: str | None = None
) -> IO[bytes]:
    """Open one input object for binary reading (``compression="gzip"`` decompresses)."""
    fs, path = filesystem(url, storage_options)
    with storage_errors(url, storage_options):
        return fs.open(path, "rb", compression=compression)  # type: ignore[no-any-return]


class Store:
    """A root location and the operations the engine needs under it.

    Keys are ``/``-separated paths relative to the root. The store never lists or writes
    outside its root.
    """

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None) -> None:
        self.url = redact_secrets(url.rstrip("/"))
        self._options = dict(storage_options or {})
        self.fs, root = filesystem(url.rstrip("/"), self._options)
        self.root = root.rstrip("/")
        self.local = is_local(self.fs)
        self._cas = cas_for(_protocol(self.fs))(self.fs)

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    def path(self, key: str) -> str:
        return f"{self.root}/{key}" if key else self.root

    def url_of(self, key: str) -> str:
        return f"{self.url}/{key}" if key else self.url

    def _errors(self, key: str) -> contextlib.AbstractContextManager[None]:
        return storage_errors(self.url_of(key), self._options)

    def read_bytes(self, key: str) -> bytes:
        with self._errors(key):
            return bytes(self.fs.cat_file(self.path(key)))

    def write_bytes(self, key: str, data: bytes) -> None:
        """Write ``data`` at ``key`` so that a reader sees all of it or nothing."""
        target = self.path(key)
        with self._errors(key):
            if self.local:
                replace_local(target, data)
            else:
                self.fs.pipe_file(target, data)

    def exists(self, key: str) -> bool:
        with self._errors(key):
            return bool(self.fs.exists(self.path(key)))

    def keys(self, prefix: str) -> list[str]:
        """Keys of the files under ``prefix`` (relative to the root), sorted; [] if none."""
        base = self.path(prefix)
        with self._errors(prefix):
            try:
                found = self.fs.find(base)
            except FileNotFoundError as exc:
                if error_code(exc) == "NoSuchBucket" or "bucket" in str(exc).lower():
                    raise  # a missing bucket is an error, not an empty prefix
                return []
        start = len(self.root) + 1
        keys = [str(p)[start:] for p in found]
        return sorted(k for k in keys if not os.path.basename(k).startswith("."))

    def delete(self, keys: list[str]) -> None:
        if not keys:
            return
        with self._errors(keys[0] if len(keys) == 1 else ""):
            self.fs.rm([self.path(k) for k in keys])

    # -- conditional writes (the run lease) ------------------------------------------------------

    def read_versioned(self, key: str) -> Versioned | None:
        """The object at ``key`` with its version tag, or None when there is none."""
        with self._errors(key):
            return self._cas.read(self.path(key))

    def swap(self, key: str, data: bytes, expected: str | None) -> str | None:
        """Write ``data`` at ``key`` only if the object is still at version ``expected``.

        ``expected=None`` means "only if there is no object". Returns the new version, or None
        when the precondition failed. How atomic that is depends on the backend
        (:mod:`enrich.storage.cas`).
        """
        with self._errors(key):
            return self._cas.swap(self.path(key), data, expected)

    def delete_if(self, key: str, expected: str) -> bool:
        """Delete ``key`` if it is still at version ``expected``; True if it was deleted."""
        with self._errors(key):
            return self._cas.delete_if(self.path(key), expected)
