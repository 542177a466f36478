"""Steps, the pure parts: the ``when:`` language, the step graph, the config, each step's
identity and columns. Runs of steps jobs are in tests/test_steps_run.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from enrich.config import load_job_config
from enrich.config.schema import JobConfig
from enrich.errors import ConfigError
from enrich.hashing import RequestHasher
from enrich.job import Job
from enrich.steps import StepGraphError, StepNode, WhenError, order_steps, parse_when
from enrich.steps.table import step_columns

# -- when: ------------------------------------------------------------------------------------

ROW: dict[tuple[str, str], Any] = {
    ("triage", "category"): "bug",
    ("triage", "score"): 3,
    ("triage", "urgent"): True,
    ("triage", "spam"): False,
    ("triage", "topics"): ["price", "battery"],
    ("triage", "note"): None,
    ("triage", "completion"): '{"category":"bug"}',
}


def lookup(step: str, field: str) -> Any:
    return ROW[(step, field)]


@pytest.mark.parametrize(
    ("text", "holds"),
    [
        ('triage.category == "bug"', True),
        ("triage.category == 'bug'", True),
        ('triage.category != "bug"', False),
        ('triage.category in ["bug", "crash"]', True),
        ('triage.category not in ["bug", "crash"]', False),
        ('"battery" in triage.topics', True),
        ('"screen" in triage.topics', False),
        ("triage.score == 3", True),
        ("triage.score == 3.0", True),
        ("triage.urgent", True),
        ("triage.urgent == true", True),
        ("triage.urgent == 1", False),  # a boolean is not a number here
        ("not triage.spam", True),
        ("triage.note == null", True),
        ("triage.note", False),
        ('triage.urgent and triage.category == "bug"', True),
        ('triage.spam or triage.category == "feature"', False),
        ('not (triage.spam or triage.category == "feature")', True),
        ('triage.spam and triage.category == "bug" or triage.urgent', True),  # and binds first
        ("triage.topics != []", True),
        ('"category" in triage.completion', True),
    ],
)
def test_when_holds(text: str, holds: bool) -> None:
    assert parse_when(text).holds(lookup) is holds


def test_when_lists_the_fields_it_reads() -> None:
    condition = parse_when('triage.a == "x" and (lang.code in ["de"] or not triage.a)')
    assert condition.refs == (("triage", "a"), ("lang", "code"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty condition"),
        ("triage.category ==", "the condition ends too soon"),
        ('triage.category == "bug")', "unexpected ')' at column 25"),
        ("category == 'bug'", "'category' at column 1: write a field as step.field"),
        ("__import__('os').system('x')", "cannot read \".system('x')\" at column 17"),
        ("triage.category = 'bug'", "cannot read \"= 'bug'\" at column 17"),
        ("triage.a in [triage.b]", "a list holds literals only"),
        ("(triage.a", "expected ')', got the end at column 10"),
    ],
)
def test_a_when_that_is_not_a_condition_says_where(text: str, message: str) -> None:
    with pytest.raises(WhenError) as raised:
        parse_when(text)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


# -- the step graph ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nodes", "order"),
    [
        ([StepNode("a"), StepNode("b", (("a", "x", "template"),))], ["a", "b"]),
        ([StepNode("b", (("a", "x", "when"),)), StepNode("a")], ["a", "b"]),
        (
            [
                StepNode("c", (("b", "x", "template"), ("a", "y", "template"))),
                StepNode("b", (("a", "x", "template"),)),
                StepNode("a"),
                StepNode("d"),
            ],
            ["a", "b", "c", "d"],
        ),
    ],
)
def test_steps_run_after_the_steps_they_read(nodes: list[StepNode], order: list[str]) -> None:
    assert order_steps(nodes) == order


@pytest.mark.parametrize(
    ("nodes", "message"),
    [
        ([StepNode("a"), StepNode("a")], "steps: two steps are named 'a'"),
        (
            [StepNode("a", (("b", "x", "template"),))],
            "steps.a.template: {b.x} names no step (steps: a)",
        ),
        (
            [StepNode("a", (("a", "x", "when"),))],
            "steps.a.when: a.x: a step cannot read its own answer",
        ),
        (
            [StepNode("a", (("b", "x", "template"),)), StepNode("b", (("a", "y", "when"),))],
            "steps: a cycle: a reads b reads a",
        ),
        (
            [StepNode("a", (("b", "nope", "template"),)), StepNode("b", (), frozenset({"x"}))],
            "steps.a.template: {b.nope}: step 'b' has no field 'nope' (it has: x)",
        ),
    ],
)
def test_a_step_graph_that_cannot_run_is_one_line(nodes: list[StepNode], message: str) -> None:
    with pytest.raises(StepGraphError) as raised:
        order_steps(nodes)
    assert str(raised.value) == message


# -- the config -------------------------------------------------------------------------------


def steps_config(tmp_path: Path, steps: Any, **more: Any) -> Path:
    config = {
        "input": {"path": "in.jsonl"},
        "model": "gpt-oss-120b",
        "output": {"path": str(tmp_path / "out")},
        "steps": steps,
        **more,
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


TRIAGE = {
    "name": "triage",
    "template": "{text}",
    "output_schema": {"sentiment": "enum[positive, negative, mixed]", "topics": "list[str]"},
}


@pytest.mark.parametrize(
    ("steps", "more", "message"),
    [
        (
            [TRIAGE, {"name": "summary", "template": "{triage.mood}: {text}"}],
            {},
            "steps.summary.template: {triage.mood}: step 'triage' has no field 'mood' (it has: "
            "completion, sentiment, topics)",
        ),
        (
            [TRIAGE, {"name": "summary", "template": "{triaj.sentiment}: {text}"}],
            {},
            "steps.summary.template: {triaj.sentiment} names no step (steps: triage, summary)",
        ),
        (
            [
                {**TRIAGE, "when": "summary.completion != ''"},
                {"name": "summary", "template": "{triage.sentiment}"},
            ],
            {},
            "steps: a cycle: triage reads summary reads triage",
        ),
        ([TRIAGE, TRIAGE], {}, "steps: two steps are named 'triage'"),
        (
            [{**TRIAGE, "when": "triage.sentiment = 'x'"}],
            {},
            "steps.0.when: cannot read",
        ),
        ([{**TRIAGE, "name": "Triage"}], {}, "steps.0.name: 'Triage': a step's name is"),
        (
            [TRIAGE],
            {"prompt": {"template": "{text}"}},
            "(top level): a job has a prompt or steps, not both",
        ),
        ([], {}, "(top level): a job needs a prompt (one step) or steps"),
    ],
)
def test_a_steps_config_that_cannot_run_fails_when_loaded(
    tmp_path: Path, steps: Any, more: dict[str, Any], message: str
) -> None:
    path = steps_config(tmp_path, steps, **more)
    with pytest.raises(ConfigError) as raised:
        load_job_config(path)
    assert str(raised.value).startswith(f"{path}: {message}")
    assert "\n" not in str(raised.value)


def job_of(data: dict[str, Any], columns: tuple[str, ...] = ("text", "review_id")) -> Job:
    base = {
        "name": "j",
        "input": {"path": "in.jsonl"},
        "model": "gpt-oss-120b",
        "params": {"max_completion_tokens": 64, "temperature": 0},
        "output": {"path": "/tmp/never-written"},
        "api": {"base_url": "http://127.0.0.1:8000"},
    }
    return Job(JobConfig.model_validate({**base, **data}), [], list(columns), "job.yaml")


SUMMARY = {"name": "summary", "template": "{triage.sentiment}: {text}", "model": "other-model"}


def test_a_step_takes_the_job_model_and_params_and_overrides_only_what_it_sets() -> None:
    job = job_of(
        {
            "steps": [
                {**TRIAGE, "params": {"max_completion_tokens": 300}},
                {**SUMMARY, "keep_reasoning": True},
            ]
        }
    )
    triage, summary = job.steps
    assert triage.kind.model == "gpt-oss-120b" and summary.kind.model == "other-model"
    assert triage.kind.params == {"max_completion_tokens": 300, "temperature": 0, "stream": False}
    # Keeping the reasoning asks for it apart.
    assert summary.kind.params["reasoning_format"] == "parsed"
    assert summary.kind.params["max_completion_tokens"] == 64
    # The retry of an answer left empty by reasoning: twice the budget, its own identity.
    assert triage.retry is not None and triage.retry.max_completion_tokens == 600
    messages = [{"role": "user", "content": "x"}]
    assert triage.retry_hasher is not None
    assert triage.retry_hasher(messages) != triage.hasher(messages)


def test_the_retry_can_lower_the_effort_instead_or_be_turned_off() -> None:
    lower = {"empty_length_retry": {"budget_factor": 1, "reasoning_effort": "low"}}
    step = job_of({"steps": [TRIAGE], "execution": lower}).steps[0]
    assert step.retry is not None and step.retry.params["reasoning_effort"] == "low"
    assert step.retry.max_completion_tokens == 64
    off = {"empty_length_retry": {"enabled": False}}
    assert job_of({"steps": [TRIAGE], "execution": off}).steps[0].retry is None


def test_each_step_hashes_its_own_request() -> None:
    job = job_of({"steps": [TRIAGE, SUMMARY]})
    triage, summary = job.steps
    messages = [{"role": "user", "content": "same text"}]
    expected = RequestHasher(
        job.endpoint, "other-model", summary.kind.params, summary.kind.response_format
    )
    assert summary.hasher(messages) == expected(messages)
    assert triage.hasher(messages) != summary.hasher(messages)
    # Editing the second step changes its identity, and the first one's not at all.
    edited = job_of({"steps": [TRIAGE, {**SUMMARY, "template": "{triage.sentiment}! {text}"}]})
    assert edited.steps[0].hasher(messages) == triage.hasher(messages)
    assert edited.fingerprint != job.fingerprint


def test_a_step_renders_earlier_fields_of_the_same_rows() -> None:
    summary = job_of({"steps": [TRIAGE, SUMMARY]}).steps[1]
    fields = {"triage": [{"sentiment": "negative"}, None, {"sentiment": "mixed"}]}
    messages = summary.render({"text": ["a", "b", "c"]}, fields, [0, 2])
    assert [m[-1]["content"] for m in messages] == ["negative: a", "mixed: c"]
    assert summary.skip_reason(fields, 1) == "triage did not answer this row"
    assert summary.skip_reason(fields, 0) is None


def test_a_steps_job_names_its_columns_after_each_step() -> None:
    job = job_of({"steps": [{**TRIAGE, "keep_reasoning": True}, SUMMARY]})
    triage, summary = job.steps
    assert step_columns(triage)[:6] == [
        "triage_request_hash",
        "triage_completion",
        "triage_sentiment",
        "triage_topics",
        "triage_reasoning",
        "triage_finish_reason",
    ]
    assert "summary_reasoning_tokens" in step_columns(summary)
    assert step_columns(summary)[-3:] == ["summary_status", "summary_error", "summary_error_kind"]


def test_a_field_named_like_a_column_of_its_step_is_refused() -> None:
    clash = {**TRIAGE, "output_schema": {"status": "str"}}
    with pytest.raises(ConfigError, match=r"steps\.triage: column 'triage_status' is another"):
        job_of({"steps": [clash]})


def test_a_step_template_column_the_input_lacks_is_named_with_its_step() -> None:
    with pytest.raises(ConfigError, match=r"steps.summary.template uses column 'title'"):
        job_of({"steps": [TRIAGE, {**SUMMARY, "template": "{title} {triage.sentiment}"}]})


# -- a one-prompt job is the job it always was ------------------------------------------------

LEGACY = {
    "prompt": {"system": "Classify the review.", "template": "Rating {rating}: {text}"},
    "input": {"path": "in.jsonl", "id_column": "review_id"},
    "model": "gpt-oss-120b",
    "params": {"max_completion_tokens": 64, "temperature": 0, "reasoning_effort": "low"},
    "output": {"path": "/tmp/golden-out"},
    "pricing": {"input_per_million": 0.35, "output_per_million": 0.75},
}


@pytest.mark.parametrize(
    ("schema", "fingerprint", "request_hash"),
    [
        # Computed by the code before steps existed: a committed one-prompt output stays
        # committed (same chunks) and its results are found (same hashes).
        (None, "29f839fcdc178ae5", "2cbead8d1f8438291ce1d1fbe544317c"),
        (
            {"label": "enum[pos, neg]", "score": "int"},
            "6e0173ff4521b147",
            "7a036089d4f7a2ccbd0cdb76f2fd4840",
        ),
    ],
)
def test_a_one_prompt_job_keeps_its_fingerprint_and_request_hashes(
    schema: Any, fingerprint: str, request_hash: str
) -> None:
    prompt = {**LEGACY["prompt"], **({"output_schema": schema} if schema else {})}
    job = job_of({**LEGACY, "name": "legacy", "prompt": prompt}, ("review_id", "rating", "text"))
    messages = job.template.messages(job.template.render_user({"rating": 5, "text": "Great."}))
    assert (job.fingerprint, job.steps[0].hasher(messages)) == (fingerprint, request_hash)
    assert job.steps[0].name is None and not job.multi_step
