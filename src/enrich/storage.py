"""The one module that talks to fsspec.

A :class:`Store` is a root location (``/data/out``, ``file:///data/out``, ``s3://bucket/out``,
``memory://out``) with a handful of operations on keys relative to it. Writes are atomic as a
reader sees them: a local write goes to a temporary name and is renamed into place; an object
store write is one PUT. Every failure is re-raised as :class:`StorageError` naming the URL, and
no credential from ``storage_options`` ever appears in a message.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any

from fsspec.core import url_to_fs

from enrich.errors import StorageError

_LOCAL_PROTOCOLS = {"file", "local"}


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """One object found under an input URL: full URL, size in bytes, and a version tag."""

    url: str
    size: int
    version: str


def _protocol(fs: Any) -> str:
    protocol = fs.protocol
    return str(protocol[0] if isinstance(protocol, (tuple, list)) else protocol)


def _describe(exc: BaseException) -> str:
    """A one-line reason for a storage failure, without the URL (the caller adds it)."""
    if isinstance(exc, FileNotFoundError):
        return "not found"
    if isinstance(exc, PermissionError):
        return "access denied"
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"{type(exc).__name__}: {text}"


@contextlib.contextmanager
def storage_errors(url: str) -> Iterator[None]:
    """Turn any storage failure inside the block into a StorageError naming ``url``."""
    try:
        yield
    except StorageError:
        raise
    except Exception as exc:
        raise StorageError(f"{url}: {_describe(exc)}") from exc


def filesystem(url: str, storage_options: Mapping[str, Any] | None = None) -> tuple[Any, str]:
    """Resolve ``url`` to ``(filesystem, path)``; ``storage_options`` go to the filesystem."""
    with storage_errors(url):
        fs, path = url_to_fs(url, **dict(storage_options or {}))
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
    with storage_errors(url):
        if any(ch in path for ch in "*?["):
            found = fs.glob(path, detail=True)
            infos = [dict(v, name=k) for k, v in found.items() if v.get("type") != "directory"]
        elif fs.isdir(path):
            infos = [i for i in fs.find(path, detail=True).values() if i.get("type") != "directory"]
        else:
            infos = [fs.info(path)]
    objects = [
        ObjectInfo(qualify(fs, str(i["name"])), int(i.get("size") or 0), _version(i)) for i in infos
    ]
    names = [o for o in objects if not os.path.basename(o.url).startswith(("_", "."))]
    return sorted(names, key=lambda o: o.url)


def open_input(
    url: str, storage_options: Mapping[str, Any] | None = None, compression: str | None = None
) -> IO[bytes]:
    """Open one input object for binary reading (``compression="gzip"`` decompresses)."""
    fs, path = filesystem(url, storage_options)
    with storage_errors(url):
        return fs.open(path, "rb", compression=compression)  # type: ignore[no-any-return]


class Store:
    """A root location and the operations the engine needs under it.

    Keys are ``/``-separated paths relative to the root. The store never lists or writes
    outside its root.
    """

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None) -> None:
        self.url = url.rstrip("/")
        self.fs, root = filesystem(self.url, storage_options)
        self.root = root.rstrip("/")
        self.local = is_local(self.fs)

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    def path(self, key: str) -> str:
        return f"{self.root}/{key}" if key else self.root

    def url_of(self, key: str) -> str:
        return f"{self.url}/{key}" if key else self.url

    def read_bytes(self, key: str) -> bytes:
        with storage_errors(self.url_of(key)):
            return bytes(self.fs.cat_file(self.path(key)))

    def write_bytes(self, key: str, data: bytes) -> None:
        """Write ``data`` at ``key`` so that a reader sees all of it or nothing."""
        target = self.path(key)
        with storage_errors(self.url_of(key)):
            if self.local:
                parent = os.path.dirname(target)
                os.makedirs(parent, exist_ok=True)
                tmp = f"{parent}/.{os.path.basename(target)}.{uuid.uuid4().hex}.tmp"
                with open(tmp, "wb") as fh:
                    fh.write(data)
                os.replace(tmp, target)
            else:
                self.fs.pipe_file(target, data)

    def exists(self, key: str) -> bool:
        with storage_errors(self.url_of(key)):
            return bool(self.fs.exists(self.path(key)))

    def keys(self, prefix: str) -> list[str]:
        """Keys of the files under ``prefix`` (relative to the root), sorted; [] if none."""
        base = self.path(prefix)
        with storage_errors(self.url_of(prefix)):
            try:
                found = self.fs.find(base)
            except FileNotFoundError:
                return []
        start = len(self.root) + 1
        keys = [str(p)[start:] for p in found]
        return sorted(k for k in keys if not os.path.basename(k).startswith("."))

    def delete(self, keys: list[str]) -> None:
        if not keys:
            return
        with storage_errors(self.url):
            self.fs.rm([self.path(k) for k in keys])

    def check_writable(self) -> None:
        """Fail early (before any request is paid for) if the root cannot be written."""
        probe = f"_tmp/probe-{uuid.uuid4().hex}"
        self.write_bytes(probe, b"")
        self.delete([probe])

    def invalidate(self) -> None:
        """Forget cached listings, so a listing sees what other writers committed."""
        self.fs.invalidate_cache()
