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
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from itertools import groupby
from typing import Any

import pyarrow as pa

from enrich.config import JobConfig
from enrich.config.places import refuse_overlap
from enrich.config.schema import EmptyLengthRetry
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
from enrich.steps.step import build_steps
from enrich.steps.table import check_step_columns
from enrich.storage import Store
from enrich.structured import check_output_schema

ENGINE_VERSION = 1


class Job:
    """One job's config, sources, template, output store and chunk plan."""

    def __init__(
        self, config: JobConfig, sources: list[SourceFile], input_columns: list[str], where: str
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
                "pricing": [
                    config.pricing.input_per_million,
                    config.pricing.output_per_million,
                ],
            }
        )
        self.hasher = first.hasher
        # From the config alone: the chunks of rows already committed never move.
        self.chunk_size = chunk_size(config)
        self.chunks = plan_chunks(sources, self.chunk_size.rows, self.fingerprint)
        self.store = Store(config.output.path, config.output.storage_options)

    @classmethod
    def prepare(cls, config: JobConfig, where: str = "job") -> Job:
        """Discover the input and check it against the config (raises one-line errors).

        An output schema strict mode would refuse is refused before the input is read
        (:class:`~enrich.structured.OutputSchemaRefused` holds every finding).
        """
        refuse_overlap(config.input.path, config.output.path, os.getcwd(), where)
        refuse_other_job(Store(config.output.path, config.output.storage_options), config.name)
        if config.prompt is not None and config.prompt.output_schema is not None:
            check_output_schema(config.prompt.output_schema, f"{where}: prompt.output_schema")
        for step in config.steps or ():
            if step.output_schema is not None:
                check_output_schema(step.output_schema, f"{where}: steps.{step.name}.output_schema")
        spec = config.input
        surveyed = survey_input(spec)
        columns: list[str] = []
        for survey in surveyed.surveys:
            for name in survey.schema.names:
                if name not in columns:
                    columns.append(name)
        job = cls(config, surveyed.sources, columns, where)
        wanted = {c: job._why_read(c) for c in job.read_columns}
        check_columns(surveyed.sources, surveyed.surveys, wanted)
        check_types(surveyed.sources, surveyed.surveys, job.read_columns)
        readers = [reader_for(s, spec) for s in surveyed.sources]
        check_ids(readers, surveyed.surveys, spec)
        return job

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

    def iter_tables(self, chunks: Sequence[ChunkSpec]) -> Iterator[tuple[ChunkSpec, pa.Table]]:
        """The input rows of each chunk, in order, reading each source once, lazily."""
        for index, group in groupby(chunks, key=lambda c: c.source_index):
            members = list(group)
            by_bounds = {(c.start, c.stop): c for c in members}
            bounds = [(c.start, c.stop) for c in members]
            source = self.sources[index]
            reader = reader_for(source, self.config.input)
            for bound, table in reader.read_slices(bounds, self.read_columns):
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
