"""The catalogue shipped in the package, for when the provider cannot be reached.

``snapshot.json`` beside this module is the provider's public models body as published on
its ``as_of`` date (in the endpoint's own shape, so the one parser reads it), retired models
kept and flagged; ``assumed`` says which figures are not the provider's own.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from functools import cache
from importlib import resources
from typing import Any

import orjson

from enrich.catalogue.entry import Catalogue
from enrich.catalogue.parse import parse_models

__all__ = ["SNAPSHOT_FILE", "snapshot_body", "snapshot_catalogue"]

SNAPSHOT_FILE = "snapshot.json"


@cache
def snapshot_body() -> dict[str, Any]:
    """The snapshot as shipped (read once per process)."""
    data = resources.files("enrich.catalogue").joinpath(SNAPSHOT_FILE).read_bytes()
    body: dict[str, Any] = orjson.loads(data)
    return body


def snapshot_catalogue(endpoint: str, unreachable: str | None = None) -> Catalogue:
    """The shipped catalogue, dated by its ``as_of`` day (midnight UTC)."""
    body = snapshot_body()
    as_of = datetime.combine(date.fromisoformat(body["as_of"]), time(), UTC)
    return Catalogue(
        endpoint=endpoint,
        source="snapshot",
        as_of=as_of,
        models=parse_models(body),
        unreachable=unreachable,
    )
