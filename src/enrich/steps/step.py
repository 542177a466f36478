"""One step at run time: its prompt, what its requests are, whom it reads, how it renders.

:func:`build_steps` turns a job config into its :class:`Step` list, in run order. A one-prompt
job is one step without a name: its columns keep the names they always had (the completion
column, ``request_hash``, ``prompt_tokens``...) and its requests hash as they always did. A step
of a ``steps:`` job prefixes its columns with its name (``triage_completion``,
``triage_sentiment``, ``triage_prompt_tokens``...).

Each step's request identity is its own: a :class:`~enrich.hashing.RequestHasher` over its
model, parameters and response format, applied to its rendered messages (which hold the
earlier steps' fields it reads). So an edit to one step changes the hashes of that step and of
the steps whose messages it changes, and no other.

A step may have a second :class:`RequestKind`, the one retry of an answer left empty because
reasoning used the whole budget (``execution.empty_length_retry``): a larger
``max_completion_tokens`` and/or a lower ``reasoning_effort``, and so another request hash.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from enrich.hashing import RequestHasher
from enrich.results import Result
from enrich.steps.graph import COMPLETION_FIELD, check_steps
from enrich.steps.when import Condition, parse_when
from enrich.structured import OutputSchema
from enrich.template import PromptTemplate

if TYPE_CHECKING:
    from enrich.config.schema import JobConfig, ModelParams

__all__ = ["REPAIR_PROMPT", "RequestKind", "Step", "build_steps"]

#: The user message that asks an invalid structured answer to repair itself.
REPAIR_PROMPT = (
    "That answer does not match the required JSON schema: {problem}. "
    "Reply again with only the corrected JSON object."
)

#: A row's fields of one step: ``{"completion": text, <field>: value...}``, None when the
#: step did not answer it (skipped, failed).
RowFields = Mapping[str, Any] | None


@dataclass(frozen=True, slots=True)
class RequestKind:
    """What the requests of one step (or of its retry) are, besides their messages."""

    model: str
    params: Mapping[str, Any]
    max_completion_tokens: int
    output: OutputSchema | None = None
    #: An ``empty_length`` answer will be asked again: not counted as an error yet.
    retries_empty: bool = False
    #: An ``invalid_output`` answer will be asked to repair itself: not an error yet either.
    repairs_invalid: bool = False

    def repair_messages(
        self, messages: Sequence[Mapping[str, str]], invalid: Result
    ) -> list[dict[str, str]]:
        """The one repair request of an invalid answer: the conversation, the answer, and
        what is wrong with it."""
        problem = invalid.error or "it does not match the schema"
        return [
            *(dict(m) for m in messages),
            {"role": "assistant", "content": invalid.completion or ""},
            {"role": "user", "content": REPAIR_PROMPT.format(problem=problem)},
        ]

    @property
    def response_format(self) -> dict[str, Any] | None:
        return None if self.output is None else self.output.response_format()


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a job, ready to render, hash and send (see the module doc)."""

    name: str | None
    template: PromptTemplate
    kind: RequestKind
    hasher: RequestHasher
    when: Condition | None = None
    keep_reasoning: bool = False
    #: The steps whose fields it reads (template and ``when``), in the order first read.
    reads: tuple[str, ...] = ()
    retry: RequestKind | None = None
    retry_hasher: RequestHasher | None = None
    #: The one-prompt job's completion column (a named step's is ``<name>_completion``).
    completion_column: str = "completion"

    @property
    def output(self) -> OutputSchema | None:
        return self.kind.output

    @property
    def prefix(self) -> str:
        """What the step's result columns start with (``""`` for a one-prompt job)."""
        return "" if self.name is None else f"{self.name}_"

    def column(self, field: str) -> str:
        """The output column of result field ``field`` (``completion``, ``status``...)."""
        if self.name is None and field == "completion":
            return self.completion_column
        return f"{self.prefix}{field}"

    def fields_of(self, completion: str | None) -> dict[str, Any]:
        """The fields an ``ok`` answer offers to later steps."""
        values = {} if self.output is None else (self.output.values(completion) or {})
        return {COMPLETION_FIELD: completion, **values}

    def skip_reason(self, fields: Mapping[str, Sequence[RowFields]], row: int) -> str | None:
        """Why ``row`` skips this step (None: it runs): a step it reads did not answer the
        row, or its ``when:`` is false."""
        for name in self.reads:
            if fields[name][row] is None:
                return f"{name} did not answer this row"
        if self.when is not None and not self.when.holds(
            lambda step, field: (fields[step][row] or {}).get(field)
        ):
            return "when"
        return None

    def render(
        self,
        columns: Mapping[str, Sequence[Any]],
        fields: Mapping[str, Sequence[RowFields]],
        rows: Sequence[int],
    ) -> list[list[dict[str, str]]]:
        """The messages of ``rows`` (indices into the chunk): input ``columns`` and earlier
        steps' ``fields`` spliced into the template."""
        values: dict[str, list[Any]] = {
            c: [columns[c][r] for r in rows] for c in self.template.columns
        }
        for step, field in self.template.step_fields:
            values[f"{step}.{field}"] = [(fields[step][r] or {}).get(field) for r in rows]
        users = self.template.render_users(values, len(rows))
        return [self.template.messages(u) for u in users]


def _params(base: ModelParams, override: ModelParams | None, keep_reasoning: bool) -> ModelParams:
    """``base`` with the keys ``override`` sets; ``reasoning_format: parsed`` when the
    reasoning is kept and no format is set."""
    if override is not None:
        base = base.model_copy(update={k: getattr(override, k) for k in override.model_fields_set})
    if keep_reasoning and base.reasoning_format is None:
        base = base.model_copy(update={"reasoning_format": "parsed"})
    return base


def build_steps(config: JobConfig, endpoint: str) -> list[Step]:
    """The job's steps in run order (one unnamed step for a one-prompt job)."""
    retry = config.execution.empty_length_retry
    specs: list[tuple[str | None, Any]] = (
        [(None, config.prompt)]
        if config.prompt is not None
        else [(s.name, s) for s in config.steps or ()]
    )
    order = check_steps(config)
    by_name = dict(specs)
    if order:
        specs = [(name, by_name[name]) for name in order]
    steps = []
    for name, spec in specs:
        model = getattr(spec, "model", None) or config.model
        params = _params(config.params, getattr(spec, "params", None), spec.keep_reasoning)
        prefix = name or config.output.completion_column
        output = (
            None if spec.output_schema is None else OutputSchema(spec.output_schema, prefix=prefix)
        )
        fields = params.request_fields()
        retry_params = None
        if retry.enabled:
            budget = math.ceil(params.max_completion_tokens * retry.budget_factor)
            effort = retry.reasoning_effort or params.reasoning_effort
            changed = params.model_copy(
                update={"max_completion_tokens": budget, "reasoning_effort": effort}
            )
            if changed != params:
                retry_params = changed
        kind = RequestKind(
            model,
            fields,
            params.max_completion_tokens,
            output,
            retries_empty=retry_params is not None,
            repairs_invalid=output is not None and config.execution.repair_invalid_output,
        )
        template = PromptTemplate.compile(spec.system, spec.template, step_fields=name is not None)
        when_text = getattr(spec, "when", None)
        when = None if when_text is None else parse_when(when_text)
        reads = [s for s, _ in template.step_fields] + [s for s, _ in (when.refs if when else ())]
        retry_kind = retry_hasher = None
        if retry_params is not None:
            retry_kind = RequestKind(
                model, retry_params.request_fields(), retry_params.max_completion_tokens, output
            )
            retry_hasher = RequestHasher(
                endpoint, model, retry_kind.params, retry_kind.response_format
            )
        steps.append(
            Step(
                name=name,
                template=template,
                kind=kind,
                hasher=RequestHasher(endpoint, model, fields, kind.response_format),
                when=when,
                keep_reasoning=spec.keep_reasoning,
                reads=tuple(dict.fromkeys(reads)),
                retry=retry_kind,
                retry_hasher=retry_hasher,
                completion_column=config.output.completion_column,
            )
        )
    return steps
