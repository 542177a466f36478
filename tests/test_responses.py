"""What the engine does with a response it cannot trust as a complete answer.

A completion cut at ``max_completion_tokens`` or filtered is an error row that keeps its text
and its cost (:func:`~enrich.results.completion_status`); a 200 that is not a chat completion
is retried, then stops the run (the endpoint is not a chat API); a stream cut short is retried
like a dropped connection, and its rows are never committed as ``ok``. The rules are tables;
the engine is run through a ``FakeCompleter``, and the streams through the simulator over HTTP.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from support import (
    JobFactory,
    answer,
    by_row,
    prepare_job,
    review_rows,
    run_config,
    simulator,
    user_text,
)

from enrich.completer import Completion, CompletionRequest, FakeCompleter
from enrich.errors import CompletionError, RunStopped
from enrich.output.committed import committed_manifest
from enrich.output.reader import output_status, read_dataset
from enrich.results import completion_status
from enrich.retry import is_retryable, leaves_rows_pending
from enrich.sim.config import Faults

RETRY = {"attempts": 3, "backoff_initial": 0.001, "backoff_max": 0.002}

# -- the rules, as tables -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "finish_reason", "status", "kind"),
    [
        ("positive", "stop", "ok", None),
        ("", "stop", "ok", None),
        ("call", "tool_calls", "ok", None),
        ("positive", None, "ok", None),
        ("", "length", "error", "empty_length"),
        ("posi", "length", "error", "truncated"),
        ("", "content_filter", "error", "content_filter"),
        ("partial", "content_filter", "error", "content_filter"),
    ],
)
def test_completion_status(
    content: str, finish_reason: str | None, status: str, kind: str | None
) -> None:
    assert completion_status(content, finish_reason) == (status, kind)


@pytest.mark.parametrize(
    ("error", "retryable", "pending"),
    [
        (CompletionError("x", code="not_a_completion"), True, False),
        (CompletionError("x", code="stream_cut"), True, True),
        (CompletionError("x", code="connection"), True, True),
        (CompletionError("x", status=502, code="bad_body"), True, True),
        (CompletionError("x", status=400), False, False),
        (CompletionError("x", code="something_else"), False, False),
    ],
    ids=["not-a-completion", "stream-cut", "connection", "bad-body", "http-400", "unknown"],
)
def test_what_is_retried_and_what_waits_for_a_next_run(
    error: CompletionError, retryable: bool, pending: bool
) -> None:
    assert (is_retryable(error), leaves_rows_pending(error)) == (retryable, pending)


# -- the engine, through a FakeCompleter ---------------------------------------------------------


def target(request: CompletionRequest) -> bool:
    return "number 4:" in user_text(request)


@pytest.mark.parametrize(
    ("content", "finish_reason", "kind"),
    [
        ("", "length", "empty_length"),
        ("posi", "length", "truncated"),
        ("partial", "content_filter", "content_filter"),
    ],
)
def test_an_unfinished_answer_is_an_error_row_that_keeps_its_text_and_cost(
    make_job: JobFactory, content: str, finish_reason: str, kind: str
) -> None:
    def handler(request: CompletionRequest) -> Completion:
        done = answer(request)
        return (
            replace(done, content=content, finish_reason=finish_reason) if target(request) else done
        )

    completer = FakeCompleter(handler)
    # Without the one retry of an empty answer (tests/test_steps_reasoning.py has it).
    no_retry = {"empty_length_retry": {"enabled": False}}
    job, summary = run_config(make_job(review_rows(10), execution=no_retry), completer=completer)
    assert summary.complete
    assert len(completer.requests) == 10  # paid for, so never asked again
    table = read_dataset(job.store.url)
    row = {c: by_row(table, c)["r-00004"] for c in table.column_names}
    assert (row["status"], row["error_kind"]) == ("error", kind)
    assert row["completion"] == content
    assert row["finish_reason"] == finish_reason
    assert row["error"].startswith(f"finish_reason {finish_reason}")
    assert row["completion_tokens"] == 3 and row["cost_usd"] > 0 and row["attempts"] == 1
    others = by_row(table, "status")
    del others["r-00004"]
    assert set(others.values()) == {"ok"}
    assert (summary.ok, summary.failed) == (9, 1)


def test_a_body_that_is_never_a_completion_is_retried_then_stops_the_run(
    make_job: JobFactory,
) -> None:
    """An endpoint whose 200s stay non-completions after every retry is not a chat API."""

    def handler(request: CompletionRequest) -> Completion | CompletionError:
        if target(request):
            return CompletionError("not a chat completion: no choices", code="not_a_completion")
        return answer(request)

    completer = FakeCompleter(handler)
    config = make_job(review_rows(10), execution={"retry": RETRY})
    with pytest.raises(RunStopped, match="does not answer as a chat API"):
        run_config(config, completer=completer)
    assert sum(target(r) for r in completer.requests) == 3
    assert committed_manifest(prepare_job(config).store) is None


def test_a_stream_cut_short_is_retried_and_the_whole_answer_committed(
    make_job: JobFactory,
) -> None:
    cuts: list[str] = []

    def handler(request: CompletionRequest) -> Completion | CompletionError:
        if target(request) and not cuts:
            cuts.append(user_text(request))
            return CompletionError("stream ended before its last chunk", code="stream_cut")
        return answer(request)

    job, summary = run_config(
        make_job(review_rows(10), execution={"retry": RETRY}), completer=FakeCompleter(handler)
    )
    assert summary.complete and len(cuts) == 1
    table = read_dataset(job.store.url)
    assert set(table.column("status").to_pylist()) == {"ok"}
    assert by_row(table, "attempts")["r-00004"] == 2


# -- streams over HTTP, against the simulator ----------------------------------------------------


def test_a_dropped_stream_is_retried_and_every_row_gets_its_whole_answer(
    make_job: JobFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = make_job(
        review_rows(20),
        params={"stream": True},
        execution={"retry": {**RETRY, "attempts": 10}},
    )
    with simulator(monkeypatch, faults=Faults(stream_drop=0.3), seed=11) as sim:
        job, summary = run_config(config)
        stats = sim.stats
    assert stats.faults["stream_drop"] > 0 and stats.completed == 20
    assert summary.complete
    table = read_dataset(job.store.url)
    assert set(table.column("status").to_pylist()) == {"ok"}
    assert sum(table.column("attempts").to_pylist()) == 20 + stats.faults["stream_drop"]
    assert set(table.column("finish_reason").to_pylist()) == {"stop"}
    # Each row holds the whole answer, the same as a run that met no fault.
    with simulator(monkeypatch):
        clean, _ = run_config(config, [f"output.path={tmp_path}/clean"])
    assert by_row(table, "completion") == by_row(read_dataset(clean.store.url), "completion")


def test_a_stream_always_cut_short_commits_nothing(
    make_job: JobFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_job(review_rows(7), params={"stream": True}, execution={"retry": RETRY})
    with simulator(monkeypatch, faults=Faults(stream_cut=1.0)) as sim:
        job, summary = run_config(config)
        assert sim.stats.faults == {"stream_cut": 7 * 3}
    assert not summary.complete
    assert (summary.ok, summary.failed, summary.pending) == (0, 0, 7)
    assert not output_status(job.store.url).complete
