"""An answer that does not match the output schema is asked once to repair itself.

The repair is a request of its own: the step's request, the invalid answer, and a user message
saying what is wrong. The row keeps the repair's answer and carries both requests' tokens; a
repair that is invalid too is an error of kind ``invalid_output_after_repair``, which a rerun
never asks again. ``execution.repair_invalid_output: false`` turns it off.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from support import JobFactory, by_row, review_rows, run_config

from enrich.completer import Completion, CompletionRequest, FakeCompleter
from enrich.output.reader import read_dataset
from enrich.results import INVALID_AFTER_REPAIR
from enrich.sim.harness import ThreadedSimulator
from enrich.steps.step import REPAIR_PROMPT
from enrich.usage import Usage

SCHEMA = {"label": "enum[positive, negative, mixed]"}
BROKEN = '{"label": "positive"'  # cut short: does not parse


def typed_job(make_job: JobFactory, **execution: Any) -> Path:
    prompt = {"system": "Label it.", "template": "{text}", "output_schema": SCHEMA}
    return make_job(review_rows(12), prompt=prompt, execution=execution)


def is_repair(request: CompletionRequest) -> bool:
    prefix = REPAIR_PROMPT.split("{")[0]
    return request.messages[-1]["content"].startswith(prefix)


def completer(repaired: str) -> FakeCompleter:
    """First answers are broken JSON; a repair request gets ``repaired``."""

    def handle(request: CompletionRequest) -> Completion:
        content = repaired if is_repair(request) else BROKEN
        return Completion(content, "stop", Usage(20, 7, 27), request.model, "req")

    return FakeCompleter(handle)


def test_an_invalid_answer_is_repaired_once_and_the_row_carries_both_requests(
    make_job: JobFactory,
) -> None:
    fake = completer('{"label": "mixed"}')
    path = typed_job(make_job)
    ran = run_config(path, completer=fake)
    assert ran.summary.complete and (ran.summary.ok, ran.summary.failed) == (12, 0)
    repairs = [r for r in fake.requests if is_repair(r)]
    assert len(fake.requests) == 24 and len(repairs) == 12
    # The repair shows the model its answer and what is wrong with it.
    repair = repairs[0]
    assert repair.messages[-2] == {"role": "assistant", "content": BROKEN}
    assert "does not match the required JSON schema" in repair.messages[-1]["content"]
    assert repair.messages[-1]["content"] != REPAIR_PROMPT  # the problem is filled in
    assert repair.response_format == fake.requests[0].response_format
    table = read_dataset(ran.job.store.url)
    assert set(by_row(table, "completion_label").values()) == {"mixed"}
    assert set(by_row(table, "prompt_tokens").values()) == {40}  # both requests were paid
    assert set(by_row(table, "attempts").values()) == {2}
    again = completer("{}")
    assert run_config(path, completer=again).summary.requests == 0 and not again.requests


def test_a_repair_that_is_invalid_too_is_its_own_error_and_never_asked_again(
    make_job: JobFactory,
) -> None:
    fake = completer('{"label": "furious"}')  # parses, but not one of the enum's values
    path = typed_job(make_job, max_error_share=1.0)
    ran = run_config(path, completer=fake)
    assert ran.summary.complete and ran.summary.failed == 12
    assert len(fake.requests) == 24
    table = read_dataset(ran.job.store.url)
    assert set(by_row(table, "error_kind").values()) == {INVALID_AFTER_REPAIR}
    assert all(e.startswith("also after one repair: ") for e in by_row(table, "error").values())
    again = completer('{"label": "mixed"}')
    assert run_config(path, completer=again).summary.requests == 0 and not again.requests


def test_repair_can_be_turned_off(make_job: JobFactory) -> None:
    fake = completer('{"label": "mixed"}')
    path = typed_job(make_job, max_error_share=1.0, repair_invalid_output=False)
    ran = run_config(path, completer=fake)
    assert len(fake.requests) == 12 and not any(is_repair(r) for r in fake.requests)
    table = read_dataset(ran.job.store.url)
    assert set(by_row(table, "error_kind").values()) == {"invalid_output"}


def test_the_simulator_s_broken_answers_are_repaired_through_the_sdk(
    sim: ThreadedSimulator, make_job: JobFactory
) -> None:
    sim.set_faults(invalid_json=0.5)
    path = typed_job(make_job, max_error_share=1.0)
    ran = run_config(path)
    table = read_dataset(ran.job.store.url)
    kinds = by_row(table, "error_kind")
    repaired = ran.summary.requests - 12
    assert sim.stats.requests == ran.summary.requests
    assert 0 < repaired <= 12
    # A row is ok, or invalid after its repair; never invalid without one.
    assert set(kinds.values()) <= {None, INVALID_AFTER_REPAIR}
    labels = [v for v in by_row(table, "completion_label").values() if v is not None]
    assert all(v in {"positive", "negative", "mixed"} for v in labels)
    assert sum(table.column("prompt_tokens").to_pylist()) == sim.stats.prompt_tokens
