"""What is refused before money is spent: overlapping locations and another job's output.

Each refusal is one line, raised by ``Job.prepare`` (so by ``enrich plan`` and ``enrich run``)
before the lease is taken and before any request: nothing is sent and nothing is written.
"""

from __future__ import annotations

from pathlib import Path

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
)

from enrich.completer import FakeCompleter
from enrich.config.places import overlap_reason, place_of
from enrich.errors import ConfigError
from enrich.lease import Lease
from enrich.output.layout import LAYOUT
from enrich.output.owner import OutputTaken

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
