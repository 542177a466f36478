"""Asking the provider for its models: two GETs, a short timeout, one-line failures.

``GET {base}/public/v1/models`` needs no key; ``GET {base}/v1/models`` is sent with the key
(``Authorization: Bearer``) and lists what the key may use. The key goes only where the job's
requests would go (the base URL has passed :mod:`enrich.config.guard`), and never into a
message.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any, Protocol

import orjson

__all__ = ["CatalogueUnreachable", "Fetcher", "get_json"]

TIMEOUT_S = 5.0


class CatalogueUnreachable(Exception):
    """The provider did not answer with a models list; the message says why, in one line."""


class Fetcher(Protocol):
    def __call__(self, url: str, key: str | None) -> Any: ...


def get_json(url: str, key: str | None = None, timeout: float = TIMEOUT_S) -> Any:
    """The JSON body of ``GET url``.

    Raises:
        CatalogueUnreachable: no connection, a timeout, a status other than 200, or a body
            that is not JSON.
    """
    headers = {"Accept": "application/json", "User-Agent": "cerebras-enrich"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data = response.read()
    except urllib.error.HTTPError as exc:
        raise CatalogueUnreachable(f"GET {url}: HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CatalogueUnreachable(f"GET {url}: {reason}") from None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        raise CatalogueUnreachable(f"GET {url}: the body is not JSON") from None
