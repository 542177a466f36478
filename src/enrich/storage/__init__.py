"""Storage: every byte the engine reads or writes goes through this package, over fsspec.

* :mod:`~enrich.storage.store` -- :class:`Store` (a root location and the operations under it),
  and resolving, listing and opening input URLs.
* :mod:`~enrich.storage.pins` -- :class:`Pin`: what identifies one version of an input object.
* :mod:`~enrich.storage.cas` -- compare-and-swap per backend (local lock, S3 conditional PUT,
  compare-then-write), chosen once per store.
* :mod:`~enrich.storage.errors` -- failures as one-line StorageErrors, credentials redacted.
* :mod:`~enrich.storage.local` -- atomic replace and the host lock on local disk.
"""

from enrich.storage.cas import Versioned
from enrich.storage.errors import redact_secrets, storage_errors
from enrich.storage.pins import Pin
from enrich.storage.store import (
    ObjectInfo,
    Store,
    filesystem,
    input_pin,
    list_inputs,
    open_input,
    qualify,
)

__all__ = [
    "ObjectInfo",
    "Pin",
    "Store",
    "Versioned",
    "filesystem",
    "input_pin",
    "list_inputs",
    "open_input",
    "qualify",
    "redact_secrets",
    "storage_errors",
]
