"""What runs show in the UI, without a server: keys, redaction, partition reports, progress."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from support import DEADLINE_S, eventually

from enrich_tasks.monitoring import (
    PARTITION_COLUMNS,
    REDACTED,
    ProgressArtifact,
    artifact_key,
    errors_cell,
    mask_secrets,
    partition_row,
    partitions_markdown,
)


@pytest.mark.parametrize(
    ("parts", "key"),
    [
        (("enrich", "reviews"), "enrich-reviews"),
        (("enrich", "reviews_daily", "2026-11-20"), "enrich-reviews-daily-2026-11-20"),
        (("backfill", "Reviews Daily!"), "backfill-reviews-daily"),
        (("enrich", "reviews", ""), "enrich-reviews"),
        (("--x--",), "x"),
    ],
)
def test_artifact_keys_are_slugs(parts: tuple[str, ...], key: str) -> None:
    assert artifact_key(*parts) == key


SECRET = "csk-abc123"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("401: key csk-abc123 is wrong", f"401: key {REDACTED} is wrong"),
        ({"errors": ["csk-abc123", 3]}, {"errors": [REDACTED, 3]}),
        ([{"message": "x csk-abc123csk-abc123"}], [{"message": f"x {REDACTED}{REDACTED}"}]),
        ({"rows": 12, "cost": 0.5}, {"rows": 12, "cost": 0.5}),
    ],
)
def test_redact(value: Any, expected: Any) -> None:
    assert mask_secrets(value, [SECRET, None]) == expected


def test_redact_without_secrets_is_the_identity() -> None:
    value = {"a": "csk-abc123"}
    assert mask_secrets(value, [None, ""]) is value


@pytest.mark.parametrize(
    ("errors", "cell"),
    [
        ({}, ""),
        ({"rate_limit": [3, "429 Too Many Requests"]}, "rate_limit: 3"),
        ({"timeout": [1, "t"], "bad_request": [2, "b"]}, "bad_request: 2, timeout: 1"),
    ],
)
def test_errors_cell(errors: dict[str, list[Any]], cell: str) -> None:
    assert errors_cell(errors) == cell


def test_partition_rows_keep_the_table_columns() -> None:
    figures = {"job": "reviews", "rows_ok": 12, "tokens_in": 900, "complete": True}
    row = partition_row("2026-11-20", "Completed", figures, flow_run="reviews-2026-11-20")
    assert list(row) == PARTITION_COLUMNS
    assert (row["partition"], row["state"], row["rows_ok"], row["tokens_in"]) == (
        "2026-11-20",
        "Completed",
        12,
        900,
    )
    assert row["message"] is None
    assert partition_row("2026-11-21", "no input")["rows"] is None


def test_partitions_markdown_totals_and_failures() -> None:
    rows = [
        partition_row(
            "2026-11-20",
            "Completed",
            {"rows_ok": 12, "rows_failed": 1, "tokens_in": 100, "errors": "bad_request: 1"},
        ),
        partition_row("2026-11-21", "Failed", message="InputError: part-0.jsonl:3: bad\nmore"),
        partition_row("2026-11-22", "already committed", rows=10),
    ]
    text = partitions_markdown("Backfill: reviews", rows)
    assert text.startswith("# Backfill: reviews")
    assert "1 Completed, 1 Failed, 1 already committed" in text
    assert "Rows ok 12, failed 1; tokens in 100" in text
    assert "- 2026-11-20: errors bad_request: 1" in text
    assert "- 2026-11-21: InputError: part-0.jsonl:3: bad" in text and "more" not in text
    assert text.count("| 2026-11-2") == 3


class Shown:
    """A progress artifact: the values published to it, in order."""

    def __init__(self) -> None:
        self.values: list[float] = []

    async def __call__(self, value: float) -> None:
        await asyncio.sleep(0)  # a round trip to the API
        self.values.append(value)


async def test_progress_moves_as_chunks_finish_and_in_order() -> None:
    shown, done = Shown(), [0]
    progress = ProgressArtifact(shown, lambda: done[0] / 4)
    # The timer never fires here: only chunk completions move the bar.
    follower = asyncio.ensure_future(progress.follow(every=3600, gap=0))
    for chunk in range(1, 5):
        done[0] = chunk
        progress.nudge()
        await eventually(lambda c=chunk: shown.values[-1:] == [25.0 * c])  # type: ignore[misc]
    follower.cancel()
    await asyncio.gather(follower, return_exceptions=True)
    await progress.finish()
    assert shown.values == [25.0, 50.0, 75.0, 100.0]


async def test_progress_timer_ticks_without_chunks() -> None:
    shown, ticks = Shown(), []
    progress = ProgressArtifact(shown, lambda: 0.5)
    follower = asyncio.ensure_future(
        progress.follow(every=0, gap=0, on_tick=lambda: ticks.append(1))
    )
    await eventually(lambda: len(ticks) >= 3)
    follower.cancel()
    await asyncio.gather(follower, return_exceptions=True)
    assert shown.values == [50.0]  # unchanged values are not published again


async def test_progress_stops_when_cancelled_as_a_chunk_finishes() -> None:
    # The run cancels the updater right after the last chunk nudged it; the updater must stop
    # (an updater that swallowed that cancellation kept the flow run from ever finishing).
    for _ in range(20):
        progress = ProgressArtifact(Shown(), lambda: 1.0)
        follower = asyncio.ensure_future(progress.follow(every=3600, gap=0))
        await asyncio.sleep(0)
        progress.nudge()
        follower.cancel()
        done, _ = await asyncio.wait({follower}, timeout=DEADLINE_S)  # bounds a hang only
        assert follower in done and follower.cancelled()
