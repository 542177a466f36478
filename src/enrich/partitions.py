"""Date-partitioned jobs: which partitions exist, where each one's output goes, which are done.

An input path with a ``{date}`` field (``s3://raw/reviews/dt={date}/*.parquet``) names one
partition per day; ``{date}`` is an ISO date, ``YYYY-MM-DD``. A partition's output is the
job's ``output.path`` partitioned the same way: with the input's ``{date}`` directory appended
(``s3://enriched/reviews`` -> ``s3://enriched/reviews/dt=2026-11-20``), or ``dt={date}`` when
the date is in a file name, or wherever ``{date}`` sits when ``output.path`` has one itself.

Each partition is an ordinary job (:func:`for_partition` substitutes the two paths) with its
own checkpoints, manifest and success marker, so the state of a partitioned job lives with its
output: a partition is *committed* when its output's committed dataset is the current config's
(:func:`enrich.output.committed.is_committed`). Nothing is remembered in a process or in the
orchestrator; listing the input and reading a few small files answers "what is left to do",
whatever the partitions weigh (:mod:`enrich.freshness`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from enrich.config import JobConfig
from enrich.errors import ConfigError
from enrich.freshness import current_manifest
from enrich.storage import filesystem, list_inputs, qualify

__all__ = [
    "DATE_FIELD",
    "PartitionState",
    "PartitionTemplate",
    "date_range",
    "for_partition",
    "is_partitioned",
    "list_partitions",
    "logical_date",
    "output_root",
    "parse_date",
    "partition_state",
    "pending",
    "select",
]

DATE_FIELD = "{date}"
DEFAULT_SEGMENT = "dt={date}"
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_GLOB = "*?["


def parse_date(text: str, what: str = "partition") -> date:
    """A strict ``YYYY-MM-DD`` date; a one-line ConfigError otherwise."""
    if not isinstance(text, str) or not _ISO_DATE.match(text):
        raise ConfigError(f"{what} {text!r}: expected a date as YYYY-MM-DD")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{what} {text!r}: not a calendar date") from None


def date_range(start: str, end: str) -> list[str]:
    """Every date from ``start`` to ``end``, both included (ConfigError if ``end < start``)."""
    first, last = parse_date(start, "start"), parse_date(end, "end")
    if last < first:
        raise ConfigError(f"end {end} is before start {start}")
    return [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


def select(available: Iterable[str], start: str | None = None, end: str | None = None) -> list[str]:
    """The dates of ``available`` within ``[start, end]`` (either bound optional), sorted."""
    lo = parse_date(start, "start").isoformat() if start else None
    hi = parse_date(end, "end").isoformat() if end else None
    return sorted(d for d in set(available) if (lo is None or d >= lo) and (hi is None or d <= hi))


def logical_date(scheduled: datetime, timezone: str = "UTC", lag_days: int = 1) -> str:
    """The last partition a run scheduled at ``scheduled`` is responsible for.

    A daily partition is complete once its day has ended, so a run scheduled at 06:30 on
    2026-11-21 (in the schedule's ``timezone``) covers partitions up to 2026-11-20 with the
    default ``lag_days=1``; ``lag_days=0`` includes the scheduled day itself.
    """
    if scheduled.tzinfo is None:
        raise ValueError("scheduled must be timezone-aware")
    if lag_days < 0:
        raise ConfigError(f"lag_days {lag_days}: must be 0 or more")
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"timezone {timezone!r}: unknown time zone") from None
    return (scheduled.astimezone(zone).date() - timedelta(days=lag_days)).isoformat()


def is_partitioned(path: str) -> bool:
    return DATE_FIELD in path


def _component_regex(component: str) -> str:
    """A regex for one path component: ``{date}`` is captured, glob wildcards translated."""
    out: list[str] = []
    i = 0
    while i < len(component):
        if component.startswith(DATE_FIELD, i):
            out.append(r"(?P<date>\d{4}-\d{2}-\d{2})")
            i += len(DATE_FIELD)
        elif component.startswith("**", i):
            out.append(".*")
            i += 2
        elif component[i] == "*":
            out.append("[^/]*")
            i += 1
        elif component[i] == "?":
            out.append("[^/]")
            i += 1
        elif component[i] == "[" and "]" in component[i + 1 :]:
            end = component.index("]", i + 1)
            body = component[i + 1 : end]
            out.append("[^" + re.escape(body[1:]) + "]" if body[:1] == "!" else f"[{body}]")
            i = end + 1
        else:
            out.append(re.escape(component[i]))
            i += 1
    return "".join(out)


@dataclass(frozen=True)
class PartitionTemplate:
    """An input path with one ``{date}`` field, parsed once.

    ``root`` is the fixed part listed to find partitions (the path up to the first component
    with the date or a wildcard); ``pattern`` matches a listed object's path below the root and
    captures its date; ``segment`` is how an output location is partitioned.
    """

    path: str
    root: str
    pattern: re.Pattern[str]
    segment: str

    @classmethod
    def parse(cls, path: str) -> PartitionTemplate:
        if path.count(DATE_FIELD) != 1:
            raise ConfigError(f"input.path {path!r}: expected exactly one {DATE_FIELD} field")
        scheme, sep, rest = path.partition("://")
        prefix, body = (scheme + sep, rest) if sep else ("", path)
        parts = body.split("/")
        first = next(
            i for i, p in enumerate(parts) if DATE_FIELD in p or any(c in p for c in _GLOB)
        )
        at = next(i for i, p in enumerate(parts) if DATE_FIELD in p)
        dated = parts[at]
        plain_dir = at < len(parts) - 1 and not any(c in dated for c in _GLOB)
        if first == 0 and prefix:
            raise ConfigError(f"input.path {path!r}: the bucket name cannot hold {DATE_FIELD}")
        root = prefix + "/".join(parts[:first]) if first else "."
        regex = "/".join(_component_regex(p) for p in parts[first:])
        return cls(
            path=path,
            root=root.rstrip("/") if root.rstrip("/") else "/",
            pattern=re.compile(f"^{regex}(?:/.*)?$"),
            segment=dated if plain_dir else DEFAULT_SEGMENT,
        )

    def input_url(self, partition: str) -> str:
        parse_date(partition)
        return self.path.replace(DATE_FIELD, partition)

    def output_url(self, output_path: str, partition: str) -> str:
        parse_date(partition)
        if is_partitioned(output_path):
            return output_path.replace(DATE_FIELD, partition)
        return output_path.rstrip("/") + "/" + self.segment.replace(DATE_FIELD, partition)

    def dates(self, relative_paths: Iterable[str]) -> list[str]:
        """The distinct valid dates among object paths relative to ``root``, sorted."""
        found: set[str] = set()
        for rel in relative_paths:
            match = self.pattern.match(rel)
            if match is None:
                continue
            try:
                found.add(parse_date(match.group("date")).isoformat())
            except ConfigError:  # dt=2026-13-40 is not a partition
                continue
        return sorted(found)


def for_partition(config: JobConfig, partition: str | None) -> JobConfig:
    """The job for one partition: ``{date}`` substituted in the input and output paths.

    A config without ``{date}`` and no partition is returned as it is. Naming a partition for
    an unpartitioned input, or none for a partitioned one, is a ConfigError.
    """
    path = config.input.path
    if partition is None:
        if is_partitioned(path):
            raise ConfigError(
                f"input.path {path!r} has a {DATE_FIELD} field: name a partition (YYYY-MM-DD)"
            )
        return config
    if not is_partitioned(path):
        raise ConfigError(f"partition {partition}: input.path {path!r} has no {DATE_FIELD} field")
    template = PartitionTemplate.parse(path)
    return config.model_copy(
        update={
            "input": config.input.model_copy(update={"path": template.input_url(partition)}),
            "output": config.output.model_copy(
                update={"path": template.output_url(config.output.path, partition)}
            ),
            # A month's budget is shared by every partition: its ledger stays at the root.
            "budget": config.budget.model_copy(
                update={"ledger": config.budget.ledger or output_root(config.output.path)}
            ),
        }
    )


def output_root(output_path: str) -> str:
    """The part of ``output_path`` every partition shares: all of it, or what comes before
    the component holding ``{date}``."""
    if not is_partitioned(output_path):
        return output_path
    head = output_path[: output_path.index(DATE_FIELD)]
    return head[: head.rfind("/")] if "/" in head else "."


def list_partitions(config: JobConfig) -> list[str]:
    """The dates whose input exists in storage (one recursive listing of the root), sorted."""
    spec = config.input
    template = PartitionTemplate.parse(spec.path)
    fs, resolved = filesystem(template.root, spec.storage_options)
    root = qualify(fs, resolved).rstrip("/") + "/"
    objects = list_inputs(template.root, spec.storage_options)
    return template.dates(o.url[len(root) :] for o in objects if o.url.startswith(root))


@dataclass(frozen=True)
class PartitionState:
    """One partition: where it reads and writes, and whether the current config committed it."""

    partition: str
    input_url: str
    output_url: str
    committed: bool
    rows: int | None = None


def partition_state(config: JobConfig, partition: str) -> PartitionState:
    """Whether ``partition`` is committed under ``config``, read from its manifest and a listing.

    Committed is decided by :func:`enrich.freshness.current_manifest`: a manifest made by this
    config (same fingerprint) from the input as it is now (the files and pins it recorded, so
    the same chunks): an edited prompt or model, or a file that landed late in the partition,
    makes it uncommitted again. No byte of the partition's input is read (only a manifest
    committed before inputs were recorded has its input surveyed).
    """
    cfg = for_partition(config, partition)
    manifest = current_manifest(cfg, where=partition)
    return PartitionState(
        partition=partition,
        input_url=cfg.input.path,
        output_url=cfg.output.path,
        committed=manifest is not None,
        rows=None if manifest is None else manifest.rows,
    )


def pending(states: Sequence[PartitionState]) -> list[str]:
    """The dates of the partitions not committed, in order."""
    return [s.partition for s in states if not s.committed]
