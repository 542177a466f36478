"""Input discovery and reading: Parquet, JSONL, gzipped JSONL, globs, slices and errors."""

from __future__ import annotations

import gzip
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support import jsonl_bytes

from enrich import storage
from enrich.config.schema import InputSpec
from enrich.errors import InputChanged, InputError, StorageError
from enrich.inputs import (
    InputReader,
    SourceFile,
    discover,
    format_of,
    kept_columns,
    needed_columns,
    reader_for,
)
from enrich.inputs.jsonl import JsonlReader
from enrich.inputs.parquet import ParquetReader

ROWS = [{"id": f"r-{i:03d}", "n": i, "text": f"row {i}", "score": i / 2} for i in range(23)]


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def write_parquet(path: Path, rows: list[dict[str, Any]], row_group_size: int = 5) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=row_group_size)
    return path


def only(spec: InputSpec) -> SourceFile:
    [source] = discover(spec)
    return source


def unsurveyed(path: Path, rows: int) -> SourceFile:
    """A JSONL source built by hand, as if planned: never surveyed, not pinned."""
    return SourceFile(str(path), path.name, "jsonl", path.stat().st_size, "", rows)


def read_slices(
    source: SourceFile,
    spec: InputSpec,
    bounds: list[tuple[int, int]],
    columns: list[str] | None,
) -> Iterator[tuple[tuple[int, int], pa.Table]]:
    return reader_for(source, spec).read_slices(bounds, columns)


def schema_columns(source: SourceFile, spec: InputSpec) -> list[str]:
    return reader_for(source, spec).schema_columns()


def read_all(source: SourceFile, spec: InputSpec, bounds: list[tuple[int, int]]) -> list[Any]:
    return [(b, t.to_pylist()) for b, t in read_slices(source, spec, bounds, None)]


@pytest.fixture
def memory_root() -> Iterator[str]:
    root = f"memory://test-{uuid.uuid4().hex}"
    yield root
    store = storage.Store(root)
    store.delete(store.keys(""))


@pytest.fixture(params=["parquet", "jsonl", "jsonl.gz"])
def any_file(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """The ROWS dataset in each supported format."""
    kind = request.param
    if kind == "parquet":
        return write_parquet(tmp_path / "in.parquet", ROWS)
    data = jsonl_bytes(ROWS)
    if kind == "jsonl.gz":
        return write(tmp_path / "in.jsonl.gz", gzip.compress(data))
    # blank lines are not rows
    return write(tmp_path / "in.jsonl", b"\n" + data.replace(b"\n", b"\n \n", 3) + b"\n\n")


# -- discover ---------------------------------------------------------------------------------


def test_discover_one_file(any_file: Path) -> None:
    source = only(InputSpec(path=str(any_file)))
    assert source.url == str(any_file)
    assert source.key == any_file.name
    assert source.num_rows == len(ROWS)
    assert source.size == any_file.stat().st_size
    assert source.format == ("parquet" if any_file.suffix == ".parquet" else "jsonl")
    assert source.compression == ("gzip" if any_file.suffix == ".gz" else None)


def test_discover_glob_sorts_and_keys_relative_to_the_fixed_prefix(tmp_path: Path) -> None:
    write(tmp_path / "in" / "b.jsonl", jsonl_bytes(ROWS[:2]))
    write_parquet(tmp_path / "in" / "a.pq", ROWS[:3])
    write(tmp_path / "in" / "sub" / "c.ndjson.gz", gzip.compress(jsonl_bytes(ROWS[:4])))
    write(tmp_path / "in" / "_SUCCESS", b"")
    found = discover(InputSpec(path=f"{tmp_path}/in/**"))
    assert [(s.key, s.format, s.compression, s.num_rows) for s in found] == [
        ("a.pq", "parquet", None, 3),
        ("b.jsonl", "jsonl", None, 2),
        ("sub/c.ndjson.gz", "jsonl", "gzip", 4),
    ]
    by_dir = discover(InputSpec(path=f"{tmp_path}/in"))
    assert [s.key for s in by_dir] == [s.key for s in found]


def test_discover_relative_glob(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "data" / "x.jsonl", jsonl_bytes(ROWS[:1]))
    monkeypatch.chdir(tmp_path)
    [source] = discover(InputSpec(path="data/*.jsonl"))
    assert source.key == "x.jsonl"
    assert source.url == str(tmp_path / "data" / "x.jsonl")


def test_discover_memory_urls(memory_root: str) -> None:
    store = storage.Store(memory_root)
    store.write_bytes("in/2024/a.jsonl", jsonl_bytes(ROWS[:2]))
    store.write_bytes("in/2025/b.jsonl", jsonl_bytes(ROWS[:5]))
    spec = InputSpec(path=f"{memory_root}/in/*/*.jsonl")
    found = discover(spec)
    assert [(s.key, s.num_rows) for s in found] == [("2024/a.jsonl", 2), ("2025/b.jsonl", 5)]
    [(_, table)] = read_slices(found[1], spec, [(1, 3)], ["id"])
    assert table.column("id").to_pylist() == ["r-001", "r-002"]


def test_format_setting_overrides_the_extension(tmp_path: Path) -> None:
    path = write(tmp_path / "rows.txt", jsonl_bytes(ROWS[:3]))
    assert only(InputSpec(path=str(path), format="jsonl")).num_rows == 3


def test_empty_files_are_kept_when_others_have_rows(tmp_path: Path) -> None:
    write(tmp_path / "a.jsonl", b"")
    write(tmp_path / "b.jsonl", jsonl_bytes(ROWS[:1]))
    assert [s.num_rows for s in discover(InputSpec(path=f"{tmp_path}/*.jsonl"))] == [0, 1]


@pytest.mark.parametrize(
    ("name", "setting", "expected"),
    [
        ("a.parquet", None, ("parquet", None)),
        ("s3://b/k/A.PQ", None, ("parquet", None)),
        ("a.jsonl", None, ("jsonl", None)),
        ("a.ndjson", None, ("jsonl", None)),
        ("a.json", None, ("jsonl", None)),
        ("a.jsonl.gz", None, ("jsonl", "gzip")),
        ("a.ndjson.gz", None, ("jsonl", "gzip")),
        ("a.json.gz", None, ("jsonl", "gzip")),
        ("rows.txt", "jsonl", ("jsonl", None)),
        ("rows.txt.gz", "jsonl", ("jsonl", "gzip")),
        ("a.jsonl", "parquet", ("parquet", None)),
    ],
)
def test_format_of(name: str, setting: str | None, expected: tuple[str, str | None]) -> None:
    assert format_of(name, InputSpec(path="in", format=setting)) == expected


@pytest.mark.parametrize("name", ["x.csv", "x.gz", "x", "x.parquet.bak"])
def test_format_of_an_unknown_extension_is_named(name: str) -> None:
    with pytest.raises(InputError) as info:
        format_of(f"/in/{name}", InputSpec(path="in"))
    assert str(info.value).startswith(f"/in/{name}: unknown file extension (expected one of ")
    assert str(info.value).endswith(", or set input.format)")


@pytest.mark.parametrize(("fmt", "reader"), [("parquet", ParquetReader), ("jsonl", JsonlReader)])
def test_reader_for_each_format(fmt: Any, reader: type[InputReader]) -> None:
    source = SourceFile(f"in.{fmt}", f"in.{fmt}", fmt, 0, "", 0)
    chosen = reader_for(source, InputSpec(path="in"))
    assert type(chosen) is reader and chosen.format == fmt and chosen.source is source


# -- schema and columns -----------------------------------------------------------------------


def test_schema_columns(any_file: Path) -> None:
    spec = InputSpec(path=str(any_file))
    assert schema_columns(only(spec), spec) == ["id", "n", "text", "score"]


def test_jsonl_schema_is_the_union_of_keys_in_first_seen_order(tmp_path: Path) -> None:
    path = write(tmp_path / "x.jsonl", b'{"a": 1}\n{"c": 2, "a": 3}\n{"b": null}\n')
    spec = InputSpec(path=str(path))
    assert schema_columns(only(spec), spec) == ["a", "c", "b"]


@pytest.mark.parametrize(
    ("columns", "id_column", "extra", "kept", "needed"),
    [
        (None, None, [], ["id", "n", "text"], ["id", "n", "text"]),
        (["text"], None, [], ["text"], ["text"]),
        (["text"], "id", ["n"], ["text"], ["id", "n", "text"]),
        (["n", "id"], None, ["text"], ["n", "id"], ["id", "n", "text"]),
    ],
)
def test_kept_and_needed_columns(
    columns: list[str] | None,
    id_column: str | None,
    extra: list[str],
    kept: list[str],
    needed: list[str],
) -> None:
    spec = InputSpec(path="x.jsonl", columns=columns, id_column=id_column)
    available = ["id", "n", "text"]
    assert kept_columns(available, spec) == kept
    assert needed_columns(available, spec, extra) == needed


@pytest.mark.parametrize(
    ("columns", "id_column", "extra", "message"),
    [
        (["txt"], None, [], "x.jsonl: input.columns lists column 'txt' that the input does not"),
        (None, "key", [], "x.jsonl: input.id_column names column 'key' that the input does not"),
        (None, None, ["body"], "x.jsonl: the prompt uses column 'body' that the input does not"),
    ],
)
def test_missing_columns_are_named(
    columns: list[str] | None, id_column: str | None, extra: list[str], message: str
) -> None:
    spec = InputSpec(path="x.jsonl", columns=columns, id_column=id_column)
    with pytest.raises(InputError) as info:
        needed_columns(["id", "n", "text"], spec, extra)
    assert str(info.value) == f"{message} have (has: id, n, text)"


# -- read_slices ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bounds",
    [
        [(0, 23)],
        [(0, 5), (5, 10), (10, 15), (15, 20), (20, 23)],
        [(0, 7), (7, 16), (16, 23)],
        [(2, 3), (9, 9), (11, 19), (22, 23)],
        [(6, 9)],
        [],
    ],
)
def test_read_slices_returns_exactly_the_requested_rows(
    any_file: Path, bounds: list[tuple[int, int]]
) -> None:
    spec = InputSpec(path=str(any_file))
    got = read_all(only(spec), spec, bounds)
    assert got == [((a, b), ROWS[a:b]) for a, b in bounds]


def test_slices_concatenate_to_the_whole_file_with_one_schema(any_file: Path) -> None:
    spec = InputSpec(path=str(any_file))
    bounds = [(i, min(i + 4, 23)) for i in range(0, 23, 4)]
    tables = [t for _, t in read_slices(only(spec), spec, bounds, None)]
    assert len({t.schema for t in tables}) == 1
    assert pa.concat_tables(tables).to_pylist() == ROWS


@pytest.mark.parametrize("columns", [["text"], ["score", "id"], []])
def test_read_slices_selects_columns_in_the_given_order(any_file: Path, columns: list[str]) -> None:
    spec = InputSpec(path=str(any_file))
    [(_, table)] = read_slices(only(spec), spec, [(3, 8)], columns)
    assert table.column_names == columns
    assert table.num_rows == 5
    assert table.to_pylist() == [{c: r[c] for c in columns} for r in ROWS[3:8]]


def test_jsonl_types_are_inferred_once_per_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("enrich.inputs.jsonl.SAMPLE_ROWS", 3)
    rows: list[dict[str, Any]] = [
        {"i": 1, "f": 1, "b": True, "s": "x", "mixed": 1, "nested": {"k": [1]}, "empty": None},
        {"i": 2, "f": 2.5, "b": False, "s": None, "mixed": "y", "nested": [1, 2]},
        {"i": None, "f": 3, "b": None, "s": "z", "mixed": None, "nested": None},
        {"i": 4, "f": 4, "b": True, "s": "w", "mixed": 2.5, "nested": "t", "empty": 7, "late": 1},
    ]
    spec = InputSpec(path=str(write(tmp_path / "t.jsonl", jsonl_bytes(rows))))
    source = only(spec)
    tables = [t for _, t in read_slices(source, spec, [(0, 2), (2, 4)], None)]
    assert tables[0].schema == tables[1].schema
    assert dict(zip(tables[0].column_names, map(str, tables[0].schema.types), strict=True)) == {
        "i": "int64",
        "f": "double",
        "b": "bool",
        "s": "string",
        "mixed": "string",
        "nested": "string",
        "empty": "string",
    }
    assert pa.concat_tables(tables).to_pydict() == {
        "i": [1, 2, None, 4],
        "f": [1.0, 2.5, 3.0, 4.0],
        "b": [True, False, None, True],
        "s": ["x", None, "z", "w"],
        "mixed": ["1", "y", None, "2.5"],
        "nested": ['{"k":[1]}', "[1,2]", None, "t"],
        "empty": [None, None, None, "7"],
    }


def test_reading_is_lazy_slice_by_slice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("enrich.inputs.jsonl.SAMPLE_ROWS", 2)
    data = jsonl_bytes(ROWS[:5]) + b"{broken\n" + jsonl_bytes(ROWS[5:])
    path = write(tmp_path / "x.jsonl", data)
    spec = InputSpec(path=str(path))
    slices = read_slices(unsurveyed(path, 24), spec, [(0, 5), (5, 7)], ["id"])
    (bounds, first) = next(slices)
    assert bounds == (0, 5)
    assert first.num_rows == 5
    with pytest.raises(InputError, match=r"x\.jsonl:6: malformed JSON"):
        next(slices)


def test_unrequested_rows_are_not_parsed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("enrich.inputs.jsonl.SAMPLE_ROWS", 2)
    data = jsonl_bytes(ROWS[:4]) + b"{broken\n" + jsonl_bytes(ROWS[5:])
    path = write(tmp_path / "x.jsonl", data)
    spec = InputSpec(path=str(path))
    got = read_all(unsurveyed(path, 23), spec, [(1, 3), (6, 8)])
    assert got == [((1, 3), ROWS[1:3]), ((6, 8), ROWS[6:8])]


@pytest.mark.parametrize("bounds", [[(0, 24)], [(5, 3)], [(4, 8), (6, 9)], [(-1, 2)]])
def test_bad_bounds_are_rejected_up_front(any_file: Path, bounds: list[tuple[int, int]]) -> None:
    spec = InputSpec(path=str(any_file))
    with pytest.raises(ValueError, match="row ranges must be sorted"):
        read_slices(only(spec), spec, bounds, None)


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("x.jsonl", b'{"a": 1}\n\n{"a": 2,}\n', r"x\.jsonl:3: malformed JSON \(.+\)$"),
        ("x.jsonl", b'{"a": 1}\n{"a": "caf\xe9"}\n', r"x\.jsonl:2: not valid UTF-8 \(byte 0xe9 "),
        ("x.jsonl", b'{"a": 1}\n[1, 2]\n', r"x\.jsonl:2: expected a JSON object, got list$"),
        ("x.jsonl", b'"text"\n', r"x\.jsonl:1: expected a JSON object, got str$"),
        ("x.jsonl.gz", b"not gzip at all\n", r"x\.jsonl\.gz:1: cannot decompress"),
        ("x.jsonl", b'{"a": 1}\n{"a": "two"}\n', r"x\.jsonl:2: column 'a' holds str 'two' where"),
    ],
)
def test_bad_jsonl_rows_name_file_and_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, data: bytes, message: str
) -> None:
    monkeypatch.setattr("enrich.inputs.jsonl.SAMPLE_ROWS", 1)
    path = write(tmp_path / name, data)
    spec = InputSpec(path=str(path))
    source = SourceFile(str(path), name, "jsonl", len(data), "", 2, format_of(name, spec)[1])
    with pytest.raises(InputError, match=message) as info:
        list(read_slices(source, spec, [(0, 1), (1, 2)], None))
    assert str(info.value).startswith(str(path))


def test_bom_at_the_start_is_ignored(tmp_path: Path) -> None:
    spec = InputSpec(path=str(write(tmp_path / "x.jsonl", b'\xef\xbb\xbf{"a": 1}\n')))
    assert read_all(only(spec), spec, [(0, 1)]) == [((0, 1), [{"a": 1}])]


def test_file_that_shrank_since_planning(tmp_path: Path) -> None:
    path = write(tmp_path / "x.jsonl", jsonl_bytes(ROWS))
    spec = InputSpec(path=str(path))
    source = only(spec)
    write(path, jsonl_bytes(ROWS[:10]))
    size = path.stat().st_size
    with pytest.raises(InputChanged) as info:
        list(read_slices(source, spec, [(5, 12)], None))
    assert str(info.value) == (
        f"{path}: input changed since planning (size {source.size} -> {size}); rerun to plan again"
    )


def test_an_unpinned_file_that_shrank_is_still_caught(tmp_path: Path) -> None:
    path = write(tmp_path / "x.jsonl", jsonl_bytes(ROWS))
    source = unsurveyed(path, 23)
    write(path, jsonl_bytes(ROWS[:10]))
    with pytest.raises(InputError, match=r"x\.jsonl: has fewer rows than the 23"):
        list(read_slices(source, InputSpec(path=str(path)), [(5, 12)], None))


@pytest.mark.parametrize(
    ("setup", "path", "error", "message"),
    [
        ({}, "missing.jsonl", StorageError, r"missing\.jsonl: not found$"),
        ({}, "*.parquet", InputError, r"\*\.parquet: no input files match$"),
        ({"x.csv": b"a,b\n"}, "x.csv", InputError, r"x\.csv: unknown file extension"),
        ({"x.parquet": b"PAR1 definitely not"}, "x.parquet", InputError, "not a readable Parquet"),
        ({"x.jsonl": b""}, "x.jsonl", InputError, r"x\.jsonl: the input is empty"),
        ({"x.jsonl": b"\n \n"}, "x.jsonl", InputError, r"x\.jsonl: the input is empty"),
        ({"a.jsonl": b"", "b.pq": b""}, "*", InputError, "not a readable Parquet"),
        ({"a.jsonl": b"", "b.jsonl": b"\n"}, "*", InputError, r"\*: the input is empty"),
    ],
)
def test_discover_errors_name_the_object(
    tmp_path: Path, setup: dict[str, bytes], path: str, error: type[Exception], message: str
) -> None:
    for name, data in setup.items():
        write(tmp_path / name, data)
    with pytest.raises(error, match=message) as info:
        discover(InputSpec(path=f"{tmp_path}/{path}"))
    assert str(info.value).startswith(str(tmp_path))
    assert "\n" not in str(info.value)


def test_empty_parquet_is_empty_input(tmp_path: Path) -> None:
    path = tmp_path / "x.parquet"
    pq.write_table(pa.table({"a": pa.array([], pa.int64())}), path)
    with pytest.raises(InputError, match="the input is empty"):
        discover(InputSpec(path=str(path)))


def test_truncated_parquet_is_named(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "x.parquet", ROWS)
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(InputError, match=r"x\.parquet: not a readable Parquet file \(.+\)$"):
        discover(InputSpec(path=str(path)))


def test_reading_a_missing_column_is_named(any_file: Path) -> None:
    spec = InputSpec(path=str(any_file))
    with pytest.raises(InputError, match=r"reading column 'nope' that the input does not have"):
        list(read_slices(only(spec), spec, [(0, 1)], ["id", "nope"]))
