"""The commit protocol and the run lease, on local disk and on S3.

Readers trust the manifest only: while a run goes they see the previous dataset whole, or none,
never a partial one. A second run of the same output refuses while the first holds the lease.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from support import (
    JobFactory,
    Location,
    answer,
    eventually,
    job_on,
    job_reading,
    jsonl_bytes,
    prepare_job,
    review_rows,
    run_config,
    run_enrich,
    simulator,
    until,
)
from typer.testing import CliRunner

from enrich.cli import app
from enrich.completer import Completion, CompletionRequest, FakeCompleter
from enrich.errors import StorageError
from enrich.lease import (
    LEASE,
    Lease,
    LeaseHeld,
    read_lease,
)
from enrich.output.reader import output_status, read_dataset
from enrich.output.records import MANIFEST_FORMAT, NewerFormat
from enrich.run import run_job
from enrich.sim.harness import ThreadedSimulator
from enrich.storage import Store
from enrich.summary import JobSummary

# Small chunks, a few in flight: a run takes long enough for readers and rivals to see it.
CHUNKS = {"rows_per_chunk": 10, "max_concurrency": 8, "chunks_in_flight": 2}
NEW_PROMPT = ["prompt.template=Stars {rating}: {text}"]


@pytest.fixture
def slow_sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[ThreadedSimulator]:
    with simulator(monkeypatch, ttft=0.02, tokens_per_second=800) as server:
        yield server


def job_config(make_job: JobFactory, place: Location, rows: int) -> Path:
    """A job of ``rows`` reviews in small chunks, all of it under ``place``."""
    return job_on(place, make_job, review_rows(rows), execution=CHUNKS)


class Reader:
    """Reads the dataset over and over from a thread, as another process would."""

    def __init__(self, place: Location) -> None:
        self._place = place
        self.seen: list[frozenset[str] | str | None] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                table = read_dataset(self._place.url("out"), self._place.storage_options)
            except StorageError as exc:
                # Anything but "nothing committed yet" lands in ``seen`` and fails the test.
                self.seen.append(None if "no committed dataset" in str(exc) else str(exc))
            else:
                self.seen.append(frozenset(table.column("request_hash").to_pylist()))
            time.sleep(0.005)

    def wait_to_see(self, value: frozenset[str]) -> None:
        """Wait until a read sees ``value`` (the run has returned; its commit is visible)."""
        seen = self.seen
        until(lambda: bool(seen) and seen[-1] == value, message="the commit never became visible")

    def __enter__(self) -> Reader:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def committed_hashes(place: Location) -> frozenset[str]:
    table = read_dataset(place.url("out"), place.storage_options)
    assert table.num_rows == len(set(table.column("row_id").to_pylist()))
    return frozenset(table.column("request_hash").to_pylist())


def committed_job(make_job: JobFactory, place: Location, rows: int) -> tuple[Path, Store]:
    """A job of ``rows`` reviews run to its commit: its config, and its output's store."""
    config = job_config(make_job, place, rows)
    assert run_config(config).summary.complete
    return config, place.store("out")


def rerun_sends_nothing(config: Path, sim: ThreadedSimulator) -> None:
    """Run a committed job again: it finds its dataset committed and sends no request."""
    sim.reset()
    summary = run_config(config).summary
    assert summary.complete and summary.message == "already committed; nothing to do"
    assert sim.stats.requests == 0


def test_a_reader_never_sees_a_partial_dataset(
    place: Location, slow_sim: ThreadedSimulator, make_job: JobFactory
) -> None:
    config = job_config(make_job, place, 60)
    with Reader(place) as reader:
        assert run_config(config).summary.complete
        final = committed_hashes(place)
        reader.wait_to_see(final)
    assert len(final) == 60
    assert set(reader.seen) == {None, final}  # nothing, then everything
    assert reader.seen[0] is None and reader.seen[-1] == final

    # A new prompt on the same output: the old dataset stays whole until the new one replaces it.
    with Reader(place) as reader:
        assert run_config(config, NEW_PROMPT).summary.complete
        new = committed_hashes(place)
        reader.wait_to_see(new)
    assert len(new) == 60 and not new & final
    assert set(reader.seen) == {final, new}
    assert reader.seen[0] == final and reader.seen[-1] == new


def test_a_second_run_is_refused_while_the_first_runs(
    place: Location, make_job: JobFactory
) -> None:
    config = job_config(make_job, place, 80)
    first, second = prepare_job(config), prepare_job(config)
    refused_yet = asyncio.Event()

    async def held_until_refused(request: CompletionRequest) -> Completion:
        await refused_yet.wait()  # the first run stays mid-flight, whatever the machine's load
        return answer(request)

    first_api = FakeCompleter(held_until_refused)
    second_api = FakeCompleter(answer)

    async def both() -> tuple[JobSummary, BaseException | None]:
        running = asyncio.ensure_future(run_job(first, completer=first_api))
        await eventually(lambda: bool(first_api.requests), message="the first run sent nothing")
        refused: BaseException | None = None
        try:
            await run_job(second, completer=second_api)
        except LeaseHeld as exc:
            refused = exc
        finally:
            refused_yet.set()
        return await running, refused

    summary, refused = asyncio.run(both())
    assert isinstance(refused, LeaseHeld)
    message = str(refused)
    assert message.startswith(f"{place.url('out')}: another run is writing here (job ")
    assert f"host {socket.gethostname()}, pid {os.getpid()}" in message and "\n" not in message
    assert summary.complete
    assert len(committed_hashes(place)) == 80
    assert (len(first_api.requests), second_api.requests) == (80, [])  # the refused sent nothing
    assert read_lease(place.store("out")) is None  # released at the end


def test_enrich_run_exits_nonzero_while_another_run_holds_the_lease(
    sim: ThreadedSimulator, make_job: JobFactory, tmp_path: Path
) -> None:
    place = Location("file", f"file://{tmp_path}/store", {})
    config = job_config(make_job, place, 5)
    holder = Lease(place.store("out"), job="job", ttl_s=60)
    holder.acquire()  # a live run of the same job: this process
    done = run_enrich("run", str(config), "--direct")  # the sim fixture points the SDK at it
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "another run is writing here (job job" in lines[0], lines
    assert sim.stats.requests == 0
    assert place.store("out").keys("") == [LEASE]
    holder.release()
    assert CliRunner().invoke(app, ["run", str(config), "--direct"]).exit_code == 0


def test_a_finished_job_rerun_reads_only(
    place: Location, sim: ThreadedSimulator, make_job: JobFactory
) -> None:
    config, store = committed_job(make_job, place, 20)
    before = {k: store.read_bytes(k) for k in store.keys("")}
    # Even with another run's lease in place: a finished job takes no lease and writes nothing.
    Lease(store, job="job", ttl_s=60).acquire()
    rerun_sends_nothing(config, sim)
    after = {k: store.read_bytes(k) for k in store.keys("") if k != LEASE}
    assert after == before


def test_new_input_files_are_committed_on_rerun(
    location: Location, sim: ThreadedSimulator, make_job: JobFactory
) -> None:
    """Same fingerprint, more input: the committed dataset is not "already committed"."""
    rows = review_rows(30)
    location.put("in/a.jsonl", jsonl_bytes(rows[:20]))
    config = job_reading(location, make_job, location.url("in/*.jsonl"))
    assert run_config(config).summary.complete
    location.put("in/b.jsonl", jsonl_bytes(rows[20:]))
    sim.reset()
    assert run_config(config).summary.complete
    assert sim.stats.requests == 10
    assert read_dataset(location.url("out"), location.storage_options).num_rows == 30


def test_an_output_written_before_format_versions_reads_as_version_1(
    place: Location, sim: ThreadedSimulator, make_job: JobFactory
) -> None:
    """Records without ``format_version`` (every output written so far) keep their meaning."""
    config, store = committed_job(make_job, place, 20)
    records = [k for k in store.keys("") if k.endswith(".json") and k != LEASE]
    assert {"_manifest.json", "_plan.json", "_chunks"} <= {k.split("/")[0] for k in records}
    for key in records:
        data = orjson.loads(store.read_bytes(key))
        assert data.pop("format_version") == 1
        store.write_bytes(key, orjson.dumps(data))
    status = output_status(place.url("out"), place.storage_options)
    assert status.complete and status.manifest_rows == 20 and status.committed_chunks == 2
    assert read_dataset(place.url("out"), place.storage_options).num_rows == 20
    rerun_sends_nothing(config, sim)


def test_an_output_from_a_newer_version_is_left_alone(
    sim: ThreadedSimulator, make_job: JobFactory, tmp_path: Path
) -> None:
    place = Location("file", f"file://{tmp_path}/store", {})
    config, store = committed_job(make_job, place, 5)
    newer = MANIFEST_FORMAT + 1
    manifest = {**orjson.loads(store.read_bytes("_manifest.json")), "format_version": newer}
    store.write_bytes("_manifest.json", orjson.dumps(manifest))
    before = {k: store.read_bytes(k) for k in store.keys("")}
    line = (
        f"{place.url('out')}/_manifest.json: written by a newer cerebras-enrich "
        f"(format {newer}, this one reads up to {MANIFEST_FORMAT}); upgrade"
    )
    with pytest.raises(NewerFormat) as raised:
        run_config(config, NEW_PROMPT)
    assert str(raised.value) == line
    for command in (["run", str(config), "--direct"], ["status", place.url("out")]):
        result = CliRunner().invoke(app, command)
        assert result.exit_code != 0 and line in " ".join(result.output.split()), result.output
    with pytest.raises(NewerFormat):
        read_dataset(place.url("out"))
    assert {k: store.read_bytes(k) for k in store.keys("")} == before
    assert sim.stats.requests == 5  # the first run only


def test_status_of_an_s3_output_from_the_command_line(
    s3: Location, sim: ThreadedSimulator, make_job: JobFactory
) -> None:
    endpoint = s3.storage_options["endpoint_url"]
    config = job_config(make_job, s3, 25)
    job = prepare_job(config)
    job.write_plan()
    holder = Lease(job.store, job="reviews", ttl_s=60)
    holder.acquire()
    command = ["status", s3.url("out"), "--storage-option", f"endpoint_url={endpoint}"]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    assert f"{s3.url('out')}: incomplete (job job)" in result.output
    assert "0/3 chunks, 0/25 rows committed, 3 chunks pending" in result.output
    assert "running: job reviews, host" in result.output
    holder.release()
    assert asyncio.run(run_job(job)).complete
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    assert f"{s3.url('out')}: complete (job job)" in result.output
    assert "committed dataset (manifest): 25 rows" in result.output
    assert "running" not in result.output
