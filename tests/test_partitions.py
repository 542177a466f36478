"""Date-partitioned inputs: templates, partition URLs, the schedule's date, committed state."""

from __future__ import annotations

import asyncio
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support import JobFactory, review_rows, run_enrich, write_jsonl

from enrich.config import load_job_config
from enrich.errors import ConfigError
from enrich.job import Job
from enrich.partitions import (
    PartitionTemplate,
    date_range,
    for_partition,
    list_partitions,
    logical_date,
    parse_date,
    partition_state,
    pending,
    select,
)
from enrich.run import run_job
from enrich.sim.harness import ThreadedSimulator
from enrich.storage import Store


@pytest.mark.parametrize(
    ("path", "root", "segment"),
    [
        ("s3://raw/reviews/dt={date}/*.parquet", "s3://raw/reviews", "dt={date}"),
        ("data/reviews/dt={date}/*.jsonl", "data/reviews", "dt={date}"),
        ("/abs/reviews/{date}/part.jsonl", "/abs/reviews", "{date}"),
        ("raw/*/dt={date}/x.jsonl", "raw", "dt={date}"),
        ("raw/reviews-{date}.jsonl", "raw", "dt={date}"),  # the date is in a file name
        ("raw/day-{date}-*/x.jsonl", "raw", "dt={date}"),  # a wildcard in the dated folder
        ("memory://bucket/dt={date}", "memory://bucket", "dt={date}"),
        ("dt={date}/x.jsonl", ".", "dt={date}"),
    ],
)
def test_template_root_and_output_segment(path: str, root: str, segment: str) -> None:
    template = PartitionTemplate.parse(path)
    assert (template.root, template.segment) == (root, segment)


@pytest.mark.parametrize(
    "path",
    [
        "data/reviews.jsonl",  # no field
        "data/{date}/{date}.jsonl",  # two fields
        "s3://raw-{date}/x.parquet",  # in the bucket name
    ],
)
def test_bad_templates(path: str) -> None:
    with pytest.raises(ConfigError, match=r"input\.path"):
        PartitionTemplate.parse(path)


@pytest.mark.parametrize(
    ("path", "relative", "expected"),
    [
        ("r/dt={date}/*.jsonl", ["dt=2026-11-20/a.jsonl", "dt=2026-11-21/b.jsonl"],
         ["2026-11-20", "2026-11-21"]),
        ("r/dt={date}/*.jsonl", ["dt=2026-11-20/a.jsonl", "dt=2026-11-20/b.jsonl"],
         ["2026-11-20"]),
        ("r/dt={date}/*.jsonl", ["dt=2026-11-20/a.parquet", "dt=latest/a.jsonl"], []),
        ("r/dt={date}/*.jsonl", ["dt=2026-13-01/a.jsonl", "dt=2026-02-30/a.jsonl"], []),
        ("r/dt={date}/*.jsonl", ["x/dt=2026-11-20/a.jsonl"], []),
        ("r/{date}", ["2026-11-20/part-0.parquet", "2026-11-21/sub/part.parquet"],
         ["2026-11-20", "2026-11-21"]),
        ("r/reviews-{date}.jsonl", ["reviews-2026-11-20.jsonl", "other-2026-11-21.jsonl"],
         ["2026-11-20"]),
        ("r/*/dt={date}/*.jsonl", ["eu/dt=2026-11-20/a.jsonl", "us/dt=2026-11-22/a.jsonl"],
         ["2026-11-20", "2026-11-22"]),
        ("r/day-?/{date}/[ab].jsonl", ["day-1/2026-11-20/a.jsonl", "day-1/2026-11-21/c.jsonl"],
         ["2026-11-20"]),
    ],
)  # fmt: skip
def test_dates_found_under_the_root(path: str, relative: list[str], expected: list[str]) -> None:
    assert PartitionTemplate.parse(path).dates(relative) == expected


@pytest.mark.parametrize(
    ("input_path", "output_path", "partition", "input_url", "output_url"),
    [
        ("raw/dt={date}/*.jsonl", "out/job", "2026-11-20",
         "raw/dt=2026-11-20/*.jsonl", "out/job/dt=2026-11-20"),
        ("s3://raw/{date}/x.parquet", "s3://enriched/job/", "2026-01-02",
         "s3://raw/2026-01-02/x.parquet", "s3://enriched/job/2026-01-02"),
        ("raw/reviews-{date}.jsonl", "out", "2026-11-20",
         "raw/reviews-2026-11-20.jsonl", "out/dt=2026-11-20"),
        ("raw/dt={date}/*.jsonl", "s3://o/day={date}/v1", "2026-11-20",
         "raw/dt=2026-11-20/*.jsonl", "s3://o/day=2026-11-20/v1"),
    ],
)  # fmt: skip
def test_partition_urls(
    input_path: str, output_path: str, partition: str, input_url: str, output_url: str
) -> None:
    template = PartitionTemplate.parse(input_path)
    assert template.input_url(partition) == input_url
    assert template.output_url(output_path, partition) == output_url


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("2026-11-20", True),
        ("2024-02-29", True),
        ("2026-02-29", False),
        ("20261120", False),
        ("2026-11-20T00:00", False),
        ("", False),
        ("../etc", False),
    ],
)
def test_parse_date(text: str, ok: bool) -> None:
    if ok:
        assert parse_date(text).isoformat() == text
    else:
        with pytest.raises(ConfigError):
            parse_date(text)


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        ("2026-11-20", "2026-11-22", ["2026-11-20", "2026-11-21", "2026-11-22"]),
        ("2026-11-20", "2026-11-20", ["2026-11-20"]),
        ("2026-02-28", "2026-03-01", ["2026-02-28", "2026-03-01"]),
        ("2024-12-31", "2025-01-01", ["2024-12-31", "2025-01-01"]),
    ],
)
def test_date_range(start: str, end: str, expected: list[str]) -> None:
    assert date_range(start, end) == expected


def test_date_range_backwards_is_an_error() -> None:
    with pytest.raises(ConfigError, match="before start"):
        date_range("2026-11-22", "2026-11-20")


DAYS = ["2026-11-18", "2026-11-20", "2026-11-21", "2026-11-23"]


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (None, None, DAYS),
        ("2026-11-20", None, DAYS[1:]),
        (None, "2026-11-21", DAYS[:3]),
        ("2026-11-19", "2026-11-22", ["2026-11-20", "2026-11-21"]),
        ("2026-11-24", None, []),
    ],
)
def test_select(start: str | None, end: str | None, expected: list[str]) -> None:
    assert select(reversed(DAYS), start, end) == expected


@pytest.mark.parametrize(
    ("scheduled", "zone", "lag", "expected"),
    [
        ("2026-11-21T05:30:00+00:00", "Europe/Berlin", 1, "2026-11-20"),  # 06:30 in Berlin
        ("2026-11-20T23:30:00+00:00", "Europe/Berlin", 1, "2026-11-20"),  # already the 21st there
        ("2026-11-20T23:30:00+00:00", "UTC", 1, "2026-11-19"),
        ("2026-11-21T03:00:00+00:00", "America/Los_Angeles", 1, "2026-11-19"),  # still the 20th
        ("2026-11-21T05:30:00+00:00", "UTC", 0, "2026-11-21"),
        ("2026-03-01T06:30:00+00:00", "UTC", 1, "2026-02-28"),
    ],
)
def test_logical_date_of_a_scheduled_run(
    scheduled: str, zone: str, lag: int, expected: str
) -> None:
    assert logical_date(datetime.fromisoformat(scheduled), zone, lag) == expected


def test_logical_date_checks_its_inputs() -> None:
    with pytest.raises(ConfigError, match="time zone"):
        logical_date(datetime(2026, 11, 20, tzinfo=UTC), "Mars/Olympus")
    with pytest.raises(ValueError, match="timezone-aware"):
        logical_date(datetime(2026, 11, 20), "UTC")


# -- configs and storage ------------------------------------------------------------------------


def partitioned_input(root: Path, days: dict[str, int]) -> str:
    """One JSONL file per day under ``root/dt=DAY/``; returns the input template."""
    start = 0
    for day, n in days.items():
        rows = [{**r, "review_id": f"{day}-{r['review_id']}"} for r in review_rows(start + n)]
        write_jsonl(root / f"dt={day}" / "part-0.jsonl", rows[start:])
        start += n
    return str(root / "dt={date}" / "*.jsonl")


def test_for_partition_substitutes_both_paths(make_job: JobFactory, tmp_path: Path) -> None:
    config = load_job_config(make_job(input_path="raw/dt={date}/*.jsonl", output_path="out/j"))
    cfg = for_partition(config, "2026-11-20")
    assert (cfg.input.path, cfg.output.path) == ("raw/dt=2026-11-20/*.jsonl", "out/j/dt=2026-11-20")
    assert (cfg.name, cfg.prompt, cfg.model) == (config.name, config.prompt, config.model)


def test_partition_is_required_exactly_when_the_input_has_a_date(make_job: JobFactory) -> None:
    partitioned = load_job_config(make_job(input_path="raw/dt={date}/*.jsonl"))
    with pytest.raises(ConfigError, match="name a partition"):
        for_partition(partitioned, None)
    with pytest.raises(ConfigError, match="expected a date"):
        for_partition(partitioned, "yesterday")
    plain = load_job_config(make_job())
    assert for_partition(plain, None) is plain
    with pytest.raises(ConfigError, match="no \\{date\\} field"):
        for_partition(plain, "2026-11-20")


def test_list_partitions_reads_storage(make_job: JobFactory, tmp_path: Path) -> None:
    template = partitioned_input(tmp_path / "raw", {"2026-11-21": 3, "2026-11-20": 2})
    (tmp_path / "raw" / "dt=2026-11-22").mkdir()  # an empty folder is no partition
    write_jsonl(tmp_path / "raw" / "dt=2026-11-23" / "_tmp.jsonl", review_rows(1))  # hidden
    write_jsonl(tmp_path / "raw" / "notes" / "x.jsonl", review_rows(1))
    config = load_job_config(make_job(input_path=template))
    assert list_partitions(config) == ["2026-11-20", "2026-11-21"]


def test_list_partitions_in_memory_storage(make_job: JobFactory) -> None:
    store = Store("memory://partitions-test/raw")
    for day in ("2026-11-01", "2026-11-03"):
        store.write_bytes(
            f"dt={day}/part-0.jsonl", b'{"review_id": "a", "rating": 1, "text": "t"}\n'
        )
    config = load_job_config(make_job(input_path="memory://partitions-test/raw/dt={date}/*.jsonl"))
    assert list_partitions(config) == ["2026-11-01", "2026-11-03"]


def run_partition(config_path: Path, partition: str, *overrides: str) -> None:
    cfg = for_partition(load_job_config(config_path, list(overrides)), partition)
    summary = asyncio.run(run_job(Job.prepare(cfg, where=str(config_path))))
    assert summary.complete, summary.message


def test_committed_state_lives_with_the_output(
    sim: ThreadedSimulator, make_job: JobFactory, tmp_path: Path
) -> None:
    template = partitioned_input(tmp_path / "raw", {"2026-11-20": 4, "2026-11-21": 5})
    path = make_job(input_path=template, output_path=str(tmp_path / "out"))
    config = load_job_config(path)

    def states() -> list[str]:
        return pending([partition_state(config, d) for d in list_partitions(config)])

    assert states() == ["2026-11-20", "2026-11-21"]
    run_partition(path, "2026-11-20")
    done = partition_state(config, "2026-11-20")
    assert done.committed and done.rows == 4
    assert done.output_url == str(tmp_path / "out" / "dt=2026-11-20")
    assert states() == ["2026-11-21"]

    # An edited prompt: nothing is committed under the new config, the old one still is.
    edited = load_job_config(path, ["prompt.system=Label the review in one word."])
    assert not partition_state(edited, "2026-11-20").committed
    assert partition_state(config, "2026-11-20").committed

    # A file that lands late in a committed partition makes it pending again.
    late = [{"review_id": f"late-{i}", "rating": 2, "text": f"Late review {i}."} for i in (1, 2)]
    write_jsonl(tmp_path / "raw" / "dt=2026-11-20" / "part-1.jsonl", late)
    assert states() == ["2026-11-20", "2026-11-21"]
    requests = sim.stats.requests
    run_partition(path, "2026-11-20")
    assert sim.stats.requests == requests + 2  # only the late rows
    assert partition_state(config, "2026-11-20").rows == 6


def test_the_command_line_runs_and_lists_partitions(
    sim: ThreadedSimulator, make_job: JobFactory, tmp_path: Path
) -> None:
    template = partitioned_input(tmp_path / "raw", {"2026-11-20": 3, "2026-11-21": 2})
    path = str(make_job(input_path=template, output_path=str(tmp_path / "out")))

    def enrich(*args: str) -> subprocess.CompletedProcess[str]:
        return run_enrich(*args, env={"COLUMNS": "200"})  # a table wide enough to read

    unnamed = enrich("run", path, "--direct")
    assert unnamed.returncode == 2 and "name a partition" in unnamed.stderr
    done = enrich("run", path, "--direct", "--partition", "2026-11-20")
    assert done.returncode == 0, done.stderr
    assert sim.stats.requests == 3
    listed = enrich("partitions", path).stdout
    assert "2026-11-20 │ committed │ 3" in listed and "2026-11-21 │ pending" in listed
