"""The events a run emits, read back from a real Prefect server, and the automation that
reacts to a stopped run: created from docs/automations.yaml, it notifies a webhook."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import yaml
from aiohttp import web
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.client.orchestration import get_client
from prefect.events.filters import EventFilter, EventNameFilter, EventRelatedFilter
from prefect.events.schemas.events import ReceivedEvent
from prefect_api import PrefectServer, run_id
from support import DEADLINE_S, ROOT, serving

from enrich.sim.harness import ThreadedSimulator
from enrich_flows.enrich import enrich_dataset

pytest_plugins = ["prefect_harness"]
pytestmark = [pytest.mark.prefect, pytest.mark.slow, pytest.mark.usefixtures("in_repo")]

DAILY = "configs/reviews_daily.yaml"
SAMPLE = "configs/reviews.yaml"
PLACEHOLDER = "00000000-0000-0000-0000-000000000000"


async def events_of(run: UUID, expected: int, named: str = "enrich.") -> list[ReceivedEvent]:
    """The events named ``named...`` (default: every ``enrich.*`` event) related to flow run
    ``run``, once ``expected`` have arrived."""
    where = EventFilter(
        event=EventNameFilter(prefix=[named]),
        related=EventRelatedFilter(id=[f"prefect.flow-run.{run}"]),
    )
    found: list[ReceivedEvent] = []
    for _ in range(int(DEADLINE_S * 2)):
        async with get_client() as client:
            found = list((await client.read_events(filter=where, limit=50)).events)
        if len(found) >= expected:
            break
        await asyncio.sleep(0.5)
    return sorted(found, key=lambda e: e.occurred)


async def test_a_committed_run_emits_its_chunks_and_its_dataset(
    sim: ThreadedSimulator, tmp_path: Path
) -> None:
    overrides = [f"output.path={tmp_path}/daily", "execution.rows_per_chunk=5"]
    state = await enrich_dataset(DAILY, overrides, "2026-11-20", return_state=True)
    assert state.is_completed(), state.message
    run = run_id(state)
    events = await events_of(run, 4)
    names = [e.event for e in events]
    assert sorted(names) == ["enrich.chunk.committed"] * 3 + ["enrich.dataset.committed"]
    assert names[-1] == "enrich.dataset.committed"  # after every chunk
    for event in events:
        assert event.resource.id == "enrich.job.reviews_daily.2026-11-20"
        assert event.resource["enrich.partition"] == "2026-11-20"
        assert any(r.id == f"prefect.flow-run.{run}" for r in event.related)
    chunks = [e.payload for e in events if e.event == "enrich.chunk.committed"]
    assert sorted(p["rows"] for p in chunks) == [2, 5, 5]
    dataset = events[-1].payload
    assert (dataset["job"], dataset["rows"], dataset["chunks"]) == ("reviews_daily", 12, 3)
    assert dataset["rows_ok"] == 12 and dataset["requests"] == sim.stats.requests == 12
    assert dataset["output"] == f"{tmp_path}/daily/dt=2026-11-20"

    # A rerun finds it committed and commits nothing: no event says it did.
    again = await enrich_dataset(DAILY, overrides, "2026-11-20", return_state=True)
    assert again.is_completed()
    await asyncio.sleep(2)  # what it would emit is sent by now; nothing may arrive
    assert await events_of(run_id(again), 0) == []


@pytest.mark.parametrize(
    ("config", "partition", "setup", "reason"),
    [
        (
            DAILY,
            "2026-11-21",
            ["execution.requests_per_day=3", "execution.rows_per_chunk=5"],
            "quota",
        ),
        # Every answer a 400: past max_error_share once 20 rows are in (the sample has 200).
        (SAMPLE, None, [], "error_rate"),
        # Room for some chunks, not all: the run ends incomplete instead of raising.
        (
            DAILY,
            "2026-11-23",
            ["budget.max_usd=0.0005", "execution.rows_per_chunk=2"],
            "budget",
        ),
    ],
)
async def test_a_stopped_run_says_why(
    sim: ThreadedSimulator,
    tmp_path: Path,
    config: str,
    partition: str | None,
    setup: list[str],
    reason: str,
) -> None:
    if reason == "error_rate":
        sim.set_faults(fail_400=1.0)
    overrides = [f"output.path={tmp_path}/out", *setup]
    state = await enrich_dataset(config, overrides, partition, return_state=True)
    assert state.is_failed()
    # Waiting for this one: a run stopped mid-way emitted its chunks' events first.
    [stopped] = await events_of(run_id(state), 1, "enrich.run.stopped")
    job = "reviews_daily" if partition else "reviews"
    assert stopped.resource.id == f"enrich.job.{job}" + (f".{partition}" if partition else "")
    assert (stopped.payload["job"], stopped.payload["partition"]) == (job, partition)
    assert stopped.payload["reason"] == reason
    assert stopped.payload["output"].startswith(f"{tmp_path}/out")
    said = {
        "quota": "daily requests quota exhausted",
        "error_rate": "nothing was committed",
        "budget": "budget of $0.0005 reached after $",
    }[reason]
    assert said in stopped.payload["message"]
    if reason == "budget":
        payload = stopped.payload
        assert 0 < payload["chunks_committed"] < payload["chunks"] == 7, payload
        assert payload["budget_usd"] == 0.0005 and 0 < payload["spent_usd"] <= 0.0005


async def test_the_documented_automation_notifies_a_stopped_run(
    sim: ThreadedSimulator, tmp_path: Path, prefect_server: PrefectServer
) -> None:
    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(text="ok")

    async with serving(hook) as url:
        block = CustomWebhookNotificationBlock(
            name="enrich-alerts", url=f"{url}/hook", json_data={"text": "{{subject}} | {{body}}"}
        )
        block_id = await block.save("enrich-alerts-test", overwrite=True)
        text = (ROOT / "docs" / "automations.yaml").read_text()
        assert text.count(f"block_document_id: {PLACEHOLDER}") == 2
        made = tmp_path / "automations.yaml"
        made.write_text(text.replace(PLACEHOLDER, str(block_id)))
        prefect_server.cli("automation", "create", "--from-file", str(made))
        async with get_client() as client:
            for name in ("enrich-run-stopped", "enrich-partition-failed"):
                [automation] = await client.read_automations_by_name(name)
                assert automation.enabled
                assert automation.actions[0].block_document_id == block_id  # type: ignore[union-attr]

        sim.set_faults(fail_400=1.0)
        state = await enrich_dataset(SAMPLE, [f"output.path={tmp_path}/out"], return_state=True)
        assert state.is_failed()
        for _ in range(int(DEADLINE_S * 2)):
            if any("stopped: error_rate" in str(r.get("text")) for r in received):
                break
            await asyncio.sleep(0.5)
    texts = [str(r.get("text")) for r in received]
    stopped = [t for t in texts if "stopped: error_rate" in t]
    assert stopped, texts
    assert stopped[0].startswith("enrich reviews stopped: error_rate | ")
    assert "rows failed" in stopped[0] and f"{tmp_path}/out" in stopped[0]
    assert yaml.safe_load(made.read_text())["automations"][0]["trigger"]["expect"] == [
        "enrich.run.stopped"
    ]
