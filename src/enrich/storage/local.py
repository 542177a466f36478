"""Local-disk primitives: a durable write a reader sees whole or not at all, and a host lock.

A local write goes to a temporary name beside its target, is flushed to the disk (``fsync``)
and renamed into place, and then the directory holding it is flushed too: a rename is atomic on
one filesystem, and the two ``fsync`` calls make it durable, so after a power cut or a kernel
crash the target is the old file or the new one, whole, never an empty or truncated file that a
record or the manifest names. A directory created for the write is flushed in its parent, so the
new name cannot vanish with it. The lock is a ``flock`` on a hidden file beside the target, so it
holds across every process of this host.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import uuid
from collections.abc import Iterator

__all__ = ["local_lock", "replace_local"]


def replace_local(target: str, data: bytes) -> None:
    """Write ``data`` to ``target`` through a temporary name and a rename, durably."""
    parent = os.path.dirname(target)
    _make_dirs(parent)
    tmp = f"{parent}/.{os.path.basename(target)}.{uuid.uuid4().hex}.tmp"
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())  # the bytes are on disk before any name points at them
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    _sync_dir(parent)  # the rename itself is on disk


def _make_dirs(path: str) -> None:
    """Create ``path`` and its missing parents, each flushed into the directory above it."""
    missing: list[str] = []
    while path and not os.path.isdir(path):
        missing.append(path)
        up = os.path.dirname(path)
        if up == path:
            break
        path = up
    if not missing:
        return
    os.makedirs(missing[0], exist_ok=True)
    for made in reversed(missing):
        _sync_dir(os.path.dirname(made) or ".")


def _sync_dir(path: str) -> None:
    """Flush a directory's entries to disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def local_lock(target: str) -> Iterator[None]:
    """An exclusive lock beside ``target``, held across processes of this host."""
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    with open(f"{parent}/.{os.path.basename(target)}.lock", "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
