"""The comparison ``enrich try`` shows: every variant's figures, fields, agreement, examples.

:func:`compare` puts together what the pure parts compute (:mod:`.figures`, :mod:`.compare`)
for the variants run on one sample (:mod:`.session`); :class:`Comparison` is what every
rendering reads (the terminal, markdown, HTML and JSON of :mod:`.report` and :mod:`.html`).
The first variant is the base the others are compared with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from enrich.job import Job
from enrich.trial.compare import COMPLETION, agreement, gold_field
from enrich.trial.figures import FieldRef, Figures, RunShape, measure, project
from enrich.trial.sample import Sample
from enrich.trial.session import Trial

__all__ = ["Comparison", "Example", "compare", "fields_of", "run_shape"]

#: Example rows shown.
EXAMPLES = 8
_PREVIEW = 60
_ANSWER = 70


@dataclass(slots=True)
class Example:
    """One sampled row: its id, what its prompt reads, the gold value, each variant's answer."""

    row_id: str
    shown: str
    gold: str | None
    answers: list[str]


@dataclass(slots=True)
class Comparison:
    """Every variant on one sample."""

    job: str
    sample_rows: int
    total_rows: int
    stratify: str | None
    variants: list[Figures]
    fields: list[str]
    #: Per field, each variant's agreement with the first (the first's own is None).
    agreement: dict[str, list[float | None]] = field(default_factory=dict)
    gold_column: str | None = None
    gold_field: str | None = None
    #: Each variant's share of sampled rows whose gold field equals the gold column.
    accuracy: list[float | None] = field(default_factory=list)
    examples: list[Example] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON values, with each variant's rates beside its counts."""
        data = asdict(self)
        for figures, out in zip(self.variants, data["variants"], strict=True):
            out["error_rate"] = figures.error_rate
            out["invalid_rate"] = figures.invalid_rate
            out["distributions"] = {k: dict(v) for k, v in figures.distributions.items()}
        return data


def fields_of(job: Job) -> list[FieldRef]:
    """The typed fields of ``job``, in step and property order."""
    refs: list[FieldRef] = []
    for step in job.steps:
        if step.output is None:
            continue
        for typed in step.output.fields:
            label = typed.name if step.name is None else f"{step.name}.{typed.name}"
            refs.append(FieldRef(label, step.output.column(typed.name)))
    return refs


def _completion_column(job: Job) -> str:
    return job.steps[-1].column("completion")


def _values(trial: Trial, label: str) -> list[Any]:
    """A field's values on every sampled row (a job without typed fields: the completion)."""
    columns = {f.label: f.column for f in fields_of(trial.job)}
    if label == COMPLETION and not columns:
        columns[COMPLETION] = _completion_column(trial.job)
    name = columns.get(label)
    if name is None or name not in trial.table.column_names:
        return [None] * trial.table.num_rows
    values: list[Any] = trial.table.column(name).to_pylist()
    return values


def run_shape(job: Job, sample: Sample) -> RunShape:
    """The full run of ``job`` once ``sample``'s rows are in its output."""
    pending = job.pending()
    rows = sum(c.rows for c in pending)
    sampled = sum(
        any(c.source_index == s and c.start <= r < c.stop for c in pending)
        for s, r in sample.positions
    )
    ex = job.config.execution
    return RunShape(
        rows=job.rows,
        rows_to_send=max(0, rows - sampled),
        max_completion_tokens=max(s.kind.max_completion_tokens for s in job.steps),
        requests_per_minute=ex.requests_per_minute,
        tokens_per_minute=ex.tokens_per_minute,
        max_concurrency=ex.max_concurrency,
    )


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _answer(trial: Trial, row: int) -> str:
    table = trial.table
    if table.column("status")[row].as_py() != "ok":
        kind = table.column("error_kind")[row].as_py() or "error"
        return f"error: {kind}"
    parts: list[str] = []
    for step in trial.job.steps:
        if step.output is not None:
            for name in step.output.columns():
                value = table.column(name)[row].as_py()
                parts.append(", ".join(map(str, value)) if isinstance(value, list) else str(value))
        else:
            parts.append(str(table.column(step.column("completion"))[row].as_py() or ""))
    return _short(" | ".join(parts), _ANSWER)


def _preview(sample: Sample, job: Job, row: int) -> str:
    read = set().union(*(s.template.columns for s in job.steps))
    shown = [c for c in sample.table.column_names if c in read]
    values = [str(sample.table.column(c)[row].as_py()) for c in shown]
    return _short(" · ".join(values), _PREVIEW)


def compare(
    sample: Sample,
    trials: Sequence[Trial],
    *,
    gold: str | None = None,
) -> Comparison:
    """The comparison of ``trials`` (the first is the base) on ``sample``. ``gold`` is
    ``COL[=FIELD]`` (:func:`~.compare.gold_field`)."""
    base = trials[0]
    labels: list[str] = []
    figures: list[Figures] = []
    for trial in trials:
        refs = fields_of(trial.job)
        labels += [f.label for f in refs if f.label not in labels]
        sent = trial.summary.requests
        measured = measure(trial.label, trial.job.config.model, trial.table, refs, requests=sent)
        measured.projection = project(measured, run_shape(trial.job, sample))
        figures.append(measured)
    compared = labels or [COMPLETION]
    result = Comparison(
        job=base.job.config.name,
        sample_rows=sample.rows,
        total_rows=sample.total_rows,
        stratify=sample.stratify,
        variants=figures,
        fields=labels,
    )
    if len(trials) > 1:
        for label in compared:
            first = _values(base, label)
            shares: list[float | None] = [None]
            shares += [agreement(first, _values(t, label)) for t in trials[1:]]
            result.agreement[label] = shares
    gold_values: list[Any] = []
    if gold is not None:
        refs = [FieldRef(label, label) for label in labels]
        result.gold_column, result.gold_field = gold_field(gold, refs, base.job.where)
        gold_values = sample.table.column(result.gold_column).to_pylist()
        result.accuracy = [agreement(gold_values, _values(t, result.gold_field)) for t in trials]
    for row in range(min(EXAMPLES, sample.rows)):
        result.examples.append(
            Example(
                row_id=sample.row_ids[row],
                shown=_preview(sample, base.job, row),
                gold=None if not gold_values else str(gold_values[row]),
                answers=[_answer(t, row) for t in trials],
            )
        )
    return result
