"""The output columns of a job with several steps: each step's, then the row's totals.

A ``steps:`` job's part has, after the kept input columns and ``row_id``, for each step in run
order the columns a one-prompt part has, prefixed by the step's name
(``triage_request_hash``, ``triage_completion``, its typed columns ``triage_sentiment``...,
``triage_reasoning`` when kept, ``triage_prompt_tokens``..., ``triage_status``,
``triage_error``, ``triage_error_kind``), then the row's totals under the names a one-prompt
job uses for its own: every usage column (tokens and ``time_info``, summed over the steps),
``attempts``, ``latency_s`` and ``cost_usd`` (summed), ``status`` (``error`` when a step
failed, else ``ok``), ``error`` and ``error_kind`` (the first failed step's, its error
prefixed by its name).

A step a row skips (its ``when:`` is false, or a step it reads did not answer the row) has
status ``skipped``, no request hash and no cost. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from enrich.errors import ConfigError
from enrich.results import GET, PART_FIELDS, RESULT_TYPES, Result, result_arrays
from enrich.steps.step import Step
from enrich.usage import NO_USAGE, USAGE_FIELDS, USAGE_TYPES, Usage

__all__ = ["SKIPPED", "TOTAL_FIELDS", "check_step_columns", "step_columns", "steps_table"]

#: The status of a step a row skips.
SKIPPED = "skipped"
#: The row's totals, named as a one-prompt job's own columns.
TOTAL_FIELDS: tuple[str, ...] = (
    *USAGE_FIELDS,
    "attempts",
    "latency_s",
    "cost_usd",
    "status",
    "error",
    "error_kind",
)


def step_columns(step: Step) -> list[str]:
    """The columns of ``step`` in a part, in order."""
    columns = [step.column("request_hash")]
    for field in PART_FIELDS:
        columns.append(step.column(field))
        if field == "completion":
            columns += step.output.columns() if step.output is not None else []
            columns += [step.column("reasoning")] if step.keep_reasoning else []
    return columns


def check_step_columns(input_columns: Sequence[str], steps: Sequence[Step], where: str) -> None:
    """Refuse two steps' columns with one name, and kept input columns they would replace."""
    added = ["row_id"]
    for step in steps:
        for column in step_columns(step):
            if column in added or column in TOTAL_FIELDS:
                raise ConfigError(
                    f"{where}: steps.{step.name}: column {column!r} is another column's name "
                    "too; rename the step or the field"
                )
            added.append(column)
    clash = sorted(set(input_columns) & {*added, *TOTAL_FIELDS})
    if clash:
        raise ConfigError(
            f"{where}: input column(s) {', '.join(clash)} clash with output columns; "
            "drop them with input.columns or rename the step"
        )


def steps_table(
    inputs: pa.Table,
    row_ids: Sequence[str],
    steps: Sequence[Step],
    hashes: Sequence[Sequence[str | None]],
    results: Sequence[Sequence[Result]],
) -> pa.Table:
    """The part of a chunk: ``inputs``, ``row_id``, each step's columns, the row totals.

    ``hashes[i]`` and ``results[i]`` are step ``i``'s, one per row (None hash: skipped).
    """
    table = inputs.append_column("row_id", pa.array(row_ids, pa.string()))
    for step, step_hashes, step_results in zip(steps, hashes, results, strict=True):
        table = table.append_column(
            step.column("request_hash"), pa.array(list(step_hashes), pa.string())
        )
        arrays = result_arrays(step_results, step.output, reasoning=step.keep_reasoning)
        for name, is_field, array in arrays:
            table = table.append_column(step.column(name) if is_field else name, array)
    totals = [row_total([r[i] for r in results], steps) for i in range(len(row_ids))]
    for name in TOTAL_FIELDS:
        typ = USAGE_TYPES.get(name) or RESULT_TYPES[name]
        table = table.append_column(name, pa.array([GET[name](t) for t in totals], typ))
    return table


def row_total(results: Sequence[Result], steps: Sequence[Step]) -> Result:
    """One row's totals over its steps' results (see the module doc)."""
    usage: Usage = NO_USAGE
    attempts, cost = 0, 0.0
    latency: float | None = None
    failed: tuple[Step, Result] | None = None
    for step, result in zip(steps, results, strict=True):
        usage = usage.plus(result.usage)
        attempts += result.attempts
        cost += result.cost_usd
        if result.latency_s is not None:
            latency = (latency or 0.0) + result.latency_s
        if failed is None and result.status == "error":
            failed = (step, result)
    total = Result(None, usage=usage, attempts=attempts, latency_s=latency, cost_usd=cost)
    if failed is not None:
        step, result = failed
        total.status, total.error_kind = "error", result.error_kind
        total.error = f"{step.name}: {result.error}"
    return total
