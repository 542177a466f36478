"""Local-disk primitives: a write a reader sees whole or not at all, and a lock for the host.

A local write goes to a temporary name beside its target and is renamed into place (a rename is
atomic on one filesystem). The lock is a ``flock`` on a hidden file beside the target, so it
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
    """Write ``data`` to ``target`` through a temporary name and a rename."""
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    tmp = f"{parent}/.{os.path.basename(target)}.{uuid.uuid4().hex}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, target)


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
