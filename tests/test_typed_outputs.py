"""Typed outputs through real runs: the schema in the config, the request, the columns, the errors.

A job with ``prompt.output_schema`` sends ``response_format`` (json_schema, strict) with every
request, judges each answer against the schema, and commits one typed column per field beside
the completion. Runs go against the bundled simulator over HTTP, which answers schema-valid JSON
and, with faults, JSON that does not parse, JSON cut short, or nothing after reasoning.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest
import yaml
from jsonschema import Draft202012Validator
from support import (
    JobFactory,
    answer,
    by_row,
    prepare_job,
    review_rows,
    run_config,
    run_enrich,
    user_text,
)

from enrich.completer import Completion, CompletionRequest, FakeCompleter
from enrich.config import load_job_config
from enrich.errors import ConfigError
from enrich.hashing import canonical_json, request_hash
from enrich.output.reader import read_dataset, read_manifest
from enrich.output.records import MANIFEST_FORMAT, Manifest
from enrich.sim.harness import ThreadedSimulator
from enrich.structured import OutputSchemaRefused

FIELDS: dict[str, Any] = {
    "sentiment": "enum[positive, negative, mixed]",
    "score": "int",
    "ratio": "float",
    "ok": "bool",
    "topics": "list[str]",
    "summary": "str",
    "note": "str?",
    "address": {"street": "str", "zip": "str"},
}
ENUM = pa.dictionary(pa.int32(), pa.string())


def typed_job(make_job: JobFactory, schema: Any = None, **sections: Any) -> Path:
    """A job whose prompt asks for ``schema`` (the field list above by default), written in the
    order given, as a person writes YAML."""
    path = make_job(**sections)
    config = yaml.safe_load(path.read_text())
    config["prompt"]["output_schema"] = FIELDS if schema is None else schema
    # Room for every simulated object: a cut answer is an error row, not a typed one.
    config["params"]["max_completion_tokens"] = 400
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.mark.parametrize("stream", [False, True])
def test_each_field_is_a_typed_column_of_the_committed_dataset(
    sim: ThreadedSimulator, make_job: JobFactory, stream: bool
) -> None:
    config = typed_job(make_job, params={"stream": stream})
    ran = run_config(config)
    assert ran.summary.complete and ran.summary.failed == 0
    table = read_dataset(str(ran.job.store.url))
    typed = {name: table.schema.field(name) for name in table.column_names if "_" in name}
    expected = {
        "completion_sentiment": ENUM,
        "completion_score": pa.int64(),
        "completion_ratio": pa.float64(),
        "completion_ok": pa.bool_(),
        "completion_topics": pa.list_(pa.field("element", pa.string(), nullable=False)),
        "completion_summary": pa.string(),
        "completion_note": pa.string(),
        "completion_address": pa.struct(
            [pa.field("street", pa.string(), False), pa.field("zip", pa.string(), False)]
        ),
    }
    assert {n: f.type for n, f in typed.items() if n in expected} == expected
    assert all(typed[n].nullable for n in expected)  # an error row has no value
    # Beside the raw completion, in the field list's order.
    at = table.column_names.index("completion")
    assert table.column_names[at + 1 : at + 1 + len(expected)] == list(expected)
    # Every request asked for the schema (the simulator answers free text otherwise), and the
    # typed values are the completion's.
    validator = Draft202012Validator(ran.job.output.schema if ran.job.output else {})
    for row in table.to_pylist():
        value = orjson.loads(row["completion"])
        assert not list(validator.iter_errors(value))
        assert row["completion_score"] == value["score"]
        assert row["completion_sentiment"] == value["sentiment"]
        assert row["completion_address"] == value["address"]
        assert row["completion_topics"] == value["topics"]
    assert sim.stats.requests == 20


def test_the_manifest_records_the_output_schema(
    sim: ThreadedSimulator, make_job: JobFactory
) -> None:
    ran = run_config(typed_job(make_job))
    manifest = read_manifest(ran.job.store.url)
    assert manifest.format_version == MANIFEST_FORMAT == 2
    assert manifest.output_schema is not None
    assert manifest.output_schema["name"] == "output"
    assert list(manifest.output_schema["schema"]["properties"]) == list(FIELDS)
    columns = manifest.output_schema["columns"]
    assert columns["completion_sentiment"] == "dictionary<values=string, indices=int32, ordered=0>"
    assert columns["completion_address"] == "struct<street: string not null, zip: string not null>"
    # A job without a schema still writes the format an older reader knows.
    plain = run_config(make_job(output_path=str(Path(ran.job.store.url).parent / "plain")))
    old = read_manifest(plain.job.store.url)
    assert old.format_version == 1 and old.output_schema is None


def test_the_schema_is_part_of_the_request(sim: ThreadedSimulator, make_job: JobFactory) -> None:
    config = typed_job(make_job)
    assert run_config(config).summary.complete
    assert sim.stats.requests == 20
    sim.reset()
    assert run_config(config).summary.complete
    assert sim.stats.requests == 0  # the same schema: nothing asked again
    # Variants of the job over the same input file (written once: the input is pinned).
    source = yaml.safe_load(config.read_text())["input"]["path"]
    plain = prepare_job(make_job(input_path=source))
    typed = prepare_job(typed_job(make_job, input_path=source))
    assert typed.response_format is not None and plain.response_format is None
    edited = prepare_job(typed_job(make_job, {**FIELDS, "score": "float"}, input_path=source))
    renamed = prepare_job(
        typed_job(make_job, input_path=source, output={"completion_column": "label"})
    )
    assert typed.fingerprint != edited.fingerprint != plain.fingerprint
    # Another schema changes every request (the answer would differ); the column prefix does not.
    rows = next(typed.iter_tables(typed.chunks[:1]))
    assert set(typed.render(*rows)[1]).isdisjoint(edited.render(*rows)[1])
    assert set(typed.render(*rows)[1]).isdisjoint(plain.render(*rows)[1])
    assert renamed.render(*rows)[1] == typed.render(*rows)[1]
    assert renamed.output is not None and renamed.output.columns()[0] == "label_sentiment"
    sim.reset()
    run_config(typed_job(make_job, {**FIELDS, "score": "float"}, input_path=source))
    assert sim.stats.requests == 20


def test_invalid_and_truncated_json_are_error_rows_with_kind_and_reason(
    sim: ThreadedSimulator, make_job: JobFactory
) -> None:
    sim.set_faults(invalid_json=0.3, truncated_json=0.3)
    # Without the repair request (tests/test_repair.py), each fault is one error row.
    execution = {"max_error_share": 1, "repair_invalid_output": False}
    config = typed_job(make_job, rows=review_rows(40), execution=execution)
    ran = run_config(config)
    assert ran.summary.complete
    table = read_dataset(str(ran.job.store.url))
    rows = table.to_pylist()
    assert ran.job.output is not None
    columns = ran.job.output.columns()
    kinds = [r["error_kind"] for r in rows]
    faults = sim.stats.faults
    assert kinds.count("invalid_output") == faults["invalid_json"] > 0
    assert kinds.count("truncated") == faults["truncated_json"] > 0
    assert kinds.count(None) == 40 - faults["invalid_json"] - faults["truncated_json"] > 0
    for row in rows:
        typed = [row[c] for c in columns]
        if row["error_kind"] == "invalid_output":
            assert row["status"] == "error" and row["finish_reason"] == "stop"
            assert row["error"].startswith("not JSON (")
            assert row["completion"].endswith(",}")  # the answer is kept as it came
            assert row["completion_tokens"] > 0  # and so is what it cost
        elif row["error_kind"] == "truncated":
            assert row["status"] == "error" and row["finish_reason"] == "length"
            assert row["error"].startswith("finish_reason length")
            with pytest.raises(orjson.JSONDecodeError):
                orjson.loads(row["completion"])
        else:
            assert row["status"] == "ok"
        assert all(v is None for v in typed) is (row["status"] == "error")
    # Both belong to the request: a rerun asks for neither again.
    sim.reset()
    assert run_config(config).summary.complete and sim.stats.requests == 0


def test_an_answer_that_does_not_match_the_schema_is_invalid_output(
    make_job: JobFactory,
) -> None:
    """A strict server never sends one; a lax OpenAI-compatible one can. It is a row error."""
    good = {"label": "pos", "score": 2}

    def handler(request: CompletionRequest) -> Completion:
        assert request.response_format is not None  # the port carries the schema
        assert request.response_format["json_schema"]["strict"] is True
        text = user_text(request)
        value = {**good, "score": "high"} if "number 4:" in text else good
        return replace(answer(request), content=orjson.dumps(value).decode())

    completer = FakeCompleter(handler)
    config = typed_job(
        make_job,
        {"label": "enum[pos, neg]", "score": "int"},
        rows=review_rows(10),
        execution={"max_error_share": 1, "repair_invalid_output": False},
    )
    ran = run_config(config, completer=completer)
    assert ran.summary.complete and len(completer.requests) == 10
    table = read_dataset(ran.job.store.url)
    row = {c: by_row(table, c)["r-00004"] for c in table.column_names}
    assert (row["status"], row["error_kind"]) == ("error", "invalid_output")
    assert row["error"] == "does not match the schema: $.score: 'high' is not of type 'integer'"
    assert row["completion"] == '{"label":"pos","score":"high"}'
    assert row["completion_tokens"] == 3 and row["cost_usd"] > 0  # paid for, and kept
    assert row["completion_label"] is None and row["completion_score"] is None
    scores = by_row(table, "completion_score")
    del scores["r-00004"]
    assert set(scores.values()) == {2}
    assert (ran.summary.ok, ran.summary.failed) == (9, 1)


def test_an_empty_answer_after_reasoning_is_its_own_error(
    sim: ThreadedSimulator, make_job: JobFactory
) -> None:
    sim.set_faults(reasoning_starved=1.0)
    # Without the retry of a larger budget (tests/test_steps_reasoning.py has it).
    execution = {"max_error_share": 1, "empty_length_retry": {"enabled": False}}
    ran = run_config(typed_job(make_job, execution=execution))
    table = read_dataset(str(ran.job.store.url))
    assert set(table.column("error_kind").to_pylist()) == {"empty_length"}
    assert set(table.column("completion_tokens").to_pylist()) == {400}  # the budget, billed
    assert table.column("completion_sentiment").null_count == 20


def test_plan_lists_every_strict_mode_finding_and_refuses(
    sim: ThreadedSimulator, make_job: JobFactory
) -> None:
    schema = {
        "type": "object",
        "properties": {
            "label": {"type": ["string", "null"]},
            "tags": {"type": "array", "items": True},
        },
        "required": ["label"],
    }
    config = typed_job(make_job, schema)
    result = run_enrich("plan", str(config))
    assert result.returncode == 2
    where = f"{config}: prompt.output_schema"
    assert result.stderr.splitlines() == [
        f"error: {where}: $: set additionalProperties: false (strict mode requires it)",
        f"error: {where}: $.required: add 'tags': strict mode requires every property; one "
        "that may be missing stays required and allows null (anyOf: [{type: string}, "
        "{type: 'null'}])",
        f'error: {where}: $.properties.label.type: ["string","null"] is a type array, which '
        "strict mode refuses; write anyOf: [{type: string}, {type: 'null'}]",
        f"error: {where}: $.properties.tags.items: items: true is not allowed; give the item "
        "schema, e.g. items: {type: string}",
    ]
    run = run_enrich("run", str(config), "--direct")
    assert run.returncode == 2
    assert run.stderr.strip() == (
        f"error: {where}: $: set additionalProperties: false (strict mode requires it) "
        "(and 3 more; `enrich plan` lists them)"
    )
    assert sim.stats.requests == 0
    assert not (config.parent / "out").exists()  # nothing written either
    with pytest.raises(OutputSchemaRefused):
        prepare_job(config)


def test_plan_of_a_typed_job_shows_the_plan(sim: ThreadedSimulator, make_job: JobFactory) -> None:
    result = run_enrich("plan", str(typed_job(make_job)))
    assert result.returncode == 0, result.stderr
    assert "rows to send" in result.stdout
    assert sim.stats.requests == 0


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"score": "integer!"},
            "prompt.output_schema: field score: unknown type 'integer!' (str, int, float, bool, "
            "enum[a, b], list[T], T? or a nested mapping)",
        ),
        (
            {"address": {"zip": "enum[]"}},
            "prompt.output_schema: field address.zip: 'enum[]' has an empty value; list them: "
            "enum[a, b]",
        ),
    ],
)
def test_a_bad_field_list_is_one_line_naming_the_key(
    make_job: JobFactory, fields: dict[str, Any], message: str
) -> None:
    config = typed_job(make_job, fields)
    with pytest.raises(ConfigError) as raised:
        load_job_config(config)
    assert str(raised.value) == f"{config}: {message}"


def test_a_field_whose_column_the_output_already_has_is_refused(make_job: JobFactory) -> None:
    config = typed_job(make_job, {"tokens": "int", "label": "str"})
    with pytest.raises(ConfigError) as raised:
        prepare_job(config)
    assert str(raised.value) == (
        f"{config}: prompt.output_schema: field column(s) completion_tokens clash with output "
        "columns; rename the field or output.completion_column"
    )


def test_an_input_column_named_like_a_typed_column_is_refused(make_job: JobFactory) -> None:
    rows = [{**r, "completion_score": 1} for r in review_rows(3)]
    config = typed_job(make_job, {"score": "int"}, rows=rows)
    with pytest.raises(ConfigError, match="input column\\(s\\) completion_score clash"):
        prepare_job(config)


def test_typed_values_by_row_survive_a_rerun_with_another_column_name(
    sim: ThreadedSimulator, make_job: JobFactory
) -> None:
    """The column prefix is not part of the request: renaming it re-commits, asks nothing."""
    config = typed_job(make_job)
    first = read_dataset(str(run_config(config).job.store.url))
    sim.reset()
    renamed = run_config(config, {"output.completion_column": "review"})
    assert renamed.summary.complete and sim.stats.requests == 0
    again = read_dataset(str(renamed.job.store.url))
    assert by_row(again, "review_score") == by_row(first, "completion_score")
    assert again.schema.field("review_sentiment").type == ENUM


def test_a_manifest_with_an_output_schema_round_trips_as_format_2() -> None:
    described = {"name": "output", "schema": {"type": "object"}, "columns": {"c_x": "int64"}}
    manifest = Manifest.of([], job="j", fingerprint="f", fmt="parquet", output_schema=described)
    data = manifest.to_bytes()
    assert orjson.loads(data)["format_version"] == 2
    assert Manifest.from_bytes(data, "m") == manifest
    assert Manifest.from_bytes(data, "m").output_schema == described


def test_a_request_without_a_schema_hashes_as_before() -> None:
    """Answers committed before structured outputs are still found by their request hash."""
    messages = [{"role": "user", "content": "hi"}]
    fixed = canonical_json({"endpoint": "https://e", "model": "m", "params": {"seed": 1}})
    before = hashlib.blake2b(fixed, digest_size=16)
    before.update(orjson.dumps(messages))
    assert request_hash("https://e", "m", {"seed": 1}, messages) == before.hexdigest()
    fmt = {"type": "json_schema", "json_schema": {"name": "output", "schema": {}}}
    assert request_hash("https://e", "m", {"seed": 1}, messages, fmt) != before.hexdigest()


def test_a_jsonl_output_reads_back_with_the_typed_columns_of_a_parquet_one(
    sim: ThreadedSimulator, make_job: JobFactory, tmp_path: Path
) -> None:
    # Error rows leave typed columns null, a chunk of them all null: JSON alone would read
    # those back as null columns, an enum as plain strings.
    sim.set_faults(invalid_json=0.5)
    execution = {"max_error_share": 1, "repair_invalid_output": False, "rows_per_chunk": 2}
    config = typed_job(make_job, rows=review_rows(30), execution=execution)
    tables = {}
    for fmt in ("parquet", "jsonl"):
        ran = run_config(config, {"output.format": fmt, "output.path": str(tmp_path / fmt)})
        assert ran.summary.complete and ran.summary.failed > 0
        assert read_manifest(ran.job.store.url).format == fmt
        tables[fmt] = read_dataset(str(ran.job.store.url))
    assert ran.job.output is not None
    typed = ran.job.output.columns()
    parquet, jsonl = (pa.schema([t.schema.field(c) for c in typed]) for t in tables.values())
    assert jsonl == parquet
    assert jsonl.field("completion_sentiment").type == ENUM
    assert tables["jsonl"].column("completion_sentiment").null_count > 0
    # The values are the answers' own, an error row's none.
    for row in tables["jsonl"].to_pylist():
        if row["error_kind"] is not None:
            assert all(row[c] is None for c in typed)
            continue
        value = orjson.loads(row["completion"])
        assert [row[c] for c in typed] == [value.get(c.removeprefix("completion_")) for c in typed]
