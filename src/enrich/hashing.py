"""Identity: request hashes, job fingerprints, chunk and slot ids.

All ids are hex digests of a canonical JSON encoding (sorted keys, no whitespace), so they are
stable across processes, machines and Python versions.

* ``request_hash`` -- what a request asks and of whom: the endpoint (normalised by
  :func:`endpoint_identity`), model, parameters, rendered messages and, when it asks for
  structured output, its ``response_format`` (the schema changes the answer). Two rows that
  render the same request share one call, and a result is reused whenever its request hash
  comes round again, so an answer from the bundled simulator is never reused against the real
  API, nor the reverse.
* ``job_fingerprint`` -- everything that shapes a job's output besides the input rows.
* ``slot_id`` -- one contiguous slice of one source file (by name), whatever the job asks of it
  and whatever version of the file it reads: the folder of a chunk's part. Reuse does not
  depend on it: results are found by request hash across the whole output
  (:mod:`enrich.output.index`).
* ``chunk_id`` -- a slot of one version of the file under one job fingerprint: the unit of
  work and of commit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import orjson

_DIGEST_BYTES = 16


def canonical_json(value: Any) -> bytes:
    """Deterministic JSON bytes: sorted keys, compact, UTF-8."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def digest(data: bytes, size: int = _DIGEST_BYTES) -> str:
    return hashlib.blake2b(data, digest_size=size).hexdigest()


_DEFAULT_PORTS = {"http": 80, "https": 443}


def endpoint_identity(base_url: str) -> str:
    """The part of a base URL that says who answers: scheme, host, port and path.

    Credentials, query and fragment are dropped (they do not change the answer, and a secret
    must not reach an id); scheme and host are lowercased, a default port and a trailing slash
    are removed, so spellings of one endpoint share one identity.
    """
    parts = urlsplit(base_url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    port = parts.port
    netloc = host if port is None or port == _DEFAULT_PORTS.get(scheme) else f"{host}:{port}"
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}"


class RequestHasher:
    """Hashes requests for one endpoint, model, parameter set and response format.

    The fixed part (endpoint, model, parameters, response format) is encoded once; each call
    hashes only the messages, which keeps the per-row cost to one small JSON encode and one
    blake2b. A request without a ``response_format`` hashes as it always has, so answers
    committed before structured outputs existed are still found.
    """

    def __init__(
        self,
        endpoint: str,
        model: str,
        params: Mapping[str, Any],
        response_format: Mapping[str, Any] | None = None,
    ) -> None:
        fixed: dict[str, Any] = {"endpoint": endpoint, "model": model, "params": dict(params)}
        if response_format is not None:
            fixed["response_format"] = dict(response_format)
        self._prefix = canonical_json(fixed)

    def __call__(self, messages: Sequence[Mapping[str, str]]) -> str:
        h = hashlib.blake2b(self._prefix, digest_size=_DIGEST_BYTES)
        h.update(orjson.dumps(messages))
        return h.hexdigest()


def request_hash(
    endpoint: str,
    model: str,
    params: Mapping[str, Any],
    messages: Sequence[Mapping[str, str]],
    response_format: Mapping[str, Any] | None = None,
) -> str:
    """One chat completion request to ``endpoint`` (an :func:`endpoint_identity`)."""
    return RequestHasher(endpoint, model, params, response_format)(messages)


def job_fingerprint(parts: Mapping[str, Any]) -> str:
    """A short id for everything (besides input rows) that shapes the output."""
    return digest(canonical_json(parts), 8)


def slot_id(source_key: str, start: int, stop: int) -> str:
    return digest(canonical_json([source_key, start, stop]), 8)


def chunk_id(slot: str, source_version: str, fingerprint: str) -> str:
    return f"{slot}-{digest(canonical_json([source_version, fingerprint]), 8)}"
