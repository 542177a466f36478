"""Reasoning made visible: reasoning tokens per row, the reasoning text kept on request, and the
one retry of an answer left empty because reasoning used the whole ``max_completion_tokens``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from support import JobFactory, answer, by_row, run_config, run_enrich
from support.simulators import simulator

from enrich.completer import Completion, CompletionRequest, FakeCompleter
from enrich.output.reader import read_dataset
from enrich.results import EMPTY_AFTER_RETRY
from enrich.sim.harness import ThreadedSimulator
from enrich.steps.budget import budget_warning
from enrich.usage import Usage


def starving(budget: int) -> FakeCompleter:
    """Answers requests whose budget is above ``budget``; below, reasoning eats it all."""

    def handle(request: CompletionRequest) -> Completion:
        if request.params["max_completion_tokens"] > budget:
            done = answer(request)
            usage = Usage(
                prompt_tokens=done.usage.prompt_tokens,
                completion_tokens=40,
                total_tokens=done.usage.prompt_tokens + 40,
                reasoning_tokens=37,
            )
            return Completion(done.content, "stop", usage, request.model, done.request_id)
        spent = request.params["max_completion_tokens"]
        return Completion("", "length", Usage(10, spent, 10 + spent, reasoning_tokens=spent))

    return FakeCompleter(handle)


def test_an_answer_left_empty_by_reasoning_is_asked_once_more_with_twice_the_budget(
    make_job: JobFactory,
) -> None:
    completer = starving(64)
    path = make_job()  # max_completion_tokens 64; the error share at its default 0.5
    ran = run_config(path, completer=completer)
    # Every first answer starved: not errors yet, so the run goes on and retries them all.
    assert ran.summary.complete and (ran.summary.ok, ran.summary.failed) == (20, 0)
    budgets = [r.params["max_completion_tokens"] for r in completer.requests]
    assert sorted(budgets) == [64] * 20 + [128] * 20
    table = read_dataset(ran.job.store.url)
    # Both requests were paid for: the row carries both.
    assert set(by_row(table, "completion_tokens").values()) == {64 + 40}
    assert set(by_row(table, "reasoning_tokens").values()) == {64 + 37}
    assert set(by_row(table, "attempts").values()) == {2}
    # The retry's answer, and the first request's identity (found again on a rerun).
    assert all(c.startswith("label for ") for c in by_row(table, "completion").values())
    again = FakeCompleter(answer)
    assert run_config(path, completer=again).summary.requests == 0 and not again.requests


def test_an_edit_after_a_retry_asks_neither_request_again(make_job: JobFactory) -> None:
    path = make_job()
    run_config(path, completer=starving(64))
    config = yaml.safe_load(path.read_text())
    config["output"]["format"] = "jsonl"  # a re-commit from the parts, asking nothing
    path.write_text(yaml.safe_dump(config))
    again = FakeCompleter(answer)
    ran = run_config(path, completer=again)
    assert ran.summary.complete and not again.requests
    table = read_dataset(ran.job.store.url)
    assert set(by_row(table, "completion_tokens").values()) == {104}


def test_the_retry_may_lower_the_effort_instead(make_job: JobFactory) -> None:
    def handle(request: CompletionRequest) -> Completion:
        if request.params.get("reasoning_effort") == "low":
            return answer(request)
        return Completion("", "length", Usage(10, 64, 74, reasoning_tokens=64))

    completer = FakeCompleter(handle)
    retry = {"budget_factor": 1, "reasoning_effort": "low"}
    path = make_job(params={"reasoning_effort": "high"}, execution={"empty_length_retry": retry})
    ran = run_config(path, completer=completer)
    assert ran.summary.ok == 20
    efforts = sorted(r.params["reasoning_effort"] for r in completer.requests)
    assert efforts == ["high"] * 20 + ["low"] * 20
    assert {r.params["max_completion_tokens"] for r in completer.requests} == {64}


def test_reasoning_starvation_from_the_simulator_is_retried_then_its_own_error(
    sim: ThreadedSimulator, make_job: JobFactory
) -> None:
    sim.set_faults(reasoning_starved=1.0)  # the retry starves too
    path = make_job(execution={"max_error_share": 1})
    ran = run_config(path)
    assert sim.stats.requests == 40 and sim.stats.faults["reasoning_starved"] == 40
    table = read_dataset(ran.job.store.url)
    assert set(by_row(table, "error_kind").values()) == {EMPTY_AFTER_RETRY}
    assert set(by_row(table, "completion_tokens").values()) == {64 + 128}  # both billed
    assert set(by_row(table, "reasoning_tokens").values()) == {64 + 128}
    assert "max_completion_tokens 128" in next(iter(by_row(table, "error").values()))
    # Its own kind, which belongs to the request: a rerun asks neither request again.
    sim.reset()
    run_config(path)
    assert sim.stats.requests == 0


def test_some_starved_answers_from_the_simulator_are_retried_once_each(
    sim: ThreadedSimulator, make_job: JobFactory
) -> None:
    sim.set_faults(reasoning_starved=0.4)
    ran = run_config(make_job(rows=None, execution={"max_error_share": 1}))
    table = read_dataset(ran.job.store.url)
    after_retry = sum(k == EMPTY_AFTER_RETRY for k in by_row(table, "error_kind").values())
    starved = sim.stats.faults.get("reasoning_starved", 0)
    # Each row is asked once, and once more when its first answer starved.
    assert sim.stats.requests == 20 + (starved - after_retry)
    assert starved > 0
    assert set(by_row(table, "status").values()) <= {"ok", "error"}


def steps_with(path: Path, steps: list[dict[str, Any]]) -> Path:
    config = yaml.safe_load(path.read_text())
    del config["prompt"]
    config["steps"] = steps
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_the_reasoning_text_is_a_column_when_kept(
    monkeypatch: pytest.MonkeyPatch, make_job: JobFactory
) -> None:
    steps = [
        {"name": "think", "template": "{text}", "keep_reasoning": True},
        {"name": "plain", "template": "{think.completion}"},
    ]
    path = steps_with(make_job(params={"max_completion_tokens": 200}), steps)
    with simulator(monkeypatch, reasoning_tokens=8) as server:
        ran = run_config(path)
        assert server.stats.requests == 40
    table = read_dataset(ran.job.store.url)
    assert "think_reasoning" in table.column_names
    assert "plain_reasoning" not in table.column_names
    texts = by_row(table, "think_reasoning")
    assert all(t and len(t) >= 8 for t in texts.values())  # 8 reasoning tokens of text
    assert set(by_row(table, "think_reasoning_tokens").values()) == {8}
    assert set(by_row(table, "plain_reasoning_tokens").values()) == {8}
    assert set(by_row(table, "reasoning_tokens").values()) == {16}


@pytest.mark.parametrize(
    ("model", "params", "warned"),
    [
        ("gpt-oss-120b", {"max_completion_tokens": 64, "reasoning_effort": "low"}, True),
        ("gpt-oss-120b", {"max_completion_tokens": 400, "reasoning_effort": "low"}, False),
        ("gpt-oss-120b", {"max_completion_tokens": 400}, True),  # medium when unset
        ("gpt-oss-120b", {"max_completion_tokens": 2000, "reasoning_effort": "high"}, True),
        ("gpt-oss-120b", {"max_completion_tokens": 16, "reasoning_effort": "none"}, False),
        ("llama-4-scout", {"max_completion_tokens": 16}, False),  # does not reason
    ],
)
def test_a_small_budget_for_a_reasoning_model_is_warned_about(
    model: str, params: dict[str, Any], warned: bool
) -> None:
    assert (budget_warning(model, params) is not None) is warned


def test_plan_warns_per_step_when_the_budget_leaves_no_room_to_reason(
    sim: ThreadedSimulator, make_job: JobFactory
) -> None:
    steps = [
        {"name": "triage", "template": "{text}", "params": {"max_completion_tokens": 2000}},
        {"name": "summary", "template": "{triage.completion}"},  # the job's 64
    ]
    result = run_enrich("plan", str(steps_with(make_job(), steps)))
    assert result.returncode == 0, result.stderr
    out = " ".join(result.stderr.split())  # warnings go where errors go
    assert "warning: steps.summary: max_completion_tokens 64 is small for gpt-oss-120b" in out
    assert "steps.triage" not in out
    assert sim.stats.requests == 0
