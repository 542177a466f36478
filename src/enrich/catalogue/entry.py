"""What the catalogue knows of one model, and the catalogue itself with where it came from.

A :class:`ModelEntry` holds what the provider publishes of a model: prices per million
tokens, context length, the longest completion, whether it supports structured outputs and
reasoning, and whether it is a preview, deprecated or retired (with the date it stops being
served). Anything the provider did not say is ``None``: unknown, never guessed.

A :class:`Catalogue` is every entry of one endpoint, with its source (``live``: fetched from
the provider now; ``cache``: a copy fetched earlier; ``snapshot``: the one shipped in the
package) and its date, so whoever reads a figure can say how fresh it is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

__all__ = ["Catalogue", "CatalogueSource", "ModelEntry", "ModelStatus"]

CatalogueSource = Literal["live", "cache", "snapshot"]
ModelStatus = Literal["active", "preview", "deprecated", "retired"]


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """One model as the provider describes it; ``None`` is "not said"."""

    id: str
    input_per_million: float | None = None
    output_per_million: float | None = None
    context_length: int | None = None
    max_completion_tokens: int | None = None
    structured_outputs: bool | None = None
    reasoning: bool | None = None
    preview: bool = False
    deprecated: bool = False
    retired: bool = False
    #: The day the provider stops (or stopped) serving the model.
    retires_on: date | None = None

    def status(self, today: date) -> ModelStatus:
        """``retired`` once flagged so or past its date; ``deprecated`` while marked for it."""
        if self.retired or (self.retires_on is not None and self.retires_on <= today):
            return "retired"
        if self.deprecated or self.retires_on is not None:
            return "deprecated"
        return "preview" if self.preview else "active"

    def describe_status(self, today: date) -> str:
        """The status with its date, for a person: ``retired 2026-05-27``."""
        status = self.status(today)
        if self.retires_on is None or status not in ("retired", "deprecated"):
            return status
        return (
            f"retired {self.retires_on}"
            if status == "retired"
            else (f"deprecated (retires {self.retires_on})")
        )


@dataclass(frozen=True, slots=True)
class Catalogue:
    """Every model of one endpoint, and where and when the figures come from.

    ``served`` is the set of model ids the provider lists for the key (``GET /v1/models``),
    when that could be asked; ``None`` otherwise. ``stale`` marks a cache older than its TTL,
    used because the provider could not be reached (``unreachable`` says why).
    """

    endpoint: str
    source: CatalogueSource
    as_of: datetime
    models: Mapping[str, ModelEntry] = field(default_factory=dict)
    served: frozenset[str] | None = None
    stale: bool = False
    unreachable: str | None = None

    def get(self, model: str) -> ModelEntry | None:
        return self.models.get(model)

    def only(self, models: list[str]) -> Catalogue:
        """This catalogue with the entries of ``models`` alone (what a job needs of it)."""
        kept = {m: self.models[m] for m in models if m in self.models}
        return dataclasses.replace(self, models=kept)

    def to_dict(self) -> dict[str, Any]:
        """As JSON types (:meth:`from_dict` reads it back)."""
        return {
            "endpoint": self.endpoint,
            "source": self.source,
            "as_of": self.as_of.isoformat(),
            "models": [_entry_dict(e) for e in self.models.values()],
            "served": None if self.served is None else sorted(self.served),
            "stale": self.stale,
            "unreachable": self.unreachable,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Catalogue:
        """What :meth:`to_dict` wrote; KeyError, TypeError or ValueError when it is not that."""
        source = str(raw["source"])
        if source not in ("live", "cache", "snapshot"):
            raise ValueError(f"catalogue source {source!r}")
        entries = [_entry(e) for e in raw["models"]]
        served = raw["served"]
        return cls(
            endpoint=str(raw["endpoint"]),
            source=source,  # type: ignore[arg-type]  # checked above
            as_of=datetime.fromisoformat(str(raw["as_of"])),
            models={e.id: e for e in entries},
            served=None if served is None else frozenset(str(m) for m in served),
            stale=bool(raw["stale"]),
            unreachable=None if raw["unreachable"] is None else str(raw["unreachable"]),
        )

    def describe(self) -> str:
        """One line: which data, from where, of when (and why not live, when it is not)."""
        when = self.as_of.strftime("%Y-%m-%d %H:%M UTC")
        if self.source == "live":
            text = f"live from {self.endpoint} at {when}"
        elif self.source == "cache":
            age = "stale cache" if self.stale else "cache"
            text = f"{age} of {self.endpoint} fetched at {when}"
        else:
            text = f"snapshot shipped with enrich, as of {self.as_of.date()}"
        if self.unreachable:
            text += f" (offline: {self.unreachable})"
        return text

    def in_service(self, today: date) -> list[str]:
        """The ids of the models not retired, sorted: what a refusal suggests instead."""
        return sorted(m for m, e in self.models.items() if e.status(today) != "retired")


def _entry_dict(entry: ModelEntry) -> dict[str, Any]:
    data = dataclasses.asdict(entry)
    data["retires_on"] = None if entry.retires_on is None else entry.retires_on.isoformat()
    return data


def _entry(raw: Mapping[str, Any]) -> ModelEntry:
    retires_on = raw.get("retires_on")
    day = None if retires_on is None else date.fromisoformat(str(retires_on))
    return ModelEntry(**{**raw, "retires_on": day})
