"""What is refused before money is spent, and an input that changes after planning.

Overlapping input and output locations, another job's output, a file missing a column or
typing it differently, a bad line anywhere in a JSONL file, null or repeated ids, a file of the
other format: each is one line naming the file (and line or row), raised by ``Job.prepare`` (so
by ``enrich plan`` and ``enrich run``) before the lease is taken and before any request.
A file rewritten after planning stops the run (InputChanged) and nothing read from the new
version is committed; nor is a chunk with fewer rows than planned.
"""

from __future__ import annotations

import asyncio
import gzip
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support import (
    JobFactory,
    Location,
    answer,
    job_on,
    job_reading,
    jsonl_bytes,
    prepare_job,
    review_rows,
    run_config,
    run_enrich,
    write_jsonl,
)

from enrich.completer import Completion, CompletionRequest, FakeCompleter
from enrich.config.places import overlap_reason, place_of
from enrich.config.schema import InputSpec
from enrich.errors import ConfigError, InputChanged, InputError
from enrich.inputs import SourceFile, reader_for
from enrich.lease import Lease
from enrich.output.layout import LAYOUT
from enrich.output.owner import OutputTaken
from enrich.output.reader import read_dataset
from enrich.run import open_engine, run_job

CWD = "/work"

# -- output inside input (and the reverse) --------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "place"),
    [
        ("data/in.jsonl", ("", "/work/data/in.jsonl")),
        ("./data//x/../in/", ("", "/work/data/in")),
        ("file:///srv/in/*.parquet", ("", "/srv/in")),
        ("/srv/in/dt={date}/*.jsonl", ("", "/srv/in")),
        ("*.jsonl", ("", "/work")),
        ("s3://b/in/", ("s3", "b/in")),
        ("s3a://b//in/**/*.parquet", ("s3", "b/in")),
        ("S3://b/in", ("s3", "b/in")),
        ("memory://root/x", ("memory", "root/x")),
    ],
)
def test_where_a_path_points(path: str, place: tuple[str, str]) -> None:
    assert place_of(path, CWD) == place


@pytest.mark.parametrize(
    ("input_path", "output_path", "refused"),
    [
        ("data/in", "data/in/out", "inside input.path"),
        ("data/*.jsonl", "data/out", "inside input.path"),
        ("data/**", "./data/out/", "inside input.path"),
        ("/work/data/in.jsonl", "data/in.jsonl", "one location"),
        ("data/dt={date}/*.jsonl", "data/out/dt={date}", "inside input.path"),
        ("file:///work/data/*.jsonl", "data/out", "inside input.path"),
        ("s3://b/in/*.parquet", "s3://b/in/out", "inside input.path"),
        ("s3://b/*.parquet", "s3a://b/enriched", "inside input.path"),
        ("s3://b/in", "s3://b/in/", "one location"),
        ("out/x/parts/*.parquet", "out/x", "inside output.path"),
        ("s3://b/out/parts", "s3://b/out", "inside output.path"),
        ("data/in.jsonl", "out/x", None),
        ("data/in", "data/input2", None),  # a sibling whose name starts the same
        ("data/*.jsonl", "out", None),
        ("s3://b/in/*.parquet", "s3://b/out", None),
        ("s3://b/in", "/b/in/out", None),  # another scheme
        ("s3://b/in", "s3://c/in/out", None),
    ],
)
def test_which_locations_overlap(input_path: str, output_path: str, refused: str | None) -> None:
    reason = overlap_reason(input_path, output_path, CWD)
    if refused is None:
        assert reason is None
    else:
        assert reason is not None and refused in reason
        assert output_path in reason and input_path in reason and "\n" not in reason


def test_an_output_inside_the_input_is_refused_before_reading(
    make_job: JobFactory, tmp_path: Path
) -> None:
    config = make_job(
        review_rows(5), input={"path": str(tmp_path / "in")}, output={"path": str(tmp_path / "in")}
    )
    with pytest.raises(ConfigError) as info:
        prepare_job(config, ["output.path=" + str(tmp_path / "in" / "enriched")])
    assert str(info.value) == (
        f"{config}: output.path {tmp_path}/in/enriched is inside input.path {tmp_path}/in (a run "
        "would read its own output as input); write the output elsewhere"
    )
    assert not (tmp_path / "in" / "enriched").exists()


def test_an_output_inside_the_input_is_refused_on_s3(s3: Location, make_job: JobFactory) -> None:
    s3.put("in/reviews.jsonl", jsonl_bytes(review_rows(5)))
    config = job_reading(s3, make_job, s3.url("in/*.jsonl"))
    with pytest.raises(ConfigError, match=r"output\.path s3://.+/in/enriched is inside input"):
        prepare_job(config, {"output.path": s3.url("in/enriched")})
    assert s3.store().keys("in/enriched") == []


# -- one output, one job --------------------------------------------------------------------------


def test_another_job_may_not_write_a_committed_output(make_job: JobFactory, tmp_path: Path) -> None:
    config = make_job(review_rows(10))
    run_config(config, completer=FakeCompleter(answer))
    before = {p: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()}
    completer = FakeCompleter(answer)
    with pytest.raises(OutputTaken) as info:
        run_config(config, ["name=other"], completer=completer)
    out = tmp_path / "out"
    assert str(info.value) == (
        f"{out}: the output of job 'job' ({out}/_plan.json), not of job 'other'; give job "
        f"'other' another output.path, or delete {out} to reuse it"
    )
    assert completer.requests == []
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_a_committed_output_without_a_plan_still_names_its_job(
    make_job: JobFactory, tmp_path: Path
) -> None:
    config = make_job(review_rows(10))
    run_config(config, completer=FakeCompleter(answer))
    (tmp_path / "out" / LAYOUT.plan).unlink()
    with pytest.raises(OutputTaken, match=r"the output of job 'job' \(.+/_manifest\.json\)"):
        prepare_job(config, ["name=other"])


def test_the_same_job_with_an_edited_prompt_recommits(make_job: JobFactory, tmp_path: Path) -> None:
    config = make_job(review_rows(10))
    run_config(config, completer=FakeCompleter(answer))
    ran = run_config(
        config, ["prompt.template=Stars {rating}: {text}"], completer=FakeCompleter(answer)
    )
    assert ran.summary.complete
    assert ran.summary.message.startswith("committed 10 rows")


def test_a_live_lease_of_another_job_is_refused(s3: Location, make_job: JobFactory) -> None:
    config = job_on(s3, make_job, review_rows(5))
    lease = Lease(s3.store("out"), job="nightly")
    lease.acquire()
    try:
        with pytest.raises(OutputTaken) as info:
            prepare_job(config)
        assert f"{s3.url('out')}: job 'nightly' is writing here (job nightly, host " in str(
            info.value
        )
        assert str(info.value).endswith("not job 'job'; give job 'job' another output.path")
    finally:
        lease.release()
    assert prepare_job(config).rows == 5


# -- the input is pinned --------------------------------------------------------------------------


def two_files(location: Location, make_job: JobFactory, rows: int = 14, **sections: Any) -> Path:
    """A job reading ``a.jsonl`` and ``b.jsonl`` (``rows`` reviews each) under ``location``."""
    location.put("in/a.jsonl", jsonl_bytes(review_rows(2 * rows)[:rows]))
    location.put("in/b.jsonl", jsonl_bytes(review_rows(2 * rows)[rows:]))
    return job_reading(location, make_job, location.url("in/*.jsonl"), **sections)


def named(location: Location, key: str) -> str:
    """The URL of ``key`` as messages name an input file (a local one by its path)."""
    return location.url(key).removeprefix("file://")


def nothing_committed(location: Location) -> bool:
    return location.store("out").keys(LAYOUT.chunks) == []


def committed_ids(location: Location) -> set[str]:
    keys = location.store("out").keys(LAYOUT.chunks)
    return {k.rsplit("/", 1)[-1].removesuffix(".json") for k in keys}


def test_a_file_rewritten_after_planning_stops_the_run_before_a_request(
    place: Location, make_job: JobFactory
) -> None:
    config = two_files(place, make_job)
    job = prepare_job(config)
    before = place.store().read_bytes("in/a.jsonl")
    more = jsonl_bytes([{**review_rows(1)[0], "review_id": "r-late"}])
    place.put("in/a.jsonl", before + more)
    completer = FakeCompleter(answer)
    with pytest.raises(InputChanged) as info:
        asyncio.run(run_job(job, completer=completer))
    assert str(info.value) == (
        f"{named(place, 'in/a.jsonl')}: input changed since planning (size {len(before)} -> "
        f"{len(before) + len(more)}); rerun to plan again"
    )
    assert completer.requests == [] and nothing_committed(place)
    assert run_config(config, completer=FakeCompleter(answer)).summary.complete


def test_a_rewrite_of_the_same_size_is_noticed(place: Location, make_job: JobFactory) -> None:
    config = two_files(place, make_job)
    job = prepare_job(config)
    data = place.store().read_bytes("in/b.jsonl")
    place.put("in/b.jsonl", data.replace(b"Review number", b"Review NUMBER"))
    with pytest.raises(InputChanged) as info:
        asyncio.run(run_job(job, completer=FakeCompleter(answer)))
    tag = "ETag" if place.backend == "s3" else "mtime_ns"
    assert re.fullmatch(
        rf"{re.escape(named(place, 'in/b.jsonl'))}: input changed since planning \({tag} \S+ -> "
        r"\S+\); rerun to plan again",
        str(info.value),
    )
    assert not committed_ids(place) & {c.chunk_id for c in job.chunks if c.source_index == 1}


def test_a_file_rewritten_mid_run_commits_nothing_of_it(
    place: Location, make_job: JobFactory
) -> None:
    """Chunks of a.jsonl already running finish and commit; no chunk of b.jsonl does."""
    config = two_files(place, make_job, execution={"chunks_in_flight": 1})
    job = prepare_job(config)
    rewritten = place.store().read_bytes("in/b.jsonl").replace(b"the product", b"THE PRODUCT")

    def rewrite_b_once(request: CompletionRequest) -> Completion:
        if place.store().read_bytes("in/b.jsonl") != rewritten:
            place.put("in/b.jsonl", rewritten)  # same rows, other text: a silent mix before
        return answer(request)

    with pytest.raises(InputChanged, match=r"/in/b\.jsonl: input changed since planning"):
        asyncio.run(run_job(job, completer=FakeCompleter(rewrite_b_once)))
    committed = committed_ids(place)
    b_chunks = {c.chunk_id for c in job.chunks if c.source_index == 1}
    assert committed and not committed & b_chunks
    ran = run_config(config, completer=FakeCompleter(answer))
    assert ran.summary.complete
    texts = read_dataset(place.url("out"), place.storage_options).column("text").to_pylist()
    assert sum("THE PRODUCT" in t for t in texts) == sum(
        b"THE PRODUCT" in line for line in rewritten.splitlines()
    )


def test_a_short_read_is_never_committed(make_job: JobFactory, tmp_path: Path) -> None:
    job = prepare_job(make_job(review_rows(10)))
    chunk = job.chunks[0]
    [(_, table)] = job.iter_tables([chunk])

    async def short() -> None:
        async with open_engine(job, completer=FakeCompleter(answer)) as engine:
            await engine.run_chunk(chunk, table.slice(1))

    with pytest.raises(InputChanged, match=r"chunk-000-000000000: 6 rows read, not the 7 planned"):
        asyncio.run(short())
    assert not (tmp_path / "out" / LAYOUT.chunks).exists()


def test_a_reader_never_hands_on_fewer_rows_than_planned(tmp_path: Path) -> None:
    path = tmp_path / "x.parquet"
    pq.write_table(pa.Table.from_pylist(review_rows(23)), path)
    planned = SourceFile(str(path), "x.parquet", "parquet", path.stat().st_size, "", 30)
    spec = InputSpec(path=str(path))
    with pytest.raises(InputChanged, match=r"x\.parquet: rows 20-30 read back as 3 rows, not "):
        list(reader_for(planned, spec).read_slices([(0, 10), (20, 30)], None))


# -- every file and every line is checked before the first request --------------------------------


def prepare_refused(config: Path, message: str, overrides: Sequence[str] = ()) -> str:
    """Prepare ``config``: it must fail with an InputError matching ``message``, in one line."""
    with pytest.raises(InputError, match=message) as info:
        prepare_job(config, overrides)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_a_template_column_missing_from_one_file(place: Location, make_job: JobFactory) -> None:
    config = two_files(place, make_job)
    rows = [{k: v for k, v in r.items() if k != "text"} for r in review_rows(3)]
    place.put("in/c.jsonl", jsonl_bytes(rows))
    message = prepare_refused(config, "no column")
    assert message == f"{named(place, 'in/c.jsonl')}: no column 'text' used by the template"


@pytest.mark.parametrize(
    ("dropped", "setting", "why"),
    [
        ("review_id", {}, "named by input.id_column"),
        ("extra", {"columns": ["extra", "text"]}, "listed in input.columns"),
        ("extra", {}, "(other files have it; set input.columns to keep only columns every"),
    ],
)
def test_every_column_read_is_in_every_file(
    make_job: JobFactory, tmp_path: Path, dropped: str, setting: dict[str, Any], why: str
) -> None:
    rows = [{**r, "extra": 1} for r in review_rows(6)]
    write_jsonl(tmp_path / "in" / "a.jsonl", rows[:3])
    write_jsonl(
        tmp_path / "in" / "b.jsonl",
        [{k: v for k, v in r.items() if k != dropped} for r in rows[3:]],
    )
    config = make_job(input={"path": f"{tmp_path}/in/*.jsonl", **setting})
    message = prepare_refused(config, "no column")
    assert message.startswith(f"{tmp_path}/in/b.jsonl: no column {dropped!r} {why}")


def test_a_malformed_line_deep_in_the_file_names_its_line(
    place: Location, make_job: JobFactory
) -> None:
    lines = jsonl_bytes(review_rows(1100)).splitlines(keepends=True)
    lines[1050] = lines[1050][:30] + b"\n"
    place.put("in/a.jsonl", b"".join(lines))
    config = job_reading(place, make_job, place.url("in/a.jsonl"))
    message = prepare_refused(config, "malformed JSON")
    assert message.startswith(f"{named(place, 'in/a.jsonl')}:1051: malformed JSON (")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"[1, 2]", ":1041: expected a JSON object, got list$"),
        (b'"text"', ":1041: expected a JSON object, got str$"),
        (b"null", ":1041: expected a JSON object, got null$"),
        (b'{"review_id": "x", "rating": "five", "text": "t"}', r":1041: column 'rating' holds str"),
        (b'{"review_id": "x", "rating": 2.5, "text": "t"}', ":1041: column 'rating' holds float"),
        (b'{"review_id": "x", "rating": 99999999999999999999, "text": "t"}', ":1041: column "),
        (b'{"review_id": "x", "rating": 1, "text": "caf\xe9"}', r":1041: not valid UTF-8"),
    ],
)
def test_every_line_after_the_sample_is_checked(
    make_job: JobFactory, tmp_path: Path, line: bytes, message: str
) -> None:
    lines = jsonl_bytes(review_rows(1100)).splitlines(keepends=True)
    lines[1040] = line + b"\n"
    path = tmp_path / "in" / "a.jsonl"
    path.parent.mkdir()
    path.write_bytes(b"".join(lines))
    prepare_refused(make_job(input_path=str(path)), re.escape(str(path)) + message)


def test_a_column_typed_differently_in_two_files(make_job: JobFactory, tmp_path: Path) -> None:
    write_jsonl(tmp_path / "in" / "a.jsonl", review_rows(4))
    write_jsonl(tmp_path / "in" / "b.jsonl", [{**r, "rating": "5 stars"} for r in review_rows(3)])
    config = make_job(input={"path": f"{tmp_path}/in/*.jsonl"})
    message = prepare_refused(config, "column 'rating'")
    assert message == (
        f"{tmp_path}/in/b.jsonl: column 'rating' is string here but int64 in {tmp_path}/in/a.jsonl"
    )


def test_parquet_and_jsonl_files_must_agree_on_types(make_job: JobFactory, tmp_path: Path) -> None:
    write_jsonl(tmp_path / "in" / "a.jsonl", review_rows(4))
    table = pa.Table.from_pylist(review_rows(3)).cast(
        pa.schema([("review_id", pa.string()), ("rating", pa.int32()), ("text", pa.string())])
    )
    pq.write_table(table, tmp_path / "in" / "b.parquet")
    config = make_job(input={"path": f"{tmp_path}/in/*"})
    message = prepare_refused(config, "column 'rating'")
    assert message == (
        f"{tmp_path}/in/b.parquet: column 'rating' is int32 here but int64 in {tmp_path}/in/a.jsonl"
    )


# -- ids ------------------------------------------------------------------------------------------


def test_a_null_id_names_its_line(place: Location, make_job: JobFactory) -> None:
    rows = review_rows(1500)
    rows[1203] = {**rows[1203], "review_id": None}
    place.put("in/a.jsonl", jsonl_bytes(rows))
    config = job_reading(place, make_job, place.url("in/a.jsonl"))
    message = prepare_refused(config, "is null")
    assert message == (
        f"{named(place, 'in/a.jsonl')}:1204: input.id_column 'review_id' is null (every row needs "
        "an id)"
    )


def test_a_missing_id_in_a_sample_row_is_null(make_job: JobFactory, tmp_path: Path) -> None:
    rows = review_rows(5)
    del rows[2]["review_id"]
    config = make_job(rows)
    prepare_refused(config, r"reviews\.jsonl:3: input\.id_column 'review_id' is null")


def test_a_null_id_in_parquet_names_its_row(make_job: JobFactory, tmp_path: Path) -> None:
    rows = review_rows(30)
    rows[17] = {**rows[17], "review_id": None}
    path = tmp_path / "in" / "a.parquet"
    path.parent.mkdir()
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=10)
    message = prepare_refused(make_job(input_path=str(path)), "is null")
    assert message == f"{path}: row 17: input.id_column 'review_id' is null (every row needs an id)"


def test_a_duplicate_id_in_one_file(place: Location, make_job: JobFactory) -> None:
    rows = review_rows(1200)
    rows[1100] = {**rows[1100], "review_id": rows[40]["review_id"]}
    place.put("in/a.jsonl", jsonl_bytes(rows))
    config = job_reading(place, make_job, place.url("in/a.jsonl"))
    message = prepare_refused(config, "duplicate id")
    url = named(place, "in/a.jsonl")
    assert message == (
        f"{url}:1101: duplicate id 'r-00040' in input.id_column 'review_id' (first at {url}:41)"
    )


def test_a_duplicate_id_across_files_and_formats(make_job: JobFactory, tmp_path: Path) -> None:
    rows = review_rows(20)
    write_jsonl(tmp_path / "in" / "a.jsonl", rows[:10])
    (tmp_path / "in" / "a.jsonl").write_bytes(b"\n" + (tmp_path / "in" / "a.jsonl").read_bytes())
    later = [*rows[10:15], {**rows[15], "review_id": rows[6]["review_id"]}, *rows[16:]]
    pq.write_table(pa.Table.from_pylist(later), tmp_path / "in" / "b.parquet", row_group_size=4)
    config = make_job(input={"path": f"{tmp_path}/in/*"})
    message = prepare_refused(config, "duplicate id")
    assert message == (
        f"{tmp_path}/in/b.parquet: row 5: duplicate id 'r-00006' in input.id_column 'review_id' "
        f"(first at {tmp_path}/in/a.jsonl:8)"
    )


def test_integer_ids_that_repeat(make_job: JobFactory, tmp_path: Path) -> None:
    rows = [{**r, "review_id": i % 7} for i, r in enumerate(review_rows(9))]
    message = prepare_refused(make_job(rows), "duplicate id")
    assert message.endswith(
        "reviews.jsonl:8: duplicate id '0' in input.id_column 'review_id' "
        f"(first at {tmp_path}/in/reviews.jsonl:1)"
    )


def test_equal_digests_of_different_ids_refuse_nothing(
    make_job: JobFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    def colliding(values: pa.Array | pa.ChunkedArray) -> pl.Series:
        return pl.Series([7] * len(values), dtype=pl.UInt64)

    monkeypatch.setattr("enrich.inputs.jsonl.digest", colliding)
    assert prepare_job(make_job(review_rows(12))).rows == 12


def test_ids_are_checked_only_with_an_id_column(make_job: JobFactory) -> None:
    rows = [{**r, "review_id": "same"} for r in review_rows(5)]
    assert prepare_job(make_job(rows, input={"id_column": None})).rows == 5


# -- a file of the other format -------------------------------------------------------------------


def parquet_bytes(rows: list[dict[str, Any]]) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist(rows), sink)
    return bytes(sink.getvalue().to_pybytes())


@pytest.mark.parametrize(
    ("name", "data", "setting", "message"),
    [
        ("x.jsonl", "parquet", "jsonl", "this is a Parquet file but input.format is jsonl"),
        (
            "x.jsonl",
            "parquet",
            None,
            "this is a Parquet file but its name says JSONL; rename it or set input.format: "
            "parquet",
        ),
        (
            "x.parquet",
            "jsonl",
            "parquet",
            "looks like JSON lines, not Parquet (input.format is parquet)",
        ),
        (
            "x.pq",
            "jsonl",
            None,
            "looks like JSON lines, not Parquet (its name says Parquet; rename it or set "
            "input.format: jsonl)",
        ),
        ("x.parquet", "gzip", None, "is gzip-compressed, not Parquet (its name says Parquet"),
    ],
)
def test_a_file_of_the_other_format_is_named(
    place: Location,
    make_job: JobFactory,
    name: str,
    data: str,
    setting: str | None,
    message: str,
) -> None:
    rows = review_rows(5)
    body = {
        "parquet": parquet_bytes(rows),
        "jsonl": jsonl_bytes(rows),
        "gzip": gzip.compress(jsonl_bytes(rows)),
    }[data]
    url = place.put(f"in/{name}", body)
    options = place.storage_options
    config = make_job(
        input={"path": url, "format": setting, "storage_options": options},
        output={"path": place.url("out"), "storage_options": options},
    )
    with pytest.raises(InputError) as info:
        prepare_job(config)
    assert str(info.value).startswith(f"{named(place, f'in/{name}')}: {message}")
    assert "UTF-8" not in str(info.value)


def test_bad_input_fails_the_command_before_the_lease(make_job: JobFactory, tmp_path: Path) -> None:
    lines = jsonl_bytes(review_rows(1100)).splitlines(keepends=True)
    lines[1050] = b"{not json\n"  # past the rows read to infer the types
    path = tmp_path / "in" / "a.jsonl"
    path.parent.mkdir()
    path.write_bytes(b"".join(lines))
    done = run_enrich("run", str(make_job(input_path=str(path))), "--direct")
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"error: {path}:1051: malformed JSON (")
    assert not (tmp_path / "out").exists()
