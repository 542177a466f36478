"""The job config's schema: what to read, how to prompt, which model, where to write, how fast.

A job is one YAML file (``configs/<name>.yaml``) validated by :class:`JobConfig`. Every model
forbids unknown keys, so a typo fails loudly instead of silently falling back to a default,
and every model is frozen. Reading a file and applying overrides is
:mod:`enrich.config.loader`'s business, not this module's.

Paths are kept exactly as written: a relative ``input.path`` or ``output.path`` resolves against
the current working directory of the process that runs the job (not the config file's folder),
so ``data/reviews.jsonl`` works when the job runs from the repository root.

A job asks either one ``prompt`` (a one-step job, as every job did before steps) or a list of
``steps`` (:class:`StepSpec`), each with its own prompt, model, parameters and output schema,
which may read earlier steps' fields; which steps read which is checked by
:func:`enrich.steps.check_steps` when the file is loaded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from enrich.config.guard import insecure_reason
from enrich.errors import ConfigError
from enrich.steps.when import WhenError, parse_when
from enrich.structured.fields import FieldListError, field_list_schema, is_json_schema
from enrich.template import PromptTemplate

ReasoningEffort = Literal["none", "low", "medium", "high"]

__all__ = [
    "ApiSpec",
    "BudgetSpec",
    "EmptyLengthRetry",
    "ExecutionSpec",
    "InputSpec",
    "JobConfig",
    "ModelParams",
    "OutputSpec",
    "PricingSpec",
    "PromptSpec",
    "RetrySpec",
    "StepSpec",
]

_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
# A step's name is a prefix of its columns and the left half of ``{step.field}``.
_STEP_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_MAX_STOP_SEQUENCES = 4


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputSpec(_Spec):
    """Where the rows come from.

    ``path`` is a local path, an fsspec URL (``s3://``, ``file://``, ``memory://``), a directory
    or a glob; a ``{date}`` field in it (``s3://raw/dt={date}/*.parquet``) makes the job
    partitioned by day (see :mod:`enrich.partitions`). ``format=None`` infers it from each
    file's extension. ``columns`` picks the input columns kept in the output (``None`` keeps
    all); ``id_column`` names a column of unique row keys (``None`` derives row ids from file
    and position).
    """

    path: str = Field(min_length=1)
    format: Literal["parquet", "jsonl"] | None = None
    id_column: str | None = None
    columns: list[str] | None = None
    storage_options: dict[str, Any] = {}


class PromptSpec(_Spec):
    """The chat messages sent for each row: a static system message and a user template.

    The template uses ``{column}`` fields and ``{{``/``}}`` for literal braces; see
    :mod:`enrich.template`.

    ``output_schema`` asks for structured output: a JSON Schema object, or a short field list
    (``{sentiment: "enum[positive, negative]", score: int}``, see
    :mod:`enrich.structured.fields`) that is turned into one here, so the loaded config always
    holds a JSON Schema. Whether strict mode accepts it is checked when the job is prepared
    (:func:`enrich.structured.check_output_schema`), where every finding can be listed.
    """

    system: str | None = None
    template: str = Field(min_length=1)
    output_schema: dict[str, Any] | None = None
    #: Keep the model's reasoning text in a column (asks for ``reasoning_format: parsed``).
    keep_reasoning: bool = False

    @field_validator("system", "template")
    @classmethod
    def _check_syntax(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _check_template(value, info, step_fields=False)

    @field_validator("output_schema")
    @classmethod
    def _to_json_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return _json_schema(value)


def _check_template(value: str | None, info: ValidationInfo, *, step_fields: bool) -> str | None:
    # Compile here too, so a bad field fails when the config loads, naming the file.
    if value is not None:
        try:
            if info.field_name == "system":
                PromptTemplate.compile(value, "-")
            else:
                PromptTemplate.compile(None, value, step_fields=step_fields)
        except ConfigError as exc:
            raise ValueError(str(exc).split(": ", 1)[1]) from None
    return value


def _json_schema(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is None or is_json_schema(value):
        return value
    try:
        return field_list_schema(value)
    except FieldListError as exc:
        raise ValueError(f"field {exc}") from None


class ModelParams(_Spec):
    """Sampling parameters sent with every request (``None`` means the provider's default)."""

    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_completion_tokens: int = Field(default=256, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    # Reasoning models spend completion tokens on reasoning first; a tight token budget needs
    # ``low`` (or ``none`` where the model supports it) to leave room for the answer.
    reasoning_effort: ReasoningEffort | None = None
    # parsed: the reasoning comes back as its own field (``message.reasoning``); raw: inside
    # the content; hidden: dropped (its tokens still count); none: no reasoning.
    reasoning_format: Literal["parsed", "raw", "hidden", "none"] | None = None
    stream: bool = False

    @field_validator("stop", mode="before")
    @classmethod
    def _check_stop(cls, value: Any) -> Any:
        ok = value is None or isinstance(value, str)
        if isinstance(value, list):
            ok = len(value) <= _MAX_STOP_SEQUENCES and all(isinstance(s, str) for s in value)
        if not ok:
            raise ValueError(f"must be a string or a list of at most {_MAX_STOP_SEQUENCES} strings")
        return value

    def request_fields(self) -> dict[str, Any]:
        """The parameters to put in the request body: every field that is not ``None``."""
        return self.model_dump(exclude_none=True)


class StepSpec(_Spec):
    """One step of a job: a prompt, the model and parameters it goes to, its output schema.

    ``template`` may read the input's columns and earlier steps' fields (``{triage.label}``;
    ``{step.completion}`` is a step's text). ``model`` and ``params`` default to the job's;
    ``params`` set here replace the job's keys they name and keep the rest. ``when`` is a
    condition on earlier steps' fields (:mod:`enrich.steps.when`): a row for which it is false
    skips the step (no request, no cost).
    """

    name: str
    system: str | None = None
    template: str = Field(min_length=1)
    output_schema: dict[str, Any] | None = None
    model: str | None = Field(default=None, min_length=1)
    params: ModelParams | None = None
    when: str | None = None
    keep_reasoning: bool = False

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _STEP_NAME.match(value):
            raise ValueError(
                f"{value!r}: a step's name is lowercase letters, digits and '_', starting with "
                "a letter (it prefixes the step's columns)"
            )
        return value

    @field_validator("system", "template")
    @classmethod
    def _check_syntax(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _check_template(value, info, step_fields=True)

    @field_validator("output_schema")
    @classmethod
    def _to_json_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return _json_schema(value)

    @field_validator("when")
    @classmethod
    def _check_when(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_when(value)
            except WhenError as exc:
                raise ValueError(str(exc)) from None
        return value


class OutputSpec(_Spec):
    """Where the enriched dataset is committed, and the name of the completion column."""

    path: str = Field(min_length=1)
    format: Literal["parquet", "jsonl"] = "parquet"
    completion_column: str = Field(default="completion", min_length=1)
    storage_options: dict[str, Any] = {}


class RetrySpec(_Spec):
    """Retries of one request after a transient failure (jittered exponential backoff)."""

    attempts: int = Field(default=6, ge=1)
    backoff_initial: float = Field(default=0.5, ge=0)
    backoff_max: float = Field(default=30, ge=0)

    @model_validator(mode="after")
    def _check_backoff(self) -> RetrySpec:
        if self.backoff_max < self.backoff_initial:
            raise ValueError("backoff_max must be at least backoff_initial")
        return self


class EmptyLengthRetry(_Spec):
    """The one retry of an answer that came back empty because reasoning used the whole
    ``max_completion_tokens`` (kind ``empty_length``): a larger budget, a lower effort, or both.

    The retry is a request of its own (its parameters differ, so does its request hash); a
    row whose retry is empty too is an error of kind ``empty_length_after_retry``.
    """

    enabled: bool = True
    #: ``max_completion_tokens`` of the retry: the step's times this.
    budget_factor: float = Field(default=2.0, ge=1)
    #: ``reasoning_effort`` of the retry (None: the step's own).
    reasoning_effort: ReasoningEffort | None = None


class ExecutionSpec(_Spec):
    """How the job runs: chunking, concurrency, the account's rate limits, checkpoints.

    ``rows_per_chunk`` left unset (or ``auto``) is chosen from the limits, never from the
    input, so a growing input keeps its chunks (:func:`enrich.planning.chunk_size`).

    The ``*_per_minute`` and ``*_per_day`` limits are the account's quotas (``None``: not
    enforced locally; the provider's headers and 429s still pace the run). With
    ``adaptive_limits`` the rate controller follows the limits the provider reports.

    ``fleet``: the per-minute limits are the budget of a whole fleet of processes, shared
    through Prefect global concurrency limits named after ``fleet_name`` (default: the model);
    unset, it is on for a deployment's flow runs (what workers run) and off otherwise.
    """

    # None (or "auto" in a file): sized from the limits below, see enrich.planning.chunk_size.
    rows_per_chunk: int | None = Field(default=None, ge=1)
    chunks_in_flight: int = Field(default=4, ge=1)
    # Flow runs one run of the job may split into (shards of its chunks, each on any worker,
    # committed once at the end); only through Prefect, see enrich.shards. 1: no split.
    parallelism: int = Field(default=1, ge=1, le=1000)
    max_concurrency: int = Field(default=64, ge=1)
    requests_per_minute: float | None = Field(default=None, gt=0)
    tokens_per_minute: float | None = Field(default=None, gt=0)
    requests_per_day: float | None = Field(default=None, gt=0)
    tokens_per_day: float | None = Field(default=None, gt=0)
    adaptive_limits: bool = True
    fleet: bool | None = None
    fleet_name: str | None = Field(default=None, min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    retry: RetrySpec = RetrySpec()
    request_timeout: float = Field(default=60, gt=0)
    journal_interval_s: float = Field(default=2.0, gt=0)
    journal_rows: int = Field(default=200, ge=1)
    # Results of this many recent requests stay in memory, so a row repeating an earlier
    # chunk's request is filled without sending it again (0 turns that off).
    dedupe_window: int = Field(default=100_000, ge=0)
    # Past this share of error results (judged after 20), the run stops and commits nothing:
    # a prompt or budget that fails half its rows is a broken job, not bad rows. 1 turns it off.
    max_error_share: float = Field(default=0.5, ge=0, le=1)
    empty_length_retry: EmptyLengthRetry = EmptyLengthRetry()
    # An answer that does not parse or match the output schema is asked once more, with the
    # answer and what is wrong with it (a request of its own); still invalid, the row is of
    # kind invalid_output_after_repair. Only for steps with an output schema.
    repair_invalid_output: bool = True

    @field_validator("rows_per_chunk", mode="before")
    @classmethod
    def _check_rows_per_chunk(cls, value: Any) -> Any:
        if value == "auto":
            return None
        if isinstance(value, str):
            raise ValueError(f"{value!r}: expected a number of rows or 'auto'")
        return value


class PricingSpec(_Spec):
    """US dollars per million prompt (input) and completion (output) tokens, for cost columns.

    A key left unset (``None``) takes the model's price from the catalogue
    (:func:`enrich.catalogue.job_prices`); one that is set overrides it.
    """

    input_per_million: float | None = Field(default=None, ge=0)
    output_per_million: float | None = Field(default=None, ge=0)


class BudgetSpec(_Spec):
    """Caps on what one run may spend (``None``: no cap); see :mod:`enrich.budget`.

    ``max_usd`` and ``max_tokens`` hold for one run (of one partition). ``monthly_usd`` holds
    across every run writing under ``ledger`` in a calendar month (UTC); ``ledger`` is where
    that month's record is kept, by default the job's output (for a partitioned job, its
    output before the partition's ``{date}``). Budgets are not part of the job's identity:
    raising one and running again resumes the same job.
    """

    max_usd: float | None = Field(default=None, ge=0)
    max_tokens: int | None = Field(default=None, ge=0)
    monthly_usd: float | None = Field(default=None, ge=0)
    ledger: str | None = Field(default=None, min_length=1)


DEFAULT_BASE_URL = "https://api.cerebras.ai"


class ApiSpec(_Spec):
    """Where requests go and where the key comes from.

    ``base_url`` set here wins; otherwise the ``CEREBRAS_BASE_URL`` environment variable, and
    otherwise the SDK's default endpoint. The key is read from the environment variable named by
    ``api_key_env``, or from the Prefect Secret block ``secret_block`` (resolved by the flow,
    never by the engine).

    The key is sent to an ``https`` endpoint only, or over ``http`` to a loopback host (the
    bundled simulator), unless ``allow_insecure`` says otherwise (see :mod:`enrich.config.guard`).
    """

    # Declared first: the base_url check reads it.
    allow_insecure: bool = False
    base_url: str | None = None
    api_key_env: str = Field(default="CEREBRAS_API_KEY", min_length=1)
    secret_block: str | None = None

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            reason = insecure_reason(value, allow_insecure=info.data.get("allow_insecure", False))
            if reason is not None:
                raise ValueError(reason)
        return value

    def resolve_base_url(self, environ: Mapping[str, str]) -> str | None:
        """The endpoint to use: this config's ``base_url``, else ``CEREBRAS_BASE_URL``.

        Raises:
            ConfigError: ``CEREBRAS_BASE_URL`` is an endpoint the key must not be sent to.
        """
        if self.base_url:
            return self.base_url
        url = environ.get("CEREBRAS_BASE_URL") or None
        if url is not None:
            reason = insecure_reason(url, allow_insecure=self.allow_insecure)
            if reason is not None:
                raise ConfigError(f"CEREBRAS_BASE_URL: {reason}")
        return url

    def endpoint(self, environ: Mapping[str, str]) -> str:
        """The base URL requests go to: :meth:`resolve_base_url`, else the default endpoint."""
        return self.resolve_base_url(environ) or DEFAULT_BASE_URL


class JobConfig(_Spec):
    """One enrichment job. ``name`` defaults to the config file's stem when loaded from a file.

    It has a ``prompt`` (one step) or ``steps``, not both.
    """

    name: str
    input: InputSpec
    prompt: PromptSpec | None = None
    steps: list[StepSpec] | None = None
    model: str = Field(min_length=1)
    params: ModelParams = ModelParams()
    output: OutputSpec
    execution: ExecutionSpec = ExecutionSpec()
    pricing: PricingSpec = PricingSpec()
    budget: BudgetSpec = BudgetSpec()
    api: ApiSpec = ApiSpec()

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _SLUG.match(value):
            raise ValueError(
                f"{value!r} must be lowercase letters, digits, '-' and '_' (starting with a "
                "letter or digit)"
            )
        return value

    @model_validator(mode="after")
    def _prompt_or_steps(self) -> JobConfig:
        if self.prompt is None and not self.steps:
            raise ValueError("a job needs a prompt (one step) or steps")
        if self.prompt is not None and self.steps is not None:
            raise ValueError("a job has a prompt or steps, not both (a prompt is one step)")
        return self
