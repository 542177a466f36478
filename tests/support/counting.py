"""A local filesystem that counts reads: proof of which input files a step opened.

``counted:///abs/path`` is the local file ``/abs/path`` through :class:`CountingFileSystem`,
which counts each open for reading, per file. The ``counted_reads`` fixture registers it and
hands over the (cleared) counter.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, ClassVar

import fsspec
from fsspec.implementations.local import LocalFileSystem


class CountingFileSystem(LocalFileSystem):
    """The local filesystem as ``counted://``, counting each time a file is opened to be read."""

    protocol = ("counted",)
    reads: ClassVar[Counter[str]] = Counter()

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, str) and path.startswith("counted://"):
            path = path.removeprefix("counted://")
        return super()._strip_protocol(path)

    def unstrip_protocol(self, name: str) -> str:
        return f"counted://{self._strip_protocol(name)}"

    def _open(self, path: Any, mode: str = "rb", **kwargs: Any) -> Any:
        if "r" in mode:
            self.reads[self._strip_protocol(path)] += 1
        return super()._open(path, mode, **kwargs)


def counting_reads() -> Counter[str]:
    """Register ``counted://`` and return its counter, cleared."""
    fsspec.register_implementation("counted", CountingFileSystem, clobber=True)
    CountingFileSystem.reads.clear()
    return CountingFileSystem.reads
