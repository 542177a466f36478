"""Jobs of several steps, run against the bundled simulator (and a FakeCompleter where the
answers must be chosen): one pass over the input, each step with its own request identity,
``when:`` skips, per-step usage, and a one-prompt job that stays what it was."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml
from support import JobFactory, by_row, review_rows, run_config

from enrich.output.reader import read_dataset, read_manifest
from enrich.results import PART_FIELDS
from enrich.sim.harness import ThreadedSimulator
from enrich.usage import USAGE_FIELDS

ENUM = pa.dictionary(pa.int32(), pa.string())
TRIAGE: dict[str, Any] = {
    "name": "triage",
    "system": "Label the review.",
    "template": "Rating {rating}: {text}",
    "output_schema": {"sentiment": "enum[positive, negative, mixed]", "topics": "list[str]"},
    "params": {"max_completion_tokens": 400},
}
SUMMARY: dict[str, Any] = {
    "name": "summary",
    "system": "Summarise the review in one line.",
    "template": "A {triage.sentiment} review: {text}",
}


def steps_job(make_job: JobFactory, *steps: dict[str, Any], **sections: Any) -> Path:
    """The test job with ``steps`` in place of its prompt."""
    path = make_job(**sections)
    config = yaml.safe_load(path.read_text())
    del config["prompt"]
    config["steps"] = list(steps)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def edit(path: Path, step: int, **changes: Any) -> None:
    config = yaml.safe_load(path.read_text())
    config["steps"][step].update(changes)
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def test_a_two_step_job_commits_typed_columns_per_step_and_row_totals(
    sim: ThreadedSimulator, make_job: JobFactory
) -> None:
    ran = run_config(steps_job(make_job, TRIAGE, SUMMARY))
    assert ran.summary.complete and (ran.summary.ok, ran.summary.failed) == (20, 0)
    assert sim.stats.requests == 40  # every row, both steps, one pass
    table = read_dataset(ran.job.store.url)
    assert table.schema.field("triage_sentiment").type == ENUM
    assert table.schema.field("triage_topics").type == pa.list_(
        pa.field("element", pa.string(), nullable=False)
    )
    names = table.column_names
    at = names.index("row_id")
    first = ["triage_request_hash", "triage_completion", "triage_sentiment"]
    assert names[at + 1 : at + 4] == first
    assert names[-len(USAGE_FIELDS) - 6 :] == [
        *USAGE_FIELDS,
        "attempts",
        "latency_s",
        "cost_usd",
        "status",
        "error",
        "error_kind",
    ]
    assert "request_hash" not in names and "completion" not in names
    # The second step read the first step's field of the same row.
    sentiments = by_row(table, "triage_sentiment")
    assert set(sentiments.values()) <= {"positive", "negative", "mixed"}
    assert set(by_row(table, "status").values()) == {"ok"}
    manifest = read_manifest(ran.job.store.url)
    assert manifest.output_schema is not None
    assert manifest.output_schema["steps"]["triage"]["columns"]["triage_sentiment"] == str(ENUM)


def test_per_step_usage_sums_to_what_the_simulator_billed(
    sim: ThreadedSimulator, make_job: JobFactory
) -> None:
    ran = run_config(steps_job(make_job, TRIAGE, SUMMARY))
    stats = sim.stats
    table = read_dataset(ran.job.store.url)

    def total(column: str) -> int:
        return sum(table.column(column).to_pylist())

    for kind in ("prompt_tokens", "completion_tokens"):
        assert total(f"triage_{kind}") + total(f"summary_{kind}") == getattr(stats, kind)
        assert total(kind) == getattr(stats, kind)  # the row totals
    for name in ("cost_usd", "attempts", "reasoning_tokens"):
        assert total(name) == pytest.approx(total(f"triage_{name}") + total(f"summary_{name}"))
    billed = (stats.prompt_tokens * 0.35 + stats.completion_tokens * 0.75) / 1e6
    assert total("cost_usd") == pytest.approx(billed)
    # The run report breaks it down by step.
    steps = ran.summary.steps
    assert steps["triage"]["prompt_tokens"] == total("triage_prompt_tokens")
    assert steps["summary"]["completion_tokens"] == total("summary_completion_tokens")
    assert steps["triage"]["requests"] == steps["summary"]["requests"] == 20
    report = ran.summary.markdown()
    assert "## By step" in report and "| triage | 20 | 20 | 0 | 0 |" in report


def test_editing_step_two_asks_step_two_again_and_nothing_else(
    sim: ThreadedSimulator, make_job: JobFactory
) -> None:
    path = steps_job(make_job, TRIAGE, SUMMARY)
    first = read_dataset(run_config(path).job.store.url)
    assert sim.stats.requests == 40
    sim.reset()
    assert run_config(path).summary.requests == 0  # committed: nothing to ask
    assert sim.stats.requests == 0

    edit(path, 1, template="In one line, a {triage.sentiment} review: {text}")
    ran = run_config(path)
    assert sim.stats.requests == 20  # step 2 of every row, and no step 1
    assert ran.summary.steps["triage"]["requests"] == 0
    second = read_dataset(ran.job.store.url)
    for column in ("triage_request_hash", "triage_completion", "triage_prompt_tokens"):
        assert by_row(second, column) == by_row(first, column)
    assert by_row(second, "summary_request_hash") != by_row(first, "summary_request_hash")
    # The first step's cost stays in the dataset, once.
    assert sum(second.column("triage_cost_usd").to_pylist()) == sum(
        first.column("triage_cost_usd").to_pylist()
    )


def test_editing_step_one_asks_both_steps_again(
    sim: ThreadedSimulator, make_job: JobFactory
) -> None:
    path = steps_job(make_job, TRIAGE, SUMMARY)
    run_config(path)
    sim.reset()
    edit(path, 0, system="Label the review, carefully.")
    run_config(path)
    stats = sim.stats
    # Step 1 again for every row; step 2 only for rows whose sentiment came out different
    # (its messages changed), the rest found by hash.
    assert 20 < stats.requests <= 40


def test_rows_whose_when_is_false_skip_the_step(
    sim: ThreadedSimulator, make_job: JobFactory
) -> None:
    summary = {**SUMMARY, "when": 'triage.sentiment in ["negative", "mixed"]'}
    path = steps_job(make_job, TRIAGE, summary)
    ran = run_config(path)
    table = read_dataset(ran.job.store.url)
    sentiments = by_row(table, "triage_sentiment")
    asked = {r for r, s in sentiments.items() if s in ("negative", "mixed")}
    assert 0 < len(asked) < 20  # the sample has both kinds
    assert sim.stats.requests == 20 + len(asked)
    statuses = by_row(table, "summary_status")
    for row, status in statuses.items():
        assert status == ("ok" if row in asked else "skipped")
    hashes, costs = by_row(table, "summary_request_hash"), by_row(table, "summary_cost_usd")
    skipped = set(sentiments) - asked
    assert all(hashes[r] is None and costs[r] == 0 for r in skipped)
    assert all(by_row(table, "summary_completion")[r] is None for r in skipped)
    assert set(by_row(table, "status").values()) == {"ok"}  # a skip is not an error
    assert ran.summary.steps["summary"]["skipped"] == len(skipped)
    # A rerun asks nothing: a skip needs no result.
    sim.reset()
    run_config(path)
    assert sim.stats.requests == 0


def test_a_failed_step_skips_the_steps_that_read_it_and_fails_the_row(
    sim: ThreadedSimulator, make_job: JobFactory
) -> None:
    sim.set_faults(invalid_json=1.0)  # every structured answer: not JSON
    ran = run_config(steps_job(make_job, TRIAGE, SUMMARY, execution={"max_error_share": 1}))
    table = read_dataset(ran.job.store.url)
    # Each triage answer and its one repair; step 2 could not be rendered: never sent.
    assert sim.stats.requests == 40
    assert set(by_row(table, "triage_error_kind").values()) == {"invalid_output_after_repair"}
    assert set(by_row(table, "summary_status").values()) == {"skipped"}
    assert set(by_row(table, "summary_error").values()) == {"triage did not answer this row"}
    assert set(by_row(table, "status").values()) == {"error"}
    assert set(by_row(table, "error_kind").values()) == {"invalid_output_after_repair"}
    assert all(e.startswith("triage: ") for e in by_row(table, "error").values())
    assert (ran.summary.ok, ran.summary.failed) == (0, 20)
    assert set(ran.summary.errors) == {"triage: invalid_output_after_repair"}


def test_a_one_prompt_job_keeps_its_columns_and_asks_nothing_again(
    sim: ThreadedSimulator, make_job: JobFactory
) -> None:
    path = make_job(rows=review_rows(20))
    ran = run_config(path)
    table = read_dataset(ran.job.store.url)
    at = table.column_names.index("row_id")
    assert table.column_names[at:] == ["row_id", "request_hash", *PART_FIELDS]
    assert sim.stats.requests == 20
    sim.reset()
    again = run_config(path)
    assert again.summary.requests == 0 and sim.stats.requests == 0
    assert again.summary.steps == {}


def test_typed_columns_read_with_polars_and_duckdb(
    sim: ThreadedSimulator, make_job: JobFactory
) -> None:
    import duckdb
    import polars as pl

    ran = run_config(steps_job(make_job, TRIAGE, SUMMARY))
    reviews = table = read_dataset(ran.job.store.url)
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    assert frame.schema["triage_sentiment"] == pl.Categorical
    assert frame.schema["triage_topics"] == pl.List(pl.String)
    by_sentiment = frame.group_by("triage_sentiment").agg(pl.len()).to_dicts()
    assert sum(row["len"] for row in by_sentiment) == 20
    exploded = frame.explode("triage_topics").filter(pl.col("triage_topics").is_not_null())
    assert exploded.height == sum(len(t) for t in table.column("triage_topics").to_pylist())

    counted = duckdb.sql(
        "SELECT triage_sentiment, count(*) AS n, sum(cost_usd) AS cost FROM reviews "
        "GROUP BY triage_sentiment"
    ).fetchall()
    assert reviews.num_rows == sum(n for _, n, _ in counted) == 20  # DuckDB reads it by name
    assert {s for s, _, _ in counted} == set(by_row(table, "triage_sentiment").values())
    [(topics,)] = duckdb.sql(
        "SELECT count(*) FROM (SELECT unnest(triage_topics) FROM reviews)"
    ).fetchall()
    assert topics == exploded.height
