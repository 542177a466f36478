"""The one module that talks to fsspec.

A :class:`Store` is a root location (``/data/out``, ``file:///data/out``, ``s3://bucket/out``,
``memory://out``, any fsspec URL whose package is installed) with a handful of operations on
keys relative to it. Writes are atomic as a reader sees them: a local write goes to a temporary
name and is renamed into place; an object store write is one PUT.

``storage_options`` go to the filesystem (for S3: ``endpoint_url``, ``key``/``secret``,
``client_kwargs``...); without them s3fs uses the standard AWS chain and environment, including
``AWS_ENDPOINT_URL``. Listing caches are off for remote stores, so a listing always sees what
other processes committed.

Every failure is re-raised as :class:`StorageError`: one line naming the URL, with the store's
reason (``not found (The specified bucket does not exist)``). No credential from
``storage_options`` (nor one embedded in a URL) ever appears in a message or a ``repr``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import threading
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any

from fsspec.core import split_protocol, url_to_fs

from enrich.errors import StorageError

_LOCAL_PROTOCOLS = {"file", "local"}
_UNCACHED_PROTOCOLS = _LOCAL_PROTOCOLS | {"memory"}
# Option names whose values are credentials, matched as substrings of the lowercased name.
_SECRET_NAMES = ("key", "secret", "token", "password", "credential", "sas", "connection_string")
_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")
# The in-memory filesystem is per process; one lock makes its compare-and-swap atomic.
_MEMORY_LOCK = threading.Lock()


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """One object found under an input URL: full URL, size in bytes, and a version tag."""

    url: str
    size: int
    version: str


@dataclass(frozen=True, slots=True)
class Versioned:
    """An object's bytes and the version tag a conditional write must name to replace it."""

    data: bytes
    version: str


def _protocol(fs: Any) -> str:
    protocol = fs.protocol
    return str(protocol[0] if isinstance(protocol, (tuple, list)) else protocol)


def secrets_in(storage_options: Mapping[str, Any] | None) -> list[str]:
    """Every credential-looking string value in ``storage_options`` (nested mappings too)."""
    found: list[str] = []
    for name, value in (storage_options or {}).items():
        if isinstance(value, Mapping):
            found += secrets_in(value)
        elif isinstance(value, str) and len(value) >= 4 and _is_secret_name(str(name)):
            found.append(value)
    return found


def _is_secret_name(name: str) -> bool:
    return any(part in name.lower() for part in _SECRET_NAMES)


def redact(text: str, storage_options: Mapping[str, Any] | None = None) -> str:
    """``text`` without URL user info or any credential from ``storage_options``."""
    text = _USERINFO.sub("***@", text)
    for secret in sorted(secrets_in(storage_options), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def _error_code(exc: BaseException) -> str | None:
    """The S3 error code behind an s3fs exception (``NoSuchBucket``...), when there is one."""
    response = getattr(exc.__cause__, "response", None)
    if isinstance(response, Mapping):
        code = response.get("Error", {}).get("Code")
        return str(code) if code else None
    return None


def _describe(exc: BaseException) -> str:
    """A one-line reason for a storage failure, without the URL (the caller adds it)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, FileNotFoundError):
        detail = text if text and not text.startswith(("/", "[Errno")) else ""
        return f"not found ({detail})" if detail else "not found"
    if isinstance(exc, PermissionError):
        return f"access denied ({text})" if text else "access denied"
    code = _error_code(exc)
    name = f"{type(exc).__name__}" + (f" {code}" if code else "")
    return f"{name}: {text}" if text else name


@contextlib.contextmanager
def storage_errors(url: str, storage_options: Mapping[str, Any] | None = None) -> Iterator[None]:
    """Turn any storage failure inside the block into a StorageError naming ``url``."""
    try:
        yield
    except StorageError:
        raise
    except Exception as exc:
        message = redact(f"{url}: {_describe(exc)}", storage_options)
        raise StorageError(message) from exc


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
    with storage_errors(url, storage_options):
        return fs.open(path, "rb", compression=compression)  # type: ignore[no-any-return]


class Store:
    """A root location and the operations the engine needs under it.

    Keys are ``/``-separated paths relative to the root. The store never lists or writes
    outside its root.
    """

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None) -> None:
        self.url = redact(url.rstrip("/"))
        self._options = dict(storage_options or {})
        self.fs, root = filesystem(url.rstrip("/"), self._options)
        self.root = root.rstrip("/")
        self.local = is_local(self.fs)
        self.protocol = _protocol(self.fs)

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
                _replace_local(target, data)
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
                if _error_code(exc) == "NoSuchBucket" or "bucket" in str(exc).lower():
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
        target = self.path(key)
        with self._errors(key):
            try:
                if self.protocol == "s3":
                    # HEAD before GET: the bytes are at least as new as the tag, so a swap
                    # naming the tag can only fail, never overwrite something unseen.
                    tag = str(self.fs.info(target, refresh=True)["ETag"])
                    return Versioned(bytes(self.fs.cat_file(target)), tag)
                data = bytes(self.fs.cat_file(target))
            except FileNotFoundError:
                return None
        return Versioned(data, _digest(data))

    def swap(self, key: str, data: bytes, expected: str | None) -> str | None:
        """Write ``data`` at ``key`` only if the object is still at version ``expected``.

        ``expected=None`` means "only if there is no object". Returns the new version, or None
        when the precondition failed. Atomic on local disk (a lock file on the host), in
        memory, and on S3 stores that honour ``If-Match``/``If-None-Match``; elsewhere it
        compares, writes and reads back, which narrows but does not close the race.
        """
        target = self.path(key)
        with self._errors(key):
            if self.local:
                with _local_lock(target):
                    if _digest_or_none(target) != expected:
                        return None
                    _replace_local(target, data)
                return _digest(data)
            if self.protocol == "memory":
                with _MEMORY_LOCK:
                    return self._swap_checked(target, data, expected)
            if self.protocol == "s3":
                return self._swap_s3(key, data, expected)
            return self._swap_checked(target, data, expected)

    def delete_if(self, key: str, expected: str) -> bool:
        """Delete ``key`` if it is still at version ``expected``; True if it was deleted."""
        target = self.path(key)
        with self._errors(key):
            if self.local:
                with _local_lock(target):
                    if _digest_or_none(target) != expected:
                        return False
                    os.remove(target)
                    return True
        current = self.read_versioned(key)
        if current is None or current.version != expected:
            return False
        self.delete([key])
        return True

    def _swap_checked(self, target: str, data: bytes, expected: str | None) -> str | None:
        try:
            current: str | None = _digest(bytes(self.fs.cat_file(target)))
        except FileNotFoundError:
            current = None
        if current != expected:
            return None
        self.fs.pipe_file(target, data)
        return _digest(data) if bytes(self.fs.cat_file(target)) == data else None

    def _swap_s3(self, key: str, data: bytes, expected: str | None) -> str | None:
        target = self.path(key)
        condition = {"mode": "create"} if expected is None else {"IfMatch": expected}
        try:
            out = self.fs.pipe_file(target, data, **condition)
        except FileExistsError:
            return None
        except OSError as exc:
            code = _error_code(exc)
            if code in ("PreconditionFailed", "ConditionalRequestConflict"):
                return None
            if code != "NotImplemented":
                raise
            # A store without conditional writes: compare, write, read back.
            current = self.read_versioned(key)
            if (current.version if current else None) != expected:
                return None
            out = self.fs.pipe_file(target, data)
        tag = out.get("ETag") if isinstance(out, Mapping) else None
        return str(tag) if tag else str(self.fs.info(target, refresh=True)["ETag"])


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _digest_or_none(path: str) -> str | None:
    try:
        with open(path, "rb") as fh:
            return _digest(fh.read())
    except FileNotFoundError:
        return None


def _replace_local(target: str, data: bytes) -> None:
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    tmp = f"{parent}/.{os.path.basename(target)}.{uuid.uuid4().hex}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, target)


@contextlib.contextmanager
def _local_lock(target: str) -> Iterator[None]:
    """An exclusive lock beside ``target``, held across processes of this host."""
    import fcntl

    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    with open(f"{parent}/.{os.path.basename(target)}.lock", "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
