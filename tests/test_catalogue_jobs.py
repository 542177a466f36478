"""The catalogue at work: a model the provider no longer serves is refused before any request,
a deprecated one warned about, rows that cannot fit the context counted by ``plan`` and never
sent, rows costed at the catalogue's prices unless ``pricing`` says otherwise, and
``enrich models``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from support import (
    JobFactory,
    by_row,
    review_rows,
    run_config,
    run_enrich,
    simulator,
)

from enrich.catalogue import CACHE_ENV, OFFLINE_ENV
from enrich.output.reader import read_dataset
from enrich.sim.harness import ThreadedSimulator

RETIRED = {"llama3.1-8b": "2026-05-27"}
#: The job factory's prices unset: from the catalogue.
FROM_CATALOGUE = {"input_per_million": None, "output_per_million": None}
DEPRECATED = {"zai-glm-4.7": "2099-01-15"}


@pytest.fixture
def provider(monkeypatch: pytest.MonkeyPatch) -> Iterator[ThreadedSimulator]:
    """A simulator that lists a retired model and a deprecated one; the SDK points at it."""
    with simulator(monkeypatch, retired=RETIRED, deprecated=DEPRECATED) as server:
        yield server


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("command", [["run", "--direct"], ["plan"]])
def test_a_retired_model_is_refused_before_any_request(
    provider: ThreadedSimulator, make_job: JobFactory, command: list[str]
) -> None:
    config = str(make_job(review_rows(10), model="llama3.1-8b"))
    result = run_enrich(command[0], config, *command[1:])
    assert result.returncode == 2
    assert lines(result.stderr) == [
        f"error: {config}: model: 'llama3.1-8b' was retired by the provider on 2026-05-27 "
        f"(live from {provider.base_url.rstrip('/')} at "
        + re.search(r"at (\S+ \S+ UTC)\)", result.stderr).group(1)  # type: ignore[union-attr]
        + "); models in service: gpt-oss-120b, zai-glm-4.7"
    ]
    assert provider.stats.requests == 0


def test_a_model_absent_from_the_live_catalogue_is_refused(
    provider: ThreadedSimulator, make_job: JobFactory
) -> None:
    result = run_enrich("run", str(make_job(review_rows(10), model="llama-9")), "--direct")
    assert result.returncode == 2
    assert "model: 'llama-9' is not served by the provider (live from" in result.stderr
    assert provider.stats.requests == 0


def test_offline_a_retired_model_is_refused_from_the_snapshot(
    sim: ThreadedSimulator, make_job: JobFactory
) -> None:
    config = str(make_job(review_rows(10), model="qwen-3-32b"))
    result = run_enrich("run", config, "--direct", env={OFFLINE_ENV: "1"})
    assert result.returncode == 2
    assert (
        "model: 'qwen-3-32b' was retired by the provider on 2026-02-16 (snapshot shipped with "
        "enrich, as of 2026-12-01 (offline:" in result.stderr
    )
    assert sim.stats.requests == 0


def test_a_deprecated_model_is_warned_about_and_runs(
    provider: ThreadedSimulator, make_job: JobFactory
) -> None:
    result = run_enrich("run", str(make_job(review_rows(10), model="zai-glm-4.7")), "--direct")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in lines(result.stderr) if line.startswith("warning:")]
    assert len(warnings) == 1
    assert warnings[0].startswith(
        "warning: model: 'zai-glm-4.7' is marked deprecated by the provider, retires 2099-01-15"
    )
    assert provider.stats.requests == 10


def long_rows() -> list[dict[str, object]]:
    rows = review_rows(6)
    rows[2]["text"] = "very long " * 80
    rows[4]["text"] = "longer still " * 90
    return rows


def test_rows_that_cannot_fit_are_counted_by_plan_and_never_sent(
    make_job: JobFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    with simulator(monkeypatch, context_length=120) as small:
        config = make_job(long_rows())
        plan = run_enrich("plan", str(config))
        assert plan.returncode == 0, plan.stderr
        assert "2 rows cannot fit the model's context of 120 tokens" in plan.stdout
        assert re.search(r"rows to send\s+│ 4\s", plan.stdout), plan.stdout
        assert small.stats.requests == 0

        job, summary = run_config(config)
        assert summary.complete
        assert small.stats.requests == 4  # the two long rows were never sent
        table = read_dataset(job.store.url)
        kinds = by_row(table, "error_kind")
        assert kinds.pop("r-00002") == kinds.pop("r-00004") == "context_overflow"
        assert set(kinds.values()) == {None}
        overflow = by_row(table, "error")["r-00002"]
        assert "cannot fit the model's context of 120 tokens; not sent" in overflow
        assert by_row(table, "cost_usd")["r-00002"] == 0
        assert by_row(table, "prompt_tokens")["r-00002"] == 0

        # A rerun reuses the error rows (asking again gets the same answer) and sends nothing.
        small.reset()
        _, again = run_config(config, {"execution.rows_per_chunk": 4})
        assert again.complete and small.stats.requests == 0


def test_rows_are_costed_at_the_catalogue_prices_unless_pricing_says(
    provider: ThreadedSimulator, make_job: JobFactory
) -> None:
    job, _ = run_config(make_job(review_rows(5), pricing=FROM_CATALOGUE))
    table = read_dataset(job.store.url)
    for row in table.to_pylist():
        expected = (row["prompt_tokens"] * 0.35 + row["completion_tokens"] * 0.75) / 1e6
        assert row["cost_usd"] == pytest.approx(expected)
    assert job.prices.source == "catalogue"

    overridden, _ = run_config(
        make_job(review_rows(5), pricing={**FROM_CATALOGUE, "input_per_million": 10})
    )
    table = read_dataset(overridden.store.url)
    assert provider.stats.requests == 5  # the new prices re-cost the rows, asking nothing
    for row in table.to_pylist():
        expected = (row["prompt_tokens"] * 10 + row["completion_tokens"] * 0.75) / 1e6
        assert row["cost_usd"] == pytest.approx(expected)


def test_plan_names_its_catalogue_and_prices(
    sim: ThreadedSimulator, make_job: JobFactory, tmp_path: Path
) -> None:
    config = str(make_job(review_rows(30), pricing=FROM_CATALOGUE))
    live = run_enrich("plan", config)
    assert live.returncode == 0, live.stderr
    assert f"live from {sim.base_url.rstrip('/')}" in live.stdout
    assert "$0.35 in / $0.75 out per million tokens (catalogue)" in live.stdout
    assert "1,920 (max_completion_tokens (64) per row, the worst case)" in live.stdout

    # Offline: the cache the live plan left, else the snapshot.
    cached = run_enrich("plan", config, env={OFFLINE_ENV: "1"})
    assert cached.returncode == 0, cached.stderr
    assert f"cache of {sim.base_url.rstrip('/')} fetched at" in cached.stdout
    offline = run_enrich("plan", config, env={OFFLINE_ENV: "1", CACHE_ENV: str(tmp_path / "no")})
    assert offline.returncode == 0, offline.stderr
    assert "snapshot shipped with enrich, as of 2026-12-01" in offline.stdout
    assert "$0.35 in / $0.75 out per million tokens (catalogue)" in offline.stdout
    assert "0 rows cannot fit the model's context of 131,072 tokens" in offline.stdout
    assert sim.stats.requests == 0


def test_enrich_models_lists_the_catalogue(provider: ThreadedSimulator, tmp_path: Path) -> None:
    result = run_enrich("models")
    assert result.returncode == 0, result.stderr
    rows = {line.split()[1]: line for line in lines(result.stdout) if line.startswith("│")}
    assert re.search(
        r"gpt-oss-120b\s+│ \$0\.35\s+│ \$0\.75\s+│ 131,072\s+│ 40,960\s+│ yes\s+│ yes\s+│ "
        r"active\s+│ may use",
        rows["gpt-oss-120b"],
    )
    assert "deprecated (retires 2099-01-15)" in rows["zai-glm-4.7"]
    assert re.search(r"retired 2026-05-27\s+│ -", rows["llama3.1-8b"])
    assert f"source: live from {provider.base_url.rstrip('/')} at " in result.stdout

    cached = run_enrich("models")  # within the day: from the cache, the provider not asked
    assert f"source: cache of {provider.base_url.rstrip('/')} fetched at " in cached.stdout

    offline = run_enrich("models", "--base-url", "http://127.0.0.1:9", env={OFFLINE_ENV: "1"})
    assert "source: snapshot shipped with enrich, as of 2026-12-01" in offline.stdout
    assert "qwen-3-32b" in offline.stdout and "retired 2026-02-16" in offline.stdout


def test_each_step_model_is_judged_and_costed_at_its_own_prices(
    provider: ThreadedSimulator, make_job: JobFactory
) -> None:
    path = make_job(review_rows(4), pricing=FROM_CATALOGUE)
    config = yaml.safe_load(path.read_text())
    del config["prompt"]
    first = {"name": "triage", "template": "Rating {rating}: {text}"}
    second = {"name": "summary", "template": "Sum up: {text}", "model": "llama3.1-8b"}
    config["steps"] = [first, second]
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    refused = run_enrich("run", str(path), "--direct")
    assert refused.returncode == 2
    assert f"{path}: steps.summary.model: 'llama3.1-8b' was retired" in refused.stderr
    assert provider.stats.requests == 0

    config["steps"][1]["model"] = "zai-glm-4.7"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    ran = run_config(path)
    assert ran.summary.complete and provider.stats.requests == 8
    assert ran.job.notes[0].startswith("model: 'zai-glm-4.7' is marked deprecated")
    for row in read_dataset(ran.job.store.url).to_pylist():
        triage = (row["triage_prompt_tokens"] * 0.35 + row["triage_completion_tokens"] * 0.75) / 1e6
        summary = (row["summary_prompt_tokens"] * 2 + row["summary_completion_tokens"] * 3) / 1e6
        assert row["triage_cost_usd"] == pytest.approx(triage)
        assert row["summary_cost_usd"] == pytest.approx(summary)


def test_plan_forecasts_every_step_at_its_model(
    provider: ThreadedSimulator, make_job: JobFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = review_rows(5)
    rows[1]["text"] = "long " * 215  # fits the first step's budget (64), not the second's (100)
    path = make_job(rows, pricing=FROM_CATALOGUE)
    config = yaml.safe_load(path.read_text())
    del config["prompt"]
    config["steps"] = [
        {"name": "triage", "template": "Rating {rating}: {text}",
         "output_schema": {"sentiment": "enum[positive, negative]"}},
        {"name": "summary", "template": "A {triage.sentiment} review: {text}",
         "model": "zai-glm-4.7", "params": {"max_completion_tokens": 100}},
    ]  # fmt: skip
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    with simulator(monkeypatch, context_length=360, deprecated=DEPRECATED):
        plan = run_enrich("plan", str(path))
    assert plan.returncode == 0, plan.stderr
    out = plan.stdout
    triage = re.search(
        r"step triage\s+│ gpt-oss-120b: 5 requests, ([\d,]+) prompt \+ 320 completion", out
    )
    summary = re.search(
        r"step summary\s+│ zai-glm-4.7: 4 requests, ([\d,]+) prompt \+ 400 completion", out
    )
    assert triage and summary, out
    assert (
        "1 rows cannot fit the model's context of 360 tokens even with earlier steps' answers "
        "empty" in out
    )
    assert re.search(r"requests to send\s+│ 9\s", out)
    assert "$0.35 in / $0.75 out per million tokens (catalogue)" in out
    assert "$2 in / $3 out per million tokens (catalogue)" in out
    prompt = int(triage.group(1).replace(",", "")), int(summary.group(1).replace(",", ""))
    # The summary's prompt holds triage's answer: counted at triage's whole budget (64).
    assert prompt[1] >= 4 * 64
    cost = (prompt[0] * 0.35 + 320 * 0.75 + prompt[1] * 2 + 400 * 3) / 1e6
    assert f"${cost:,.4f}" in out
