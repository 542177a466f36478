"""Per-row results and the output schema.

A :class:`Result` is what one request produced (or how it failed). Results are journaled by
request hash while a chunk runs and joined back onto the input rows when the chunk commits.
The output is the kept input columns, then ``row_id`` and ``request_hash``, then one column
per result field in field order, with the :class:`~enrich.usage.Usage` fields in place of
``usage`` (:func:`added_columns`). Usage columns and their types come from
:mod:`enrich.usage`; nothing here lists them again. A job with an output schema has its typed
columns (:class:`~enrich.structured.OutputSchema`) right after the completion column: they
are derived from it, filled for ``ok`` rows and null for error rows, so results, journals and
the parts read back as results stay the same whatever the schema.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from operator import attrgetter
from typing import Any, Literal

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from enrich.errors import ConfigError
from enrich.structured import OutputSchema
from enrich.usage import NO_USAGE, USAGE_TYPES, Usage

OutputFormat = Literal["parquet", "jsonl"]


@dataclass(slots=True)
class Result:
    """The outcome of one request. ``status`` is ``ok`` or ``error``.

    A row that shares another row's request (same request hash) gets a copy with zero tokens,
    zero cost and zero attempts: it was not paid for again.
    """

    completion: str | None
    finish_reason: str | None = None
    usage: Usage = NO_USAGE
    model: str | None = None
    request_id: str | None = None
    attempts: int = 0
    latency_s: float | None = None
    cost_usd: float = 0.0
    status: str = "ok"
    error: str | None = None
    error_kind: str | None = None
    #: The model's reasoning text (``reasoning_format: parsed``); a column only when kept.
    reasoning: str | None = None

    def shared(self) -> Result:
        """This result as seen by a second row with the same request: nothing paid again."""
        return replace(self, usage=self.usage.shared(), attempts=0, cost_usd=0.0)


_OWN_TYPES: dict[str, pa.DataType] = {
    "completion": pa.string(),
    "finish_reason": pa.string(),
    "model": pa.string(),
    "request_id": pa.string(),
    "attempts": pa.int32(),
    "latency_s": pa.float64(),
    "cost_usd": pa.float64(),
    "status": pa.string(),
    "error": pa.string(),
    "error_kind": pa.string(),
    "reasoning": pa.string(),
}
#: Result fields that are columns of a part only on request (``keep_reasoning``).
OPTIONAL_FIELDS = frozenset({"reasoning"})


def completion_status(content: str, finish_reason: str | None) -> tuple[str, str | None]:
    """``(status, error_kind)`` of a completion the provider returned and billed.

    Only an answer the model finished is ``ok``. ``length`` with no content (a reasoning model
    that spent ``max_completion_tokens`` thinking) is ``empty_length``; ``length`` with content
    is ``truncated`` and ``content_filter`` is ``content_filter``: the partial text is kept in
    the completion column, but the row is an error, not a complete answer. Any other reason
    (``stop``, ``tool_calls``...) is ``ok``, and so is none at all: a server that omits it
    in a body that is otherwise whole (a stream without its last chunk never gets here).
    """
    if finish_reason == "length":
        return "error", "truncated" if content else "empty_length"
    if finish_reason == "content_filter":
        return "error", "content_filter"
    return "ok", None


#: What an error row of each :func:`completion_status` kind says.
COMPLETION_ERRORS: dict[str, str] = {
    "empty_length": "finish_reason length with no content: max_completion_tokens ran out "
    "(reasoning tokens count against it)",
    "truncated": "finish_reason length: the completion was cut at max_completion_tokens",
    "content_filter": "finish_reason content_filter: the provider filtered the completion",
}
#: The kind of a row whose answer was empty again after the one retry with a larger budget.
EMPTY_AFTER_RETRY = "empty_length_after_retry"
#: The kind of a row whose answer did not match its output schema, also after one repair.
INVALID_AFTER_REPAIR = "invalid_output_after_repair"


#: Error kinds that belong to the request itself: asking again gets the same answer, so a rerun
#: reuses them (unless ``--retry-errors``). Any other error row is asked for again.
REQUEST_ERRORS = frozenset(
    {"http_400", "http_413", "http_422", "context_length_exceeded", "invalid_output"}
    | {EMPTY_AFTER_RETRY, INVALID_AFTER_REPAIR}
    | {"context_overflow"}  # never sent: it cannot fit the model's context (enrich.context)
    | COMPLETION_ERRORS.keys()
)


def _joined(first: Result, second: Result) -> Result:
    """``second``'s answer with both requests' tokens, attempts and latency (both were paid)."""
    latencies = [x for x in (first.latency_s, second.latency_s) if x is not None]
    return replace(
        second,
        usage=first.usage.plus(second.usage),
        attempts=first.attempts + second.attempts,
        latency_s=sum(latencies) if latencies else None,
    )


def after_repair(first: Result, repair: Result) -> Result:
    """The one result of an ``invalid_output`` answer and its repair request: the repair's
    answer, both requests' tokens, attempts and latency. Invalid again, it is an error of kind
    :data:`INVALID_AFTER_REPAIR`, which is never repaired again."""
    joined = _joined(first, repair)
    if repair.error_kind == "invalid_output":
        joined.error_kind = INVALID_AFTER_REPAIR
        joined.error = f"also after one repair: {repair.error}"
    return joined


def after_retry(first: Result, retry: Result, budget: int) -> Result:
    """The one result of an ``empty_length`` answer and its retry (with ``budget`` tokens):
    the retry's answer, both requests' tokens, attempts and latency. Empty again, it is an
    error of kind :data:`EMPTY_AFTER_RETRY`, which is never retried again."""
    joined = _joined(first, retry)
    if retry.error_kind == "empty_length":
        joined.error_kind = EMPTY_AFTER_RETRY
        joined.error = (
            "finish_reason length with no content, also after a retry with "
            f"max_completion_tokens {budget}: reasoning used the whole budget"
        )
    return joined


def reusable(result: Result, *, retry_errors: bool = False) -> bool:
    """Whether a rerun keeps ``result`` rather than asking again: ``ok``, or a request error."""
    if result.status == "ok":
        return True
    return not retry_errors and result.error_kind in REQUEST_ERRORS


def _column_types() -> dict[str, pa.DataType]:
    """Each result column and its Arrow type, in Result's field order, usage expanded."""
    types: dict[str, pa.DataType] = {}
    for f in fields(Result):
        types.update(USAGE_TYPES if f.name == "usage" else {f.name: _OWN_TYPES[f.name]})
    return types


_TYPES = _column_types()
RESULT_FIELDS: tuple[str, ...] = tuple(_TYPES)
#: The result fields every part has, in column order.
PART_FIELDS: tuple[str, ...] = tuple(f for f in RESULT_FIELDS if f not in OPTIONAL_FIELDS)
RESULT_TYPES: Mapping[str, pa.DataType] = _TYPES
# ``usage.prompt_tokens`` for a usage column, ``status`` for the result's own.
GET: dict[str, Callable[[Result], Any]] = {
    name: attrgetter(f"usage.{name}" if name in USAGE_TYPES else name) for name in RESULT_FIELDS
}
IDENTITY_COLUMNS = ("row_id", "request_hash")
_NOT_COMPLETION = frozenset(IDENTITY_COLUMNS + RESULT_FIELDS) - {"completion"}


def added_columns(
    completion_column: str, typed: Sequence[str] = (), *, reasoning: bool = False
) -> list[str]:
    """The columns the engine adds to every output row, in order (``typed`` after the
    completion, then ``reasoning`` when it is kept)."""
    columns: list[str] = list(IDENTITY_COLUMNS)
    for f in PART_FIELDS:
        if f == "completion":
            columns.extend([completion_column, *typed, *(["reasoning"] if reasoning else [])])
        else:
            columns.append(f)
    return columns


def check_collisions(
    input_columns: Sequence[str],
    completion_column: str,
    where: str,
    typed: Sequence[str] = (),
    *,
    reasoning: bool = False,
) -> None:
    """Refuse inputs whose kept columns would be overwritten by an added column, and typed
    columns (``typed``) that would overwrite one of the engine's."""
    fixed = added_columns(completion_column, reasoning=reasoning)
    taken = sorted(set(typed) & set(fixed))
    if taken:
        raise ConfigError(
            f"{where}: prompt.output_schema: field column(s) {', '.join(taken)} clash with "
            "output columns; rename the field or output.completion_column"
        )
    clash = sorted(
        set(input_columns) & set(added_columns(completion_column, typed, reasoning=reasoning))
    )
    if clash:
        raise ConfigError(
            f"{where}: input column(s) {', '.join(clash)} clash with output columns; "
            "drop them with input.columns or rename output.completion_column"
        )


def results_table(hashes: Sequence[str], results: Sequence[Result]) -> pa.Table:
    """A journal table: one row per request hash."""
    arrays: dict[str, pa.Array] = {"request_hash": pa.array(hashes, pa.string())}
    for name, typ in _TYPES.items():
        arrays[name] = pa.array(list(map(GET[name], results)), typ)
    return pa.table(arrays)


def results_from_table(table: pa.Table, completion_column: str = "completion") -> dict[str, Result]:
    """Read ``request_hash -> Result`` back from a journal table or an output part.

    Of the rows of one request, the first is read: the fold puts the copy that carried the
    request's tokens and cost there (:mod:`enrich.engine.fold`).

    A part written under another ``output.completion_column`` is read as well: its completion
    is the column after ``request_hash``, where :func:`output_table` puts it. A table with no
    completion column at all yields nothing (its requests are asked again).
    """
    names = set(table.column_names)
    if completion_column not in names:
        order = table.column_names
        at = order.index("request_hash") + 1 if "request_hash" in names else len(order)
        if at >= len(order) or order[at] in _NOT_COMPLETION:
            return {}
        completion_column = order[at]
    source = {f: completion_column if f == "completion" else f for f in RESULT_FIELDS}
    columns = {f: table.column(c).to_pylist() for f, c in source.items() if c in names}
    usage = {f: v for f, v in columns.items() if f in USAGE_TYPES}
    own = {f: v for f, v in columns.items() if f not in USAGE_TYPES}
    out: dict[str, Result] = {}
    for i, h in enumerate(table.column("request_hash").to_pylist()):
        if h in out:
            # A later row of the same request holds a shared copy (zero tokens and cost);
            # the first holds the one that carried the cost, which a re-commit must keep.
            continue
        out[h] = Result(
            usage=Usage(**{f: values[i] for f, values in usage.items()}),
            **{f: values[i] for f, values in own.items()},
        )
    return out


def output_table(
    inputs: pa.Table,
    row_ids: Sequence[str],
    hashes: Sequence[str],
    results: Sequence[Result],
    completion_column: str,
    output: OutputSchema | None = None,
    *,
    reasoning: bool = False,
) -> pa.Table:
    """Join results onto their input rows (same order, one result per row).

    With ``output``, its typed columns follow the completion column, filled from the
    completions of ``ok`` rows (judged valid when they arrived) and null for error rows; with
    ``reasoning``, the reasoning text comes next.
    """
    table = inputs.append_column("row_id", pa.array(row_ids, pa.string()))
    table = table.append_column("request_hash", pa.array(hashes, pa.string()))
    for name, is_field, array in result_arrays(results, output, reasoning=reasoning):
        column = completion_column if is_field and name == "completion" else name
        table = table.append_column(column, array)
    return table


def result_arrays(
    results: Sequence[Result], output: OutputSchema | None, *, reasoning: bool
) -> list[tuple[str, bool, pa.Array]]:
    """A part's result columns of ``results``, in column order: ``(name, is_field, array)``,
    where ``name`` is a result field (``is_field``) or a typed column's full name."""
    arrays: list[tuple[str, bool, pa.Array]] = []
    for name in PART_FIELDS:
        arrays.append((name, True, pa.array(list(map(GET[name], results)), _TYPES[name])))
        if name == "completion":
            if output is not None:
                valid = [r.completion if r.status == "ok" else None for r in results]
                arrays.extend((c, False, a) for c, a in output.arrays(valid).items())
            if reasoning:
                values = [r.reasoning for r in results]
                arrays.append(("reasoning", True, pa.array(values, pa.string())))
    return arrays


def encode(table: pa.Table, fmt: OutputFormat) -> bytes:
    """Serialise a table as one Parquet file or JSON lines."""
    if fmt == "parquet":
        sink = io.BytesIO()
        pq.write_table(table, sink, compression="zstd")
        return sink.getvalue()
    lines = (orjson.dumps(row, default=str) for row in table.to_pylist())
    return b"\n".join(lines) + b"\n" if table.num_rows else b""


def decode(data: bytes, fmt: OutputFormat) -> pa.Table:
    """Read back what :func:`encode` wrote."""
    if fmt == "parquet":
        return pq.read_table(io.BytesIO(data))
    rows: list[Mapping[str, Any]] = [orjson.loads(line) for line in data.splitlines() if line]
    return pa.Table.from_pylist(rows)
