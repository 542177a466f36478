"""Errors of the job stop the run and commit nothing; error rows are asked again on a rerun.

A refused key (401), a refused permission (403), an unknown model (404) and an endpoint that
does not answer as a chat API are the job's errors, not the row's
(:func:`~enrich.retry.verdict`): the run stops at the first, commits nothing and says so in one
line. So does a run whose error share passes ``execution.max_error_share``
(:func:`~enrich.retry.too_many_errors`). A rerun reuses only the errors that belong to the
request itself (:func:`~enrich.results.reusable`); ``--retry-errors`` asks for those again too.
Everything runs against the simulator over HTTP (or a few-line aiohttp server).
"""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from support import (
    JobFactory,
    by_row,
    point_sdk_at,
    prepare_job,
    review_rows,
    run_enrich,
    serving,
    simulator,
)

from enrich.errors import CompletionError, RunStopped
from enrich.output.committed import committed_manifest
from enrich.output.reader import read_dataset
from enrich.results import Result, reusable
from enrich.retry import too_many_errors, verdict
from enrich.run import run_job
from enrich.sim.harness import ThreadedSimulator

# -- the rules, as tables -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (CompletionError("HTTP 401: Wrong API Key", status=401, code="wrong_api_key"), "job"),
        (CompletionError("HTTP 403: Not authenticated", status=403), "job"),
        (CompletionError("HTTP 404: no model", status=404, code="model_not_found"), "job"),
        (CompletionError("HTTP 404: ", status=404), "job"),
        (CompletionError("not a chat completion: no choices", code="not_a_completion"), "job"),
        (CompletionError("HTTP 400: bad", status=400, code="wrong_api_format"), "row"),
        (CompletionError("too long", status=400, code="context_length_exceeded"), "row"),
        (CompletionError("HTTP 402: pay", status=402), "row"),
        (CompletionError("bad json", code="invalid_output"), "row"),
        (CompletionError("HTTP 429: busy", status=429, code="queue_exceeded"), "transient"),
        (CompletionError("HTTP 500: oops", status=500), "transient"),
        (CompletionError("timed out", code="timeout"), "transient"),
        (CompletionError("cut", code="stream_cut"), "transient"),
        (ValueError("not a completion error"), "row"),
    ],
)
def test_whose_fault_an_error_is(error: BaseException, expected: str) -> None:
    assert verdict(error) == expected


def error_row(kind: str | None) -> Result:
    return Result(completion=None, status="error", error="failed", error_kind=kind)


@pytest.mark.parametrize(
    ("result", "reused", "reused_with_retry_errors"),
    [
        (Result(completion="positive"), True, True),
        (error_row("http_400"), True, False),
        (error_row("context_length_exceeded"), True, False),
        (error_row("truncated"), True, False),
        (error_row("empty_length"), True, False),
        (error_row("content_filter"), True, False),
        (error_row("http_401"), False, False),
        (error_row("http_402"), False, False),
        (error_row("http_500"), False, False),
        (error_row("not_a_completion"), False, False),
        (error_row(None), False, False),
    ],
)
def test_which_results_a_rerun_reuses(
    result: Result, reused: bool, reused_with_retry_errors: bool
) -> None:
    assert reusable(result) is reused
    assert reusable(result, retry_errors=True) is reused_with_retry_errors


@pytest.mark.parametrize(
    ("errors", "rows", "max_share", "stops"),
    [
        (1, 1, 0.5, False),  # one early 400 is no trend
        (19, 19, 0.5, False),
        (11, 20, 0.5, True),
        (10, 20, 0.5, False),
        (20, 20, 1.0, False),  # 1 turns the check off
        (1, 20, 0.0, True),
        (0, 100, 0.0, False),
    ],
)
def test_when_the_error_share_stops_a_run(
    errors: int, rows: int, max_share: float, stops: bool
) -> None:
    assert too_many_errors(errors, rows, max_share) is stops


# -- through the engine and the command line ------------------------------------------------------

FEW = {"max_concurrency": 4, "chunks_in_flight": 2, "rows_per_chunk": 10}


def test_a_refused_key_stops_the_run_and_the_fixed_key_commits(
    monkeypatch: pytest.MonkeyPatch, make_job: JobFactory
) -> None:
    config = str(make_job(review_rows(40), execution=FEW))
    with simulator(monkeypatch, api_keys=frozenset({"csk-right"})) as locked:
        refused = run_enrich("run", config, "--direct", env={"CEREBRAS_API_KEY": "csk-wrong"})
        assert refused.returncode == 1
        assert (
            "error: the API refused the key (HTTP 401: Wrong API Key): check CEREBRAS_API_KEY; "
            "nothing was committed"
        ) in " ".join(refused.stderr.split())
        assert "Traceback" not in refused.stderr
        # The first 401 stops the run: only requests already admitted were sent.
        assert locked.stats.requests <= FEW["max_concurrency"]
        assert committed_manifest(prepare_job(config).store) is None

        locked.reset()
        fixed = run_enrich("run", config, "--direct", env={"CEREBRAS_API_KEY": "csk-right"})
        assert fixed.returncode == 0, fixed.stderr
        assert "committed 40 rows" in fixed.stderr
        assert locked.stats.requests == 40  # no 401 was kept as a result
    assert set(by_row(read_dataset(prepare_job(config).store.url), "status").values()) == {"ok"}


def test_a_refused_permission_stops_the_run(sim: ThreadedSimulator, make_job: JobFactory) -> None:
    sim.set_faults(fail_403=1.0)
    config = str(make_job(review_rows(40), execution=FEW))
    result = run_enrich("run", config, "--direct")
    assert result.returncode == 1
    assert "error: the API refused access (HTTP 403: " in result.stderr
    assert sim.stats.requests <= FEW["max_concurrency"]
    assert committed_manifest(prepare_job(config).store) is None


def test_an_unknown_model_stops_the_run(
    sim: ThreadedSimulator, make_job: JobFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_job(review_rows(40), model="no-such-model", execution=FEW)
    # Prepared while the provider still served the model: its 404s stop the run.
    with simulator(monkeypatch, models=("gpt-oss-120b", "no-such-model")):
        job = prepare_job(config)
    point_sdk_at(sim, monkeypatch)
    with pytest.raises(RunStopped, match=r"does not know the model .*'no-such-model'"):
        asyncio.run(run_job(job))
    assert sim.stats.requests <= FEW["max_concurrency"]
    assert committed_manifest(job.store) is None


async def hello(request: web.Request) -> web.Response:
    """Every request answered 200 with JSON that is not a chat completion."""
    return web.json_response({"hello": "world"})


async def test_an_endpoint_that_is_not_a_chat_api_stops_the_run(
    monkeypatch: pytest.MonkeyPatch, make_job: JobFactory
) -> None:
    job = prepare_job(make_job(review_rows(40), execution=FEW))
    async with serving(hello) as url:
        monkeypatch.setenv("CEREBRAS_BASE_URL", url)
        monkeypatch.setenv("CEREBRAS_API_KEY", "any")
        with pytest.raises(RunStopped, match="does not answer as a chat API"):
            await run_job(job)
    assert committed_manifest(job.store) is None


def test_too_many_error_rows_stop_the_run(sim: ThreadedSimulator, make_job: JobFactory) -> None:
    sim.set_faults(fail_400=1.0)
    config = str(make_job(review_rows(100), execution=FEW))
    result = run_enrich("run", config, "--direct")
    assert result.returncode == 1
    assert "rows failed" in result.stderr and "execution.max_error_share 50%" in result.stderr
    assert "nothing was committed" in result.stderr
    assert sim.stats.requests < 100  # stopped after 20, give or take what was in flight
    assert committed_manifest(prepare_job(config).store) is None


def test_request_errors_commit_and_retry_errors_asks_again(
    sim: ThreadedSimulator, make_job: JobFactory
) -> None:
    """Below the threshold, 400 rows commit (exit 0, counted); a rerun keeps them, and
    ``--retry-errors`` asks for them again."""
    sim.set_faults(fail_400=1.0)
    config = str(make_job(review_rows(30), execution={**FEW, "max_error_share": 1.0}))
    first = run_enrich("run", config, "--direct")
    assert first.returncode == 0, first.stderr
    assert "committed 30 rows in 3 parts; 30 rows failed" in " ".join(first.stderr.split())

    sim.set_faults(fail_400=0.0)
    sim.reset()
    again = run_enrich("run", config, "--direct")
    assert again.returncode == 0 and "already committed" in again.stderr
    assert sim.stats.requests == 0  # a 400 belongs to the request: not asked again

    retried = run_enrich("run", config, "--direct", "--retry-errors")
    assert retried.returncode == 0, retried.stderr
    assert (
        "committed 30 rows" in retried.stderr
        and "failed" not in retried.stderr.split("committed")[-1]
    )
    assert sim.stats.requests == 30
    table = read_dataset(prepare_job(config).store.url)
    assert set(by_row(table, "status").values()) == {"ok"}
