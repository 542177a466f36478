"""A prepared job: config checked against the input, chunks planned, nothing spent yet.

:meth:`Job.prepare` does every check that can fail before a request is paid for: the output
is not inside the input (nor the reverse) and belongs to no other job; the output schema is
one strict mode accepts; the input exists, every JSONL line of it parses as an object whose
values fit their columns and every Parquet footer reads (:func:`~enrich.inputs.survey_input`);
every file has the template's columns, the id column and the kept columns, each with one type
across files; ids are neither null nor repeated; no input column collides with an added one.
Every file is pinned to the version surveyed, and reading it later checks the pin. It then
plans the chunks deterministically. The first write to the output (the run's lease, in
:func:`enrich.run.run_job`) also comes before any request.

Before the input is read, every model the job uses is judged against the provider's
catalogue (:mod:`enrich.catalogue`): a model the provider no longer serves is refused in one
line, one marked deprecated leaves a warning in :attr:`Job.notes`. The catalogue also gives
the prices rows are costed at (unless ``pricing`` sets them, for every model of the job) and
the context window no request may overflow (:meth:`Job.window`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from datetime import date
from itertools import groupby
from typing import Any

import pyarrow as pa

from enrich.catalogue import (
    Catalogue,
    ModelEntry,
    ModelVerdict,
    Prices,
    job_prices,
    judge_model,
    load_catalogue,
)
from enrich.config import JobConfig
from enrich.config.places import refuse_overlap
from enrich.config.schema import EmptyLengthRetry
from enrich.context import ContextWindow, PromptTally
from enrich.errors import ConfigError, InputChanged
from enrich.hashing import endpoint_identity, job_fingerprint
from enrich.inputs import (
    SourceFile,
    check_columns,
    check_ids,
    check_types,
    kept_columns,
    needed_columns,
    reader_for,
    survey_input,
)
from enrich.output.committed import committed_chunk_ids
from enrich.output.layout import LAYOUT
from enrich.output.owner import refuse_other_job
from enrich.output.records import Plan, PlannedChunk
from enrich.planning import ChunkSpec, chunk_size, plan_chunks
from enrich.results import check_collisions
from enrich.steps import StepGraphError
from enrich.steps.step import RequestKind, RowFields, Step, build_steps
from enrich.steps.table import check_step_columns
from enrich.storage import Store
from enrich.structured import check_output_schema
from enrich.tokens import count_prompt_tokens

ENGINE_VERSION = 1


class Job:
    """One job's config, sources, template, output store and chunk plan."""

    def __init__(
        self,
        config: JobConfig,
        sources: list[SourceFile],
        input_columns: list[str],
        where: str,
        *,
        catalogue: Catalogue | None = None,
        verdicts: Mapping[str, ModelVerdict] | None = None,
    ) -> None:
        self.config = config
        self.where = where
        self.sources = sources
        self.input_columns = list(input_columns)  # recorded in the manifest at commit
        spec = config.input
        # Who answers is part of the answer: the endpoint as the client resolves it.
        self.endpoint = endpoint_identity(config.api.endpoint(os.environ))
        try:
            #: The steps in run order: one unnamed step for a one-prompt job.
            self.steps = build_steps(config, self.endpoint)
        except StepGraphError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        first = self.steps[0]
        # Prepared jobs bring the verdicts of :meth:`prepare`; one built directly (over an
        # input already surveyed) is judged against the catalogue prepare would load,
        # refusing nothing.
        if catalogue is None:
            catalogue = load_catalogue(config.api, os.environ, want=first.kind.model)
        if verdicts is None:
            today = date.today()
            verdicts = {
                s.kind.model: judge_model(catalogue, s.kind.model, today) for s in self.steps
            }
        #: Where the models' figures come from, and what it says of each model of the job.
        self.catalogue = catalogue
        self.entries: dict[str, ModelEntry | None] = {m: v.entry for m, v in verdicts.items()}
        #: Whether this is a ``steps:`` job (named steps, prefixed columns, row totals).
        self.multi_step = config.steps is not None
        self.template = first.template
        for step in self.steps:
            key = "prompt" if step.name is None else f"steps.{step.name}"
            step.template.check(input_columns, where, key)
        #: The structured output of a one-prompt job (None: free text, or a steps: job); its
        #: columns are named after the completion column.
        self.output = None if self.multi_step else first.output
        self.keep_columns = kept_columns(input_columns, spec)
        if self.multi_step:
            check_step_columns(self.keep_columns, self.steps, where)
        else:
            typed = self.output.columns() if self.output is not None else []
            check_collisions(
                self.keep_columns,
                config.output.completion_column,
                where,
                typed,
                reasoning=first.keep_reasoning,
            )
        #: One-line warnings for whoever runs the job (a deprecated model, say).
        self.notes = _notes(self.steps, verdicts)
        read = frozenset().union(*(s.template.columns for s in self.steps))
        self.read_columns = needed_columns(input_columns, spec, read)
        self.fingerprint = job_fingerprint(
            {
                **self._prompt_identity(),
                "engine": ENGINE_VERSION,
                "endpoint": self.endpoint,
                "model": config.model,
                "params": config.params.request_fields(),
                "id_column": spec.id_column,
                "columns": self.keep_columns,
                "completion_column": config.output.completion_column,
                "format": config.output.format,
                # Not in the request hash (a price asks nothing new), but a committed
                # dataset costed at other prices is not this job's: it is re-committed.
                "pricing": self._price_identity(),
            }
        )
        self.hasher = first.hasher
        # From the config alone: the chunks of rows already committed never move.
        self.chunk_size = chunk_size(config)
        self.chunks = plan_chunks(sources, self.chunk_size.rows, self.fingerprint)
        self.store = Store(config.output.path, config.output.storage_options)

    @classmethod
    def prepare(
        cls,
        config: JobConfig,
        where: str = "job",
        *,
        catalogue: Catalogue | None = None,
        today: date | None = None,
    ) -> Job:
        """Discover the input and check it against the config (raises one-line errors).

        An output schema strict mode would refuse is refused before the input is read
        (:class:`~enrich.structured.OutputSchemaRefused` holds every finding). ``catalogue``
        defaults to :func:`~enrich.catalogue.load_catalogue` for the job's endpoint (the
        provider, else a cache, else the snapshot; never an error offline).

        Raises:
            ConfigError: a model of the job is one the provider no longer serves.
        """
        refuse_overlap(config.input.path, config.output.path, os.getcwd(), where)
        refuse_other_job(Store(config.output.path, config.output.storage_options), config.name)
        if config.prompt is not None and config.prompt.output_schema is not None:
            check_output_schema(config.prompt.output_schema, f"{where}: prompt.output_schema")
        for step in config.steps or ():
            if step.output_schema is not None:
                check_output_schema(step.output_schema, f"{where}: steps.{step.name}.output_schema")
        catalogue, verdicts = _judge_models(config, where, catalogue, today or date.today())
        spec = config.input
        surveyed = survey_input(spec)
        columns: list[str] = []
        for survey in surveyed.surveys:
            for name in survey.schema.names:
                if name not in columns:
                    columns.append(name)
        job = cls(config, surveyed.sources, columns, where, catalogue=catalogue, verdicts=verdicts)
        wanted = {c: job._why_read(c) for c in job.read_columns}
        check_columns(surveyed.sources, surveyed.surveys, wanted)
        check_types(surveyed.sources, surveyed.surveys, job.read_columns)
        readers = [reader_for(s, spec) for s in surveyed.sources]
        check_ids(readers, surveyed.surveys, spec)
        return job

    @property
    def prices(self) -> Prices:
        """The prices the first step's rows are costed at (:meth:`prices_for`)."""
        return self.prices_for(self.steps[0].kind.model)

    def prices_for(self, model: str) -> Prices:
        """``pricing``'s keys where set, else the catalogue's prices of ``model``."""
        return job_prices(self.config.pricing, self.entries.get(model))

    def window(self, kind: RequestKind) -> ContextWindow | None:
        """The context requests of ``kind`` must fit (None: the catalogue does not know it)."""
        entry = self.entries.get(kind.model)
        if entry is None or entry.context_length is None:
            return None
        return ContextWindow(entry.context_length, kind.max_completion_tokens)

    def _price_identity(self) -> list[float] | dict[str, list[float]]:
        """The prices the fingerprint holds: ``[in, out]`` of a one-model job, as always."""
        prices = {m: self.prices_for(m) for m in self.entries}
        pairs = {m: [p.input_per_million, p.output_per_million] for m, p in prices.items()}
        return next(iter(pairs.values())) if len(pairs) == 1 else pairs

    def _prompt_identity(self) -> dict[str, Any]:
        """What the job fingerprint holds of the prompts: a one-prompt job's as it always
        did (so outputs committed before steps existed stay committed), or every step."""
        config = self.config
        retry = config.execution.empty_length_retry
        extra: dict[str, Any] = {}
        if retry != EmptyLengthRetry():
            extra["empty_length_retry"] = retry.model_dump()
        if config.prompt is not None:
            prompt = config.prompt
            if prompt.output_schema is not None:
                extra["output_schema"] = prompt.output_schema
            if prompt.keep_reasoning:
                extra["keep_reasoning"] = True
            return {**extra, "system": prompt.system, "template": prompt.template}
        return {**extra, "steps": [s.model_dump(exclude_defaults=True) for s in config.steps or ()]}

    def output_description(self) -> dict[str, Any] | None:
        """What the manifest records of the structured output (None: free text only)."""
        if not self.multi_step:
            return None if self.output is None else self.output.describe()
        described = {s.name: s.output.describe() for s in self.steps if s.output is not None}
        return {"steps": described} if described else None

    def _why_read(self, column: str) -> str:
        """Why the job reads ``column``, for a file that does not have it."""
        spec = self.config.input
        if any(column in s.template.columns for s in self.steps):
            return "used by the template"
        if column == spec.id_column:
            return "named by input.id_column"
        if spec.columns is not None:
            return "listed in input.columns"
        return "(other files have it; set input.columns to keep only columns every file has)"

    @property
    def response_format(self) -> dict[str, Any] | None:
        """What every request of the first step asks of the answer's shape (None: free
        text)."""
        return self.steps[0].kind.response_format

    @property
    def rows(self) -> int:
        return sum(s.num_rows for s in self.sources)

    def pending(self) -> list[ChunkSpec]:
        """Planned chunks not yet committed (one listing of the output)."""
        done = committed_chunk_ids(self.store)
        return [c for c in self.chunks if c.chunk_id not in done]

    def write_plan(self) -> None:
        """Record what this job will commit, so ``enrich status`` can tell what is pending."""
        plan = Plan(
            job=self.config.name,
            fingerprint=self.fingerprint,
            rows=self.rows,
            format=self.config.output.format,
            chunks=tuple(PlannedChunk(c.chunk_id, c.rows) for c in self.chunks),
        )
        self.store.write_bytes(LAYOUT.plan, plan.to_bytes())

    def iter_tables(
        self, chunks: Sequence[ChunkSpec], columns: Sequence[str] | None = None
    ) -> Iterator[tuple[ChunkSpec, pa.Table]]:
        """The input rows of each chunk, in order, reading each source once, lazily.

        ``columns`` narrows what is read (default: every column the job reads).
        """
        wanted = list(self.read_columns if columns is None else columns)
        for index, group in groupby(chunks, key=lambda c: c.source_index):
            members = list(group)
            by_bounds = {(c.start, c.stop): c for c in members}
            bounds = [(c.start, c.stop) for c in members]
            source = self.sources[index]
            reader = reader_for(source, self.config.input)
            for bound, table in reader.read_slices(bounds, wanted):
                yield by_bounds[bound], table

    @staticmethod
    def check_rows(chunk: ChunkSpec, table: pa.Table) -> None:
        """Raise InputChanged unless ``table`` has exactly the rows planned for ``chunk``."""
        if table.num_rows != chunk.rows:
            raise InputChanged(
                f"{chunk.label}: {table.num_rows} rows read, not the {chunk.rows} planned; "
                "rerun to plan again"
            )

    def render(
        self, chunk: ChunkSpec, table: pa.Table
    ) -> tuple[list[str], list[str], list[list[dict[str, str]]]]:
        """Row ids, request hashes and messages of the first step for every row of a chunk."""
        n = table.num_rows
        columns: Mapping[str, Sequence[Any]] = {
            c: table.column(c).to_pylist() for c in self.template.columns
        }
        messages = [self.template.messages(u) for u in self.template.render_users(columns, n)]
        hashes = [self.hasher(m) for m in messages]
        return self.row_ids(chunk, table), hashes, messages

    def tally_prompts(self, chunks: Sequence[ChunkSpec]) -> list[PromptTally]:
        """Every row of ``chunks`` rendered for each step, and its prompt counted against the
        step's context window; one tally per step, in run order.

        An earlier step's field in a prompt is not known before the run: a row overflows when
        its prompt cannot fit with the field empty, and counts with the field at that step's
        ``max_completion_tokens`` (the longest it can be) otherwise, so a later step's tokens
        are an upper bound. Every row counts for every step (a ``when:`` that skips it is not
        known either).
        """
        tallies = [PromptTally(self.window(step.kind)) for step in self.steps]
        budgets = {s.name: s.kind.max_completion_tokens for s in self.steps}
        read = sorted(set().union(*(s.template.columns for s in self.steps)))
        for _, table in self.iter_tables(chunks, read or None):
            n = table.num_rows
            columns = {c: table.column(c).to_pylist() for c in read}
            unknown: dict[str, list[RowFields]] = {s.name or "": [None] * n for s in self.steps}
            for step, tally in zip(self.steps, tallies, strict=True):
                extra = sum(budgets[name] for name, _ in step.template.step_fields)
                messages = step.render(columns, unknown, range(n))
                tally.add((count_prompt_tokens(m) for m in messages), unknown=extra)
        return tallies

    def input_values(self, table: pa.Table) -> dict[str, list[Any]]:
        """The input columns any step's template reads, as lists."""
        read = set().union(*(s.template.columns for s in self.steps))
        return {c: table.column(c).to_pylist() for c in read}

    def row_ids(self, chunk: ChunkSpec, table: pa.Table) -> list[str]:
        """The ``row_id`` of every row of a chunk."""
        n = table.num_rows
        id_column = self.config.input.id_column
        if id_column:
            row_ids = [str(v) for v in table.column(id_column).to_pylist()]
        else:
            key = self.sources[chunk.source_index].key
            row_ids = [f"{key}:{chunk.start + i}" for i in range(n)]
        return row_ids

    def keep(self, table: pa.Table) -> pa.Table:
        """The input columns that pass through to the output."""
        return table.select(self.keep_columns)


def _judge_models(
    config: JobConfig, where: str, catalogue: Catalogue | None, today: date
) -> tuple[Catalogue, dict[str, ModelVerdict]]:
    """Every model of the job judged, the job's own first; the first refusal is raised,
    naming its key (``model`` or ``steps.<name>.model``). A model a cached catalogue does not
    list is asked of the provider (:func:`~enrich.catalogue.load_catalogue`'s ``want``)."""
    keys = {config.model: "model"}
    for step in config.steps or ():
        if step.model is not None:
            keys.setdefault(step.model, f"steps.{step.name}.model")
    verdicts: dict[str, ModelVerdict] = {}
    given = catalogue is not None
    for model, key in keys.items():
        cached = catalogue is not None and catalogue.source == "cache"
        if catalogue is None or (not given and cached and model not in catalogue.models):
            catalogue = load_catalogue(config.api, os.environ, want=model)
        verdict = judge_model(catalogue, model, today)
        if verdict.refusal is not None:
            raise ConfigError(f"{where}: {key}: {verdict.refusal}")
        verdicts[model] = verdict
    assert catalogue is not None  # the job has a model
    return catalogue, verdicts


def _notes(steps: Sequence[Step], verdicts: Mapping[str, ModelVerdict]) -> tuple[str, ...]:
    """Warnings: a model deprecated or unknown; a completion budget above the model's."""
    notes = [f"model: {v.warning}" for v in verdicts.values() if v.warning is not None]
    for step in steps:
        entry, budget = verdicts[step.kind.model].entry, step.kind.max_completion_tokens
        longest = entry.max_completion_tokens if entry else None
        if longest is not None and budget > longest:
            key = "params" if step.name is None else f"steps.{step.name}.params"
            notes.append(
                f"{key}.max_completion_tokens {budget:,} is above {step.kind.model}'s longest "
                f"completion of {longest:,} tokens"
            )
    return tuple(dict.fromkeys(notes))
