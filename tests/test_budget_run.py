"""Budgets in a run: against the simulator (real SDK, real HTTP), what it billed is the truth.

The simulator counts the tokens of every completion it served; at the job's prices that is
what the provider would bill, and it never passes the budget, however many requests are in
flight. A run that reaches its budget stops like one whose daily quota is spent, and a rerun
with a higher budget pays only for what is missing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from support import (
    JobFactory,
    answer,
    prepare_job,
    review_rows,
    run_config,
    run_enrich,
    simulator,
    write_jsonl,
)

from enrich.budget import UNITS_PER_USD, Rates, usd_units
from enrich.completer import Completion, CompletionRequest, FakeCompleter
from enrich.config import load_job_config
from enrich.errors import BudgetReached, CompletionError
from enrich.job import Job
from enrich.ledger import Ledger
from enrich.output.committed import committed_chunk_ids
from enrich.output.index import ResultIndex
from enrich.output.reader import read_dataset
from enrich.partitions import for_partition
from enrich.run import run_job
from enrich.sim.harness import ThreadedSimulator
from enrich.storage import Store
from enrich.summary import JobSummary
from enrich.tokens import count_prompt_tokens
from enrich.usage import Usage

RATES = Rates.per_million(0.35, 0.75)  # the prices of the test job (support.jobs)
MAX_COMPLETION = 64
WIDE = {"rows_per_chunk": 50, "chunks_in_flight": 8, "max_concurrency": 64}


def billed(sim: ThreadedSimulator) -> int:
    """What the simulator served, at the job's prices, in budget units."""
    stats = sim.stats
    return RATES.cost(stats.prompt_tokens, stats.completion_tokens)


def worst_case(job: Job) -> int:
    """The largest worst case of any row of ``job`` (its prompt plus every completion token)."""
    prompts = [
        count_prompt_tokens(m)
        for chunk, table in job.iter_tables(job.chunks)
        for m in job.render(chunk, table)[2]
    ]
    return RATES.cost(max(prompts), MAX_COMPLETION)


def journaled(job: Job) -> set[str]:
    return set(ResultIndex.build(job.store, completion_column="completion"))


def test_a_budget_is_never_exceeded_with_64_requests_in_flight_and_resumes_higher(
    make_job: JobFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = review_rows(400)
    cap = "0.005"  # about 180 of the 400 rows
    with simulator(monkeypatch, ttft=0.2) as sim:
        config = make_job(rows, execution=WIDE, budget={"max_usd": float(cap)})
        job, summary = run_config(config)
        # The provider billed no more than the budget...
        assert billed(sim) <= usd_units(cap)
        # ...and the run stopped only when the next request could not fit what was left.
        assert usd_units(cap) - billed(sim) < worst_case(job)
        assert sim.stats.max_in_flight == 64
        assert not summary.complete
        assert re.fullmatch(
            r"budget of \$0\.005 reached after \$0\.00\d+; rerun with a higher budget to "
            r"resume \([0-7] of 8 chunks committed\)",
            summary.message,
        ), summary.message
        assert summary.budget_usd == 0.005 and summary.spent_usd == billed(sim) / UNITS_PER_USD
        assert summary.stopped == "budget"  # for the flow's enrich.run.stopped event
        assert summary.forecast_usd is not None and summary.forecast_usd > 0.01
        # Nothing half-committed: no dataset, only whole chunks; every answer billed is kept.
        assert not job.store.exists("_SUCCESS")
        done = committed_chunk_ids(job.store)
        assert len(done) < len(job.chunks)
        first = sim.stats.completed
        assert len(journaled(job)) == first
        markdown = summary.markdown()
        assert "## Budget" in markdown and "forecast, worst case" in markdown

        sim.reset()
        job, summary = run_config(config, {"budget.max_usd": 1.0})
        assert summary.complete and summary.stopped is None
        assert sim.stats.requests == 400 - first  # only what the first run did not pay for
        assert read_dataset(job.store.url).num_rows == 400


def test_a_token_budget_holds_too(make_job: JobFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    with simulator(monkeypatch, ttft=0.05) as sim:
        config = make_job(review_rows(200), execution=WIDE, budget={"max_tokens": 4000})
        _, summary = run_config(config)
        served = sim.stats.prompt_tokens + sim.stats.completion_tokens
        assert 0 < served <= 4000
        assert summary.message.startswith("token budget of 4,000 reached after ")


def test_the_command_exits_non_zero_saying_the_budget(
    sim: ThreadedSimulator, make_job: JobFactory
) -> None:
    config = make_job(review_rows(30))
    result = run_enrich("run", str(config), "--direct", "--budget-usd", "0.0002")
    assert result.returncode == 1, result.stderr
    assert "budget of $0.0002 reached after $0.0001" in " ".join(result.stderr.split())
    assert "rerun with a higher budget to resume" in result.stderr
    assert 0 < sim.stats.requests < 30


def test_an_attempt_that_brought_no_usage_back_stays_charged_at_its_worst_case(
    make_job: JobFactory,
) -> None:
    # Every first attempt times out (it may have been billed); every retry answers. Each row
    # then costs its worst case plus its answer: 3 rows fit in a budget that 9 answers
    # alone would not fill.
    seen: set[str] = set()

    def handler(request: CompletionRequest) -> Completion | CompletionError:
        text = request.messages[-1]["content"]
        if text not in seen:
            seen.add(text)
            return CompletionError("timed out", code="timeout")
        return answer(request)

    rows = review_rows(20)
    config = make_job(rows, execution={"max_concurrency": 1, "chunks_in_flight": 1})
    job = prepare_job(config)
    worst = worst_case(job)
    cap = (3 * worst + 3 * worst) / UNITS_PER_USD  # room for 3 rows at twice the worst case
    job = prepare_job(config, {"budget.max_usd": cap})
    summary = asyncio.run(run_job(job, completer=FakeCompleter(handler)))
    assert summary.message.startswith("budget of ")
    assert summary.spent_usd is not None and summary.spent_usd <= cap
    # Without charging the timeouts, the same budget would have paid for many more rows.
    assert summary.ok <= 7


def test_an_error_answer_costs_nothing(make_job: JobFactory) -> None:
    def handler(request: CompletionRequest) -> CompletionError:
        return CompletionError("bad request", status=400, code="bad_request")

    config = make_job(review_rows(10), execution={"max_error_share": 1})
    job = prepare_job(config, {"budget.max_usd": 0.001})
    summary = asyncio.run(run_job(job, completer=FakeCompleter(handler)))
    assert summary.complete and summary.failed == 10
    assert summary.spent_usd == 0


def partitioned_job(tmp_path: Path, make_job: JobFactory, days: list[str]) -> Path:
    for day in days:
        write_jsonl(tmp_path / "raw" / f"dt={day}" / "reviews.jsonl", review_rows(60))
    return make_job(
        input_path=str(tmp_path / "raw" / "dt={date}" / "reviews.jsonl"),
        output_path=str(tmp_path / "enriched"),
        execution=WIDE,
    )


def run_partition(config: Path, partition: str, overrides: dict[str, object]) -> JobSummary:
    cfg = for_partition(load_job_config(config, overrides), partition)
    return asyncio.run(run_job(Job.prepare(cfg, where=str(config))))


def test_a_monthly_budget_holds_across_the_runs_of_a_deployment(
    sim: ThreadedSimulator, make_job: JobFactory, tmp_path: Path
) -> None:
    days = ["2026-11-01", "2026-11-02", "2026-11-03"]
    config = partitioned_job(tmp_path, make_job, days)
    monthly = {"budget.monthly_usd": 0.0025}  # a partition costs about $0.0016
    first = run_partition(config, days[0], monthly)
    assert first.complete
    after_first = billed(sim)
    second = run_partition(config, days[1], monthly)
    assert not second.complete
    assert second.message.startswith("monthly budget of $0.0025 reached after $0.002")
    assert billed(sim) <= usd_units("0.0025")
    # The month's record, kept under the job's output root, says what each run spent.
    ledger = Ledger(Store(str(tmp_path / "enriched")), datetime.now(UTC))
    record = ledger.read()
    assert record.holds == {}
    assert record.total_spent == billed(sim)
    assert sorted(record.spent.values())[-1] == after_first
    # A third run finds the month spent and sends nothing.
    requests = sim.stats.requests
    try:  # what is left (less than a request's worst case) is held, or nothing is
        message = run_partition(config, days[2], monthly).message
    except BudgetReached as exc:
        message = str(exc)
    assert message.startswith("monthly budget of $0.0025 reached after $0.002")
    assert sim.stats.requests == requests
    assert ledger.read().total_spent == billed(sim)


def test_a_run_that_never_settled_is_charged_its_whole_hold(
    make_job: JobFactory, tmp_path: Path
) -> None:
    # A run held $0.001 of the month and died; the next run of the same output charges it.
    config = make_job(review_rows(5), budget={"monthly_usd": 0.0015, "max_usd": 0.001})
    job = prepare_job(config)
    ledger = Ledger(job.store, datetime.now(UTC))
    ledger.hold(job.store.url, usd_units("0.001"), usd_units("0.0015"))
    summary = asyncio.run(run_job(job, completer=FakeCompleter(answer)))
    record = ledger.read()
    assert record.total_spent <= usd_units("0.0015") and record.holds == {}
    assert summary.complete  # five rows fit in the $0.0005 left


def test_no_budget_changes_nothing(sim: ThreadedSimulator, make_job: JobFactory) -> None:
    job, summary = run_config(make_job(review_rows(10)))
    assert summary.complete and summary.spent_usd is None
    assert "budget_usd" not in summary.table()[0] and "## Budget" not in summary.markdown()
    assert not job.store.keys("_budget")


def test_a_month_already_spent_stops_the_run_before_any_request(make_job: JobFactory) -> None:
    config = make_job(review_rows(5), budget={"monthly_usd": 0.001})
    job = prepare_job(config)
    Ledger(job.store, datetime.now(UTC)).settle("an earlier run", usd_units("0.001"))
    completer = FakeCompleter(answer)
    with pytest.raises(
        BudgetReached,
        match=r"^monthly budget of \$0\.001 reached after \$0\.001; rerun with a higher budget",
    ):
        asyncio.run(run_job(job, completer=completer))
    assert completer.requests == []


def test_a_step_reserves_its_own_max_completion_tokens(make_job: JobFactory) -> None:
    # Every answer uses all the completion tokens its request allows: 400 for this step, far
    # above the job's 64. A reservation at the job's 64 would let 16 requests in flight
    # overspend; at the step's own 400 the budget holds exactly.
    async def handler(request: CompletionRequest) -> Completion:
        await asyncio.sleep(0.01)  # held in flight, so reservations overlap
        cap = int(request.params["max_completion_tokens"])
        done = answer(request)
        prompt = done.usage.prompt_tokens
        usage = Usage(prompt_tokens=prompt, completion_tokens=cap, total_tokens=prompt + cap)
        return dataclasses.replace(done, usage=usage)

    path = make_job(review_rows(60), execution={"max_concurrency": 16, "rows_per_chunk": 20})
    config = yaml.safe_load(path.read_text())
    template = config.pop("prompt")
    config["steps"] = [{"name": "long", **template, "params": {"max_completion_tokens": 400}}]
    config["budget"] = {"max_usd": 0.0052}  # room for 16 of the 60 answers, and a bit
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    completer = FakeCompleter(handler)
    job = prepare_job(path)
    summary = asyncio.run(run_job(job, completer=completer))
    paid = sum(
        RATES.cost(count_prompt_tokens(r.messages), int(r.params["max_completion_tokens"]))
        for r in completer.requests
    )
    assert 0 < paid <= usd_units("0.0052")
    assert summary.message.startswith("budget of $0.0052 reached")
