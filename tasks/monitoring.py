"""What a run shows in the Prefect UI: tags, a moving progress artifact, report artifacts.

* Artifact keys are slugs (lowercase letters, digits, dashes): anything else fails the run.
* A progress artifact has one updater, so its updates arrive in order and the last one stays.
* Tags name the job and the model on the flow run itself and on every task run under it.
* Nothing published here carries the API key: every artifact passes through :func:`mask_secrets`.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Any, TypeVar
from uuid import UUID

from prefect.artifacts import (
    acreate_markdown_artifact,
    acreate_progress_artifact,
    acreate_table_artifact,
    aupdate_progress_artifact,
)
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
)
from prefect.runtime import flow_run

from enrich.config import JobConfig

T = TypeVar("T")
REDACTED = "[redacted]"

#: The figures of a partition row, in the order a table artifact shows them.
PARTITION_COLUMNS = [
    "partition",
    "state",
    "flow_run",
    "rows",
    "rows_ok",
    "rows_failed",
    "requests",
    "tokens_in",
    "tokens_out",
    "cost_usd",
    "rows_per_s",
    "latency_p50_s",
    "latency_p95_s",
    "latency_p99_s",
    "errors",
    "message",
]


def artifact_key(*parts: str) -> str:
    """Artifact keys allow only lowercase letters, digits and dashes."""
    return re.sub(r"[^a-z0-9]+", "-", "-".join(p for p in parts if p).lower()).strip("-")


def run_tags(config: JobConfig) -> list[str]:
    """The tags that let the UI filter runs by job and by model."""
    return [f"job:{config.name}", f"model:{config.model}"]


async def tag_current_run(tags: Iterable[str]) -> None:
    """Add ``tags`` to the running flow run (tags known only once the config is read)."""
    run_id = flow_run.get_id()
    if run_id is None:
        return
    current = list(flow_run.get_tags())
    merged = list(dict.fromkeys([*current, *tags]))
    if merged != current:
        async with get_client() as client:
            await client.update_flow_run(UUID(run_id), tags=merged)


def mask_secrets(value: T, secrets: Iterable[str | None]) -> T:
    """``value`` with every occurrence of a secret in its strings replaced (dicts, lists too)."""
    hidden = [s for s in secrets if s]
    if not hidden:
        return value

    def clean(item: Any) -> Any:
        if isinstance(item, str):
            for secret in hidden:
                item = item.replace(secret, REDACTED)
            return item
        if isinstance(item, Mapping):
            return {k: clean(v) for k, v in item.items()}
        if isinstance(item, list | tuple):
            return [clean(v) for v in item]
        return item

    cleaned: T = clean(value)
    return cleaned


def errors_cell(errors: Mapping[str, Sequence[Any]]) -> str:
    """``kind: count`` pairs for a table cell (the markdown report has a sample of each)."""
    return ", ".join(f"{kind}: {entry[0]}" for kind, entry in sorted(errors.items()))


class ProgressArtifact:
    """One progress artifact and its single updater.

    Chunk completions call :meth:`nudge`; :meth:`follow` publishes the current share after a
    nudge or every ``every`` seconds, whichever comes first, and never more often than every
    ``gap`` seconds. Only :meth:`follow` and :meth:`finish` write, one after the other, so the
    UI never shows an older value after a newer one.
    """

    def __init__(
        self, publish: Callable[[float], Awaitable[Any]], share: Callable[[], float]
    ) -> None:
        self._publish = publish
        self._share = share
        self._changed = asyncio.Event()
        self._shown = 0.0

    @classmethod
    async def create(
        cls, key: str, description: str, share: Callable[[], float]
    ) -> ProgressArtifact:
        """A new progress artifact at 0 %, following ``share`` (0 to 1)."""
        artifact_id = await acreate_progress_artifact(
            progress=0.0, key=key, description=description
        )
        return cls(partial(aupdate_progress_artifact, artifact_id), share)

    def nudge(self) -> None:
        self._changed.set()

    async def _show(self) -> None:
        value = round(100.0 * min(max(self._share(), 0.0), 1.0), 1)
        if value != self._shown:
            await self._publish(value)
            self._shown = value

    async def follow(
        self, every: float, gap: float, on_tick: Callable[[], None] | None = None
    ) -> None:
        """Publish progress until cancelled; ``on_tick`` runs on each timer tick (logging)."""
        while True:
            # asyncio.wait, not wait_for: on Python 3.11 wait_for can swallow a cancellation
            # that arrives as the event is set, and this loop would then never end.
            waiter = asyncio.ensure_future(self._changed.wait())
            try:
                await asyncio.wait({waiter}, timeout=every)
            finally:
                waiter.cancel()
            if not self._changed.is_set() and on_tick is not None:
                on_tick()
            self._changed.clear()
            await self._show()
            await asyncio.sleep(gap)

    async def finish(self) -> None:
        await self._show()


async def publish_report(
    key: str,
    rows: list[dict[str, Any]],
    markdown: str,
    description: str,
    secrets: Iterable[str | None] = (),
) -> None:
    """A keyed table artifact and a ``<key>-report`` markdown artifact, secrets redacted."""
    hidden = list(secrets)
    await asyncio.gather(
        acreate_table_artifact(
            key=key, table=mask_secrets(rows, hidden), description=mask_secrets(description, hidden)
        ),
        acreate_markdown_artifact(
            key=f"{key}-report", markdown=mask_secrets(markdown, hidden), description=description
        ),
    )


def partition_row(
    partition: str, state: str, figures: Mapping[str, Any] | None = None, **fields: Any
) -> dict[str, Any]:
    """One partition's row of a backfill or schedule table: its run's ``figures`` (the row
    of the run's own table artifact) and ``fields``, in :data:`PARTITION_COLUMNS`."""
    row: dict[str, Any] = dict.fromkeys(PARTITION_COLUMNS)
    for source in (figures or {}, fields):
        row.update({k: v for k, v in source.items() if k in row})
    row["partition"], row["state"] = partition, state
    return row


def _cell(value: Any, fmt: str = "{}") -> str:
    return "" if value is None else fmt.format(value).replace("|", "/")


DONE_STATES = ("Completed", "already committed", "no input")


def failed_partitions(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The partitions of a backfill or schedule table whose run did not end well."""
    return [str(r["partition"]) for r in rows if r["state"] not in DONE_STATES]


def partitions_markdown(title: str, rows: Sequence[Mapping[str, Any]], note: str = "") -> str:
    """A markdown report: totals, one line per partition, then errors and failures.

    The table keeps to what fits a screen (the table artifact has every figure).
    """

    def total(name: str) -> float:
        return sum(float(r.get(name) or 0) for r in rows)

    states: dict[str, int] = {}
    for r in rows:
        states[str(r["state"])] = states.get(str(r["state"]), 0) + 1
    lines = [
        f"# {title}",
        "",
        ", ".join(f"{n} {state}" for state, n in sorted(states.items())) or "no partitions",
        "",
        f"Rows ok {int(total('rows_ok'))}, failed {int(total('rows_failed'))}; "
        f"tokens in {int(total('tokens_in'))}, out {int(total('tokens_out'))}; "
        f"cost ${total('cost_usd'):.6f}.",
        "",
        "| partition | state | rows ok | failed | tokens in / out | cost $ | rows/s "
        "| latency p50 / p95 / p99 s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        tokens = f"{_cell(r.get('tokens_in'))} / {_cell(r.get('tokens_out'))}"
        latency = " / ".join(_cell(r.get(f"latency_p{q}_s"), "{:.2f}") for q in (50, 95, 99))
        cells = [
            _cell(r.get("partition")),
            _cell(r.get("state")),
            _cell(r.get("rows_ok") if r.get("rows_ok") is not None else r.get("rows")),
            _cell(r.get("rows_failed")),
            "" if r.get("tokens_in") is None else tokens,
            _cell(r.get("cost_usd")),
            _cell(r.get("rows_per_s")),
            "" if r.get("latency_p50_s") is None else latency,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    notes = [f"- {r['partition']}: errors {r['errors']}" for r in rows if r.get("errors")]
    notes += [
        f"- {r['partition']}: {str(r['message']).splitlines()[0]}" for r in rows if r.get("message")
    ]
    if notes:
        lines += ["", "## Notes", "", *notes]
    if note:
        lines += ["", note]
    return "\n".join(lines)


async def read_table_artifact(run_id: UUID, key: str) -> list[dict[str, Any]] | None:
    """The rows of the table artifact ``key`` that flow run ``run_id`` created, if any."""
    async with get_client() as client:
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]),
                key=ArtifactFilterKey(any_=[key]),
            ),
            limit=1,
        )
    if not found or found[0].data is None:
        return None
    data = found[0].data
    rows = json.loads(data) if isinstance(data, str) else data
    return rows if isinstance(rows, list) else None
