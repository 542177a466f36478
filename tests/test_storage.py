"""Storage on every backend, and bad storage input: one clear error, nothing half-committed.

Object storage is real: a moto S3 server on 127.0.0.1 (and, for denied credentials, a second
one that checks signatures against its own IAM users).
"""

from __future__ import annotations

import io
import logging
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support import (
    JobFactory,
    Location,
    MotoServer,
    answer,
    job_on,
    job_reading,
    jsonl_bytes,
    review_rows,
    run_config,
)

from enrich.completer import FakeCompleter
from enrich.errors import EnrichError, InputError, StorageError
from enrich.inputs.jsonl import SAMPLE_ROWS
from enrich.output.reader import output_status, read_dataset
from enrich.sim.harness import ThreadedSimulator
from enrich.storage import Store, Versioned, list_inputs, redact_secrets
from enrich.storage.cas import (
    CheckedCAS,
    CompareAndSwap,
    ConditionalPutCAS,
    LocalLockCAS,
    ProcessLockCAS,
    cas_for,
)

# -- the Store on every backend ------------------------------------------------------------------


def test_store_round_trip(location: Location) -> None:
    store = location.store("root")
    assert store.keys("") == [] and not store.exists("a/b.bin")
    store.write_bytes("a/b.bin", b"one")
    store.write_bytes("a/c/d.bin", b"two")
    store.write_bytes("e.bin", b"")
    assert store.read_bytes("a/b.bin") == b"one"
    assert store.exists("a/b.bin")
    assert store.keys("") == ["a/b.bin", "a/c/d.bin", "e.bin"]
    assert store.keys("a") == ["a/b.bin", "a/c/d.bin"]
    assert store.keys("missing") == []
    store.delete(["a/b.bin", "e.bin"])
    assert store.keys("") == ["a/c/d.bin"]
    with pytest.raises(StorageError, match=r"/root/a/b\.bin: not found"):
        store.read_bytes("a/b.bin")


@pytest.mark.parametrize(
    ("steps", "final"),
    [
        ([("create", b"1", True), ("create", b"2", False)], b"1"),
        ([("create", b"1", True), ("replace", b"2", True)], b"2"),
        ([("create", b"1", True), ("stale", b"2", False)], b"1"),
        ([("create", b"1", True), ("replace", b"2", True), ("replace", b"3", True)], b"3"),
    ],
)
def test_swap_is_compare_and_swap(
    location: Location, steps: list[tuple[str, bytes, bool]], final: bytes
) -> None:
    store = location.store()
    version: str | None = None
    stale: str | None = None
    for op, data, ok in steps:
        expected = None if op == "create" else (stale if op == "stale" else version)
        new = store.swap("lease.json", data, expected)
        assert (new is not None) == ok, (op, data)
        if new is not None:
            stale, version = "not-the-version", new
    current = store.read_versioned("lease.json")
    assert current is not None and current.data == final and current.version == version
    assert not store.delete_if("lease.json", "not-the-version")
    assert store.delete_if("lease.json", current.version)
    assert store.read_versioned("lease.json") is None


@pytest.mark.parametrize(
    ("protocol", "cas"),
    [
        ("file", LocalLockCAS),
        ("local", LocalLockCAS),
        ("memory", ProcessLockCAS),
        ("s3", ConditionalPutCAS),
        ("gcs", CheckedCAS),
        ("abfs", CheckedCAS),
    ],
)
def test_cas_for_each_protocol(protocol: str, cas: Callable[[Any], CompareAndSwap]) -> None:
    assert cas_for(protocol) is cas


@pytest.mark.parametrize(
    ("cas", "protocol"),
    [
        (LocalLockCAS, "file"),
        (CheckedCAS, "file"),
        (ProcessLockCAS, "memory"),
        (CheckedCAS, "memory"),
    ],
)
def test_each_cas_without_a_store(
    cas: Callable[[Any], CompareAndSwap], protocol: str, tmp_path: Path
) -> None:
    """Every backend's compare-and-swap, including the one no protocol picks by default."""
    fs = fsspec.filesystem(protocol)
    path = f"{tmp_path}/lease.json" if protocol == "file" else f"/cas-{uuid.uuid4().hex}/l.json"
    swap = cas(fs)
    assert swap.read(path) is None
    assert swap.delete_if(path, "any") is False
    first = swap.swap(path, b"1", None)
    assert first is not None
    assert swap.swap(path, b"2", None) is None
    assert swap.swap(path, b"2", "not-the-version") is None
    second = swap.swap(path, b"2", first)
    assert second is not None and second != first
    assert swap.read(path) == Versioned(b"2", second)
    assert swap.delete_if(path, first) is False
    assert swap.delete_if(path, second) is True
    assert swap.read(path) is None


def test_listings_see_writes_by_other_clients(s3: Location, moto_server: MotoServer) -> None:
    """Checkpoint listings must never answer from a cache (another process wrote since)."""
    store = s3.store("out")
    assert store.keys("_chunks") == [] and not store.exists("_SUCCESS")
    bucket = s3.root.removeprefix("s3://")
    moto_server.client().put_object(Bucket=bucket, Key="out/_chunks/c1.json", Body=b"{}")
    moto_server.client().put_object(Bucket=bucket, Key="out/_SUCCESS", Body=b"")
    assert store.keys("_chunks") == ["_chunks/c1.json"]
    assert store.exists("_SUCCESS")


def test_endpoint_from_the_environment(
    s3: Location, moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import s3fs

    s3.put("x/y.jsonl", b'{"a": 1}\n')
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint_url)
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        assert [o.url for o in list_inputs(s3.url("x"))] == [s3.url("x/y.jsonl")]
    finally:
        s3fs.S3FileSystem.clear_instance_cache()


@pytest.mark.parametrize(
    ("text", "options", "expected"),
    [
        ("s3://b/k: denied", {"key": "AKIAEXAMPLE", "secret": "s3cr3t"}, "s3://b/k: denied"),
        ("bad key AKIAEXAMPLE", {"key": "AKIAEXAMPLE"}, "bad key ***"),
        ("sig s3cr3t!", {"client_kwargs": {"aws_secret_access_key": "s3cr3t"}}, "sig ***!"),
        ("t=tok-123", {"token": "tok-123"}, "t=***"),
        ("https://user:pw@host/x", {}, "https://***@host/x"),
        ("http://127.0.0.1:9000/x", {"endpoint_url": "http://127.0.0.1:9000"}, None),
    ],
)
def test_redact_secrets(text: str, options: dict[str, Any], expected: str | None) -> None:
    assert redact_secrets(text, options) == (text if expected is None else expected)


# -- bad input: a clear error naming the object, nothing sent, nothing written -------------------


def written(location: Location) -> list[str]:
    return location.store("out").keys("")


def parquet(
    rows: list[dict[str, Any]], row_group_size: int | None = None, *, empty: bool = False
) -> bytes:
    table = pa.Table.from_pylist(rows)
    sink = io.BytesIO()
    pq.write_table(table.slice(0, 0) if empty else table, sink, row_group_size=row_group_size)
    return sink.getvalue()


def job_at(make_job: JobFactory, location: Location, source: str) -> Path:
    return job_reading(location, make_job, source, execution={"rows_per_chunk": 400})


def not_ascii(rows: list[dict[str, Any]], line: int) -> bytes:
    lines = jsonl_bytes(rows).splitlines(keepends=True)
    lines[line - 1] = lines[line - 1].replace(b"Review", b"R\xff\xfeview")
    return b"".join(lines)


BAD_INPUTS = {
    "corrupt parquet": (
        "in/reviews.parquet",
        lambda rows: b"PAR1" + b"\x00garbage" * 64,
        InputError,
        r"in/reviews\.parquet: not a readable Parquet file",
    ),
    "truncated parquet": (
        "in/reviews.parquet",
        lambda rows: parquet(rows)[:-100],
        InputError,
        r"in/reviews\.parquet: not a readable Parquet file",
    ),
    "non-UTF-8 JSONL beyond the sampled rows": (
        "in/reviews.jsonl",
        lambda rows: not_ascii(rows, SAMPLE_ROWS + 5),
        InputError,
        rf"in/reviews\.jsonl:{SAMPLE_ROWS + 5}: not valid UTF-8 \(byte 0xff at column \d+\)",
    ),
    "empty JSONL": ("in/reviews.jsonl", lambda rows: b"", InputError, "the input is empty"),
    "blank JSONL": ("in/reviews.jsonl", lambda rows: b"\n \n", InputError, "the input is empty"),
    "parquet with no rows": (
        "in/reviews.parquet",
        lambda rows: parquet(rows[:1], empty=True),
        InputError,
        "the input is empty",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_fails_before_anything_is_sent_and_resumes_once_fixed(
    case: str, place: Location, sim: ThreadedSimulator, make_job: JobFactory
) -> None:
    key, make, error, message = BAD_INPUTS[case]
    rows = review_rows(SAMPLE_ROWS + 10 if "UTF-8" in case else 30)
    source = place.put(key, make(rows))
    config = job_at(make_job, place, source)
    with pytest.raises(error, match=message) as raised:
        run_config(config)
    assert "\n" not in str(raised.value)
    assert source.split("://")[-1] in str(raised.value)  # names the object
    assert sim.stats.requests == 0
    assert written(place) == []
    fixed = parquet(rows) if key.endswith(".parquet") else jsonl_bytes(rows)
    place.put(key, fixed)
    assert run_config(config).summary.complete
    assert read_dataset(place.url("out"), place.storage_options).num_rows == len(rows)


def test_corrupt_row_group_mid_run_commits_nothing_partial(
    place: Location, sim: ThreadedSimulator, make_job: JobFactory
) -> None:
    """A row group that cannot be read stops the run; what is committed is whole chunks."""
    rows = review_rows(60)
    good = parquet(rows, row_group_size=20)
    meta = pq.ParquetFile(io.BytesIO(good)).metadata
    start = meta.row_group(2).column(0).data_page_offset
    bad = good[:start] + b"\xde\xad" * 40 + good[start + 80 :]
    source = place.put("in/reviews.parquet", bad)
    config = job_at(make_job, place, source)
    with pytest.raises(InputError, match=r"in/reviews\.parquet: row group 2 unreadable"):
        run_config(config)
    url, options = place.url("out"), place.storage_options
    status = output_status(url, options)
    assert not status.complete and status.committed_rows < 60 and status.lease is None
    with pytest.raises(StorageError, match="no committed dataset"):
        read_dataset(url, options)
    place.put("in/reviews.parquet", good)
    assert run_config(config).summary.complete
    table = read_dataset(url, options)
    assert sorted(table.column("row_id").to_pylist()) == sorted(r["review_id"] for r in rows)


def test_missing_bucket_for_input_and_output(
    s3: Location, moto_server: MotoServer, sim: ThreadedSimulator, make_job: JobFactory
) -> None:
    options = s3.storage_options
    missing = "s3://no-such-bucket-for-enrich"
    config = make_job(input={"path": f"{missing}/in/reviews.jsonl", "storage_options": options})
    with pytest.raises(StorageError) as raised:
        run_config(config)
    assert str(raised.value) == (
        f"{missing}/in/reviews.jsonl: not found (The specified bucket does not exist)"
    )

    source = s3.put("in/reviews.jsonl", jsonl_bytes(review_rows(12)))
    config = make_job(
        input={"path": source, "storage_options": options},
        output={"path": f"{missing}/out", "storage_options": options},
    )
    with pytest.raises(
        StorageError, match=rf"^{missing}/out/\S+: not found \(The specified bucket"
    ):
        run_config(config)
    assert sim.stats.requests == 0
    moto_server.client().create_bucket(Bucket=missing.removeprefix("s3://"))
    assert run_config(config).summary.complete
    assert read_dataset(f"{missing}/out", options).num_rows == 12


# -- denied credentials: a second S3 server that checks them -----------------------------------

SECRET = "wrong-secret-Zq81vX"


@pytest.fixture(scope="module")
def strict_s3(moto_server: MotoServer) -> Iterator[tuple[MotoServer, dict[str, str]]]:
    """A moto server that authenticates: its first three calls create the one valid key."""
    with MotoServer(env={"INITIAL_NO_AUTH_ACTION_COUNT": "3"}) as server:
        iam = server.client("iam")
        iam.create_user(UserName="enrich")
        key = iam.create_access_key(UserName="enrich")["AccessKey"]
        iam.put_user_policy(
            UserName="enrich",
            PolicyName="all",
            PolicyDocument='{"Version":"2012-10-17","Statement":'
            '[{"Effect":"Allow","Action":"*","Resource":"*"}]}',
        )
        good = {"key": key["AccessKeyId"], "secret": key["SecretAccessKey"]}
        server.client(
            aws_access_key_id=good["key"], aws_secret_access_key=good["secret"]
        ).create_bucket(Bucket="strict-bucket")
        yield server, good


@pytest.mark.parametrize("side", ["input", "output"])
def test_denied_credentials_fail_before_spending_and_resume_once_fixed(
    side: str,
    strict_s3: tuple[MotoServer, dict[str, str]],
    sim: ThreadedSimulator,
    make_job: JobFactory,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server, good = strict_s3
    base = {"endpoint_url": server.endpoint_url}
    valid = {**base, **good}
    denied = {**base, "key": "AKIAUNKNOWNKEY000000", "secret": SECRET}
    prefix = f"s3://strict-bucket/{side}-{tmp_path.name}"
    source = Location("s3", prefix, valid).put("in/reviews.jsonl", jsonl_bytes(review_rows(10)))
    output = f"{prefix}/out"

    def config(options: dict[str, str]) -> Path:
        in_options, out_options = (options, valid) if side == "input" else (valid, options)
        return make_job(
            input={"path": source, "storage_options": in_options},
            output={"path": output, "storage_options": out_options},
        )

    caplog.set_level(logging.DEBUG)
    with pytest.raises(StorageError) as raised:
        run_config(config(denied))
    message = str(raised.value)
    assert message.startswith(source if side == "input" else output)
    # A GET names the reason ("The AWS Access Key Id you provided does not exist in our
    # records."); a HEAD has no body to name it ("Forbidden").
    assert ": access denied (" in message
    assert "AKIAUNKNOWN" not in message and SECRET not in message
    assert SECRET not in caplog.text  # nothing we (or the libraries) log carries the secret
    assert sim.stats.requests == 0
    assert Store(output, valid).keys("") == []

    assert run_config(config(valid)).summary.complete
    assert read_dataset(output, valid).num_rows == 10
    objects = Store(prefix, valid)
    for key in objects.keys(""):
        data = objects.read_bytes(key)
        assert good["secret"].encode() not in data and good["key"].encode() not in data, key
    assert good["secret"] not in caplog.text


def test_every_storage_error_is_an_enrich_error(tmp_path: Path) -> None:
    with pytest.raises(EnrichError, match=r"nope\.jsonl: not found"):
        list_inputs(str(tmp_path / "nope.jsonl"))


# -- durability on local disk --------------------------------------------------------------------


def test_local_writes_are_flushed_before_and_after_their_rename(
    make_job: JobFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each local write syncs its bytes before the rename and its directory after it.

    Without both, a power cut can leave a manifest or record naming an empty file, or lose
    the rename. Spies on the process's own ``fsync`` and ``replace`` calls, in order.
    """
    place = Location("file", f"file://{tmp_path}/store", {})
    config = job_on(place, make_job, review_rows(20), execution={"rows_per_chunk": 10})
    events: list[tuple[str, str]] = []
    fsync, replace = os.fsync, os.replace

    def spy_fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        fsync(fd)

    def spy_replace(src: str, dst: str) -> None:
        events.append(("replace", f"{src} -> {dst}"))
        replace(src, dst)

    monkeypatch.setattr(os, "fsync", spy_fsync)
    monkeypatch.setattr(os, "replace", spy_replace)
    assert run_config(config, completer=FakeCompleter(answer)).summary.complete

    root = f"{tmp_path}/store/out"
    written: set[str] = set()
    for at, (kind, what) in enumerate(events):
        if kind != "replace" or not what.startswith(root):
            continue
        src, dst = what.split(" -> ")
        written.add(dst[len(root) + 1 :])
        assert ("fsync", src) in events[:at], f"{dst} renamed before its bytes were synced"
        assert ("fsync", os.path.dirname(dst)) in events[at:], f"{dst}: directory not synced"
    kinds = {k.split("/")[0] for k in written}
    assert {"parts", "_chunks", "_manifest.json", "_SUCCESS", "_lease.json"} <= kinds, written
    # A directory made for a write is synced into its parent, so the new name cannot vanish.
    part_dir = next(os.path.dirname(f"{root}/{k}") for k in written if k.startswith("parts/"))
    assert ("fsync", os.path.dirname(part_dir)) in events
