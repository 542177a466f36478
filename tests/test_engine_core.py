"""The engine's pure core: what a chunk sends, and how its results fold back onto its rows."""

from __future__ import annotations

import copy

import pytest

from enrich.catalogue import Prices
from enrich.engine.fold import fold_results, priced
from enrich.engine.selection import select_requests
from enrich.errors import CompletionError
from enrich.results import Result
from enrich.summary import ChunkSummary
from enrich.usage import Usage


def ok(prompt: int = 10, completion: int = 5, *, attempts: int = 1, cost: float = 1.0) -> Result:
    return Result(
        completion="yes",
        usage=Usage(prompt_tokens=prompt, completion_tokens=completion, queue_time=0.01),
        attempts=attempts,
        latency_s=0.2,
        cost_usd=cost,
    )


# 10 prompt and 5 completion tokens (``ok()``) cost 1.0 at these prices.
PRICES = Prices(input_per_million=50_000, output_per_million=100_000)


def failed(status: int = 400) -> Result:
    return Result(
        completion=None,
        attempts=1,
        latency_s=0.1,
        status="error",
        error=f"HTTP {status}: no",
        error_kind=f"http_{status}",
    )


# -- selection ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hashes", "known", "recent", "in_flight", "reuse", "wait", "send"),
    [
        pytest.param([], set(), set(), set(), set(), [], {}, id="empty chunk"),
        pytest.param(
            ["a", "b", "c"], set(), set(), set(), set(), [], {"a": 0, "b": 1, "c": 2}, id="all new"
        ),
        pytest.param(
            ["a", "b", "a", "a"], set(), set(), set(), set(), [], {"a": 0, "b": 1},
            id="a repeat inside the chunk is sent once, by its first row",
        ),
        pytest.param(
            ["x", "a", "x", "b"], {"x"}, set(), set(), set(), [], {"a": 1, "b": 3},
            id="a journaled request is not sent again",
        ),
        pytest.param(
            ["a", "b"], set(), {"a"}, set(), {"a"}, [], {"b": 1},
            id="a recent result is reused",
        ),
        pytest.param(
            ["a", "b", "a"], set(), set(), {"a"}, set(), ["a"], {"b": 1},
            id="a request in flight is waited for",
        ),
        pytest.param(
            ["a", "b", "c"], {"a"}, {"a", "b"}, {"a", "b", "c"}, {"b"}, ["c"], {},
            id="journal before recent window before in flight",
        ),
    ],
)  # fmt: skip
def test_select_requests(
    hashes: list[str],
    known: set[str],
    recent: set[str],
    in_flight: set[str],
    reuse: set[str],
    wait: list[str],
    send: dict[str, int],
) -> None:
    window = {h: ok() for h in recent}
    selection = select_requests(hashes, known=known, recent=window, in_flight=in_flight)
    assert set(selection.reuse) == reuse
    assert all(selection.reuse[h] is window[h] for h in reuse)
    assert selection.wait == wait
    assert selection.send == send


@pytest.mark.parametrize(
    ("hashes", "known", "in_flight", "too_long", "send", "overflow"),
    [
        (["a", "b", "c"], set(), set(), {1}, {"a": 0, "c": 2}, {"b": 1}),
        # Decided by the first row of a hash; a repeat of an overflow is not sent either.
        (["a", "b", "b"], set(), set(), {1}, {"a": 0}, {"b": 1}),
        # Only requests that would be sent are judged: known and in-flight ones are not.
        (["a", "b", "c"], {"a"}, {"b"}, {0, 1, 2}, {}, {"c": 2}),
        (["a", "b"], set(), set(), set(), {"a": 0, "b": 1}, {}),
    ],
)  # fmt: skip
def test_requests_that_cannot_fit_are_not_sent(
    hashes: list[str],
    known: set[str],
    in_flight: set[str],
    too_long: set[int],
    send: dict[str, int],
    overflow: dict[str, int],
) -> None:
    asked: list[int] = []

    def fits(row: int) -> bool:
        asked.append(row)
        return row not in too_long

    selection = select_requests(hashes, known=known, recent={}, in_flight=in_flight, fits=fits)
    assert (selection.send, selection.overflow) == (send, overflow)
    assert sorted(asked) == sorted([*send.values(), *overflow.values()])


# -- fold ---------------------------------------------------------------------------------------

#: How each output row came out: ``paid`` is the request's own result, ``shared`` a copy that
#: charges nothing.
PAID, SHARED = "paid", "shared"


@pytest.mark.parametrize(
    ("hashes", "results", "sent", "known", "transient", "rows", "counts"),
    [
        pytest.param(
            ["a", "a"], {"a": ok(attempts=2)}, {"a"}, set(), {},
            [PAID, SHARED],
            {"ok": 2, "reused": 1, "attempts": 2, "prompt_tokens": 10, "cost_usd": 1.0},
            id="the first row of a sent request pays, a repeat shares",
        ),
        pytest.param(
            ["k"], {"k": ok()}, set(), {"k"}, {},
            [PAID],
            {"ok": 1, "reused": 1, "attempts": 0, "prompt_tokens": 10, "cost_usd": 1.0},
            id="a journaled result keeps its tokens and counts as reused",
        ),
        pytest.param(
            ["r", "r"], {"r": ok()}, set(), set(), {},
            [SHARED, SHARED],
            {"ok": 2, "reused": 2, "attempts": 0, "prompt_tokens": 0, "cost_usd": 0.0},
            id="a result another chunk paid for is shared by every row",
        ),
        pytest.param(
            ["e", "a"], {"e": failed(), "a": ok()}, {"e", "a"}, set(), {},
            [PAID, PAID],
            {"ok": 1, "failed": 1, "attempts": 2, "prompt_tokens": 10, "cost_usd": 1.0,
             "errors": {"http_400": [1, "HTTP 400: no"]}},
            id="a permanent error is a row",
        ),
        pytest.param(
            ["t", "a", "t"], {"a": ok()}, {"t", "a"}, set(),
            {"t": CompletionError("HTTP 503: busy", status=503)},
            [PAID],
            {"ok": 1, "pending": 2, "attempts": 1, "prompt_tokens": 10, "cost_usd": 1.0,
             "errors": {"http_503": [2, "HTTP 503: busy"]}},
            id="rows of a request that failed transiently are pending, without a result",
        ),
    ],
)  # fmt: skip
def test_fold_results(
    hashes: list[str],
    results: dict[str, Result],
    sent: set[str],
    known: set[str],
    transient: dict[str, CompletionError],
    rows: list[str],
    counts: dict[str, object],
) -> None:
    start = ChunkSummary(chunk_id="c1", label="chunk 1", rows=len(hashes), requests=len(sent))
    before = copy.deepcopy(start)
    out, summary = fold_results(
        start, hashes, results, sent=sent, known=known, transient=transient, pricing=PRICES
    )
    assert start == before, "the starting counters are not modified"
    answered = [h for h in hashes if h not in transient]
    paid = [r == priced(results[h], PRICES) for r, h in zip(out, answered, strict=True)]
    assert [PAID if p else SHARED for p in paid] == rows
    for r, h, p in zip(out, answered, paid, strict=True):
        if not p:
            assert r == results[h].shared()
            assert (r.attempts, r.cost_usd, r.usage.prompt_tokens) == (0, 0.0, 0)
            assert r.usage.queue_time == 0.01  # timings describe the one call: kept
    expected = {
        "ok": 0, "failed": 0, "pending": 0, "reused": 0, "attempts": 0, "prompt_tokens": 0,
        "cost_usd": 0.0, "errors": {}, **counts,
    }  # fmt: skip
    assert {k: getattr(summary, k) for k in expected} == expected
    assert (summary.chunk_id, summary.rows, summary.requests) == ("c1", len(hashes), len(sent))


def test_fold_counts_latency_only_for_requests_this_chunk_sent() -> None:
    results = {"a": ok(), "k": ok(), "r": ok()}
    _, summary = fold_results(
        ChunkSummary(chunk_id="c", label="c"),
        ["a", "k", "r", "a"],
        results,
        sent={"a"},
        known={"k"},
        transient={},
        pricing=PRICES,
    )
    assert sum(summary.latency.values()) == 1


def test_fold_adds_to_the_starting_counters() -> None:
    start = ChunkSummary(chunk_id="c", label="c", ok=3, prompt_tokens=7)
    _, summary = fold_results(
        start, ["a"], {"a": ok()}, sent={"a"}, known=set(), transient={}, pricing=PRICES
    )
    assert (summary.ok, summary.prompt_tokens) == (4, 17)
