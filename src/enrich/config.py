"""The job config: what to read, how to prompt, which model, where to write, how fast to go.

A job is one YAML file (``configs/<name>.yaml``) validated by :class:`JobConfig`. Every model
forbids unknown keys, so a typo fails loudly instead of silently falling back to a default.
:func:`load_job_config` reads the file, applies ``KEY.PATH=VALUE`` overrides and validates;
every failure is a one-line :class:`ConfigError` naming the file and the key path.

Paths are kept exactly as written: a relative ``input.path`` or ``output.path`` resolves against
the current working directory of the process that runs the job (not the config file's folder),
so ``data/reviews.jsonl`` works when the job runs from the repository root.

Later extensions fit without breaking existing files: a structured-output schema becomes an
optional key of :class:`PromptSpec`, and several prompts per job a new optional ``prompts`` map
next to ``prompt``.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from enrich.errors import ConfigError
from enrich.template import PromptTemplate

__all__ = [
    "ApiSpec",
    "ExecutionSpec",
    "InputSpec",
    "JobConfig",
    "ModelParams",
    "OutputSpec",
    "PricingSpec",
    "PromptSpec",
    "RetrySpec",
    "load_job_config",
]

_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
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
    """

    system: str | None = None
    template: str = Field(min_length=1)

    @field_validator("system", "template")
    @classmethod
    def _check_syntax(cls, value: str | None, info: ValidationInfo) -> str | None:
        # Compile here too, so a bad field fails when the config loads, naming the file.
        if value is not None:
            try:
                if info.field_name == "system":
                    PromptTemplate.compile(value, "-")
                else:
                    PromptTemplate.compile(None, value)
            except ConfigError as exc:
                raise ValueError(str(exc).split(": ", 1)[1]) from None
        return value


class ModelParams(_Spec):
    """Sampling parameters sent with every request (``None`` means the provider's default)."""

    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_completion_tokens: int = Field(default=256, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    # Reasoning models spend completion tokens on reasoning first; a tight token budget needs
    # ``low`` (or ``none`` where the model supports it) to leave room for the answer.
    reasoning_effort: Literal["none", "low", "medium", "high"] | None = None
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


class ExecutionSpec(_Spec):
    """How the job runs: chunking, concurrency, the account's rate limits, checkpoints.

    The ``*_per_minute`` and ``*_per_day`` limits are the account's quotas (``None``: not
    enforced locally; the provider's headers and 429s still pace the run). With
    ``adaptive_limits`` the rate controller follows the limits the provider reports.
    """

    rows_per_chunk: int = Field(default=1000, ge=1)
    chunks_in_flight: int = Field(default=4, ge=1)
    max_concurrency: int = Field(default=64, ge=1)
    requests_per_minute: float | None = Field(default=None, gt=0)
    tokens_per_minute: float | None = Field(default=None, gt=0)
    requests_per_day: float | None = Field(default=None, gt=0)
    tokens_per_day: float | None = Field(default=None, gt=0)
    adaptive_limits: bool = True
    retry: RetrySpec = RetrySpec()
    request_timeout: float = Field(default=60, gt=0)
    journal_interval_s: float = Field(default=2.0, gt=0)
    journal_rows: int = Field(default=200, ge=1)
    # Results of this many recent requests stay in memory, so a row repeating an earlier
    # chunk's request is filled without sending it again (0 turns that off).
    dedupe_window: int = Field(default=100_000, ge=0)


class PricingSpec(_Spec):
    """US dollars per million prompt (input) and completion (output) tokens, for cost columns."""

    input_per_million: float = Field(default=0, ge=0)
    output_per_million: float = Field(default=0, ge=0)


class ApiSpec(_Spec):
    """Where requests go and where the key comes from.

    ``base_url`` set here wins; otherwise the ``CEREBRAS_BASE_URL`` environment variable, and
    otherwise the SDK's default endpoint. The key is read from the environment variable named by
    ``api_key_env``, or from the Prefect Secret block ``secret_block`` (resolved by the flow,
    never by the engine).
    """

    base_url: str | None = None
    api_key_env: str = Field(default="CEREBRAS_API_KEY", min_length=1)
    secret_block: str | None = None

    def resolve_base_url(self, environ: Mapping[str, str]) -> str | None:
        """The endpoint to use: this config's ``base_url``, else ``CEREBRAS_BASE_URL``."""
        return self.base_url or environ.get("CEREBRAS_BASE_URL") or None


class JobConfig(_Spec):
    """One enrichment job. ``name`` defaults to the config file's stem when loaded from a file."""

    name: str
    input: InputSpec
    prompt: PromptSpec
    model: str = Field(min_length=1)
    params: ModelParams = ModelParams()
    output: OutputSpec
    execution: ExecutionSpec = ExecutionSpec()
    pricing: PricingSpec = PricingSpec()
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


def load_job_config(
    path: str | Path, overrides: Sequence[str] | Mapping[str, Any] = ()
) -> JobConfig:
    """Read, override and validate the job config at ``path``.

    ``overrides`` are ``KEY.PATH=VALUE`` strings (``execution.max_concurrency=128``,
    ``params.stop=["a","b"]``) or a mapping ``{"key.path": value}``. A string VALUE is parsed as
    YAML (so numbers, booleans, lists and ``null`` get their types), except for text fields such
    as ``prompt.template`` or ``model``, which take the text verbatim unless it is a quoted YAML
    string. Missing intermediate mappings are created.

    Raises:
        ConfigError: one line naming the file and the key path, e.g.
            ``configs/x.yaml: execution.max_concurency: unknown key``.
    """
    where = str(path)
    data = _read_yaml(Path(path), where)
    overridden = _apply_overrides(data, overrides, where)
    data.setdefault("name", Path(path).stem)
    try:
        return JobConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe_validation(exc, data, where, overridden)) from None


def _read_yaml(path: Path, where: str) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: cannot read ({type(exc).__name__}: {exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        line = f":{exc.problem_mark.line + 1}" if exc.problem_mark is not None else ""
        raise ConfigError(f"{where}{line}: invalid YAML ({exc.problem or exc.context})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: invalid YAML ({exc})") from None
    if data is None:
        raise ConfigError(f"{where}: the file is empty")
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of keys at the top level")
    return data


def _apply_overrides(
    data: dict[str, Any], overrides: Sequence[str] | Mapping[str, Any], where: str
) -> list[tuple[str, ...]]:
    """Set each override in ``data`` in place; return the key paths that were set."""
    if isinstance(overrides, Mapping):
        pairs = [(str(k), v) for k, v in overrides.items()]
    else:
        pairs = []
        for item in overrides:
            key, sep, text = item.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"{where}: override {item!r}: expected KEY.PATH=VALUE")
            pairs.append((key.strip(), _parse_value(key.strip(), text)))
    done = []
    for key, value in pairs:
        keys = tuple(key.split("."))
        if not all(keys):
            raise ConfigError(f"{where}: override {key!r}: empty key in the path")
        node = data
        for depth, part in enumerate(keys[:-1]):
            child = node.get(part)
            if child is None:  # absent, or an empty section (``params:`` with nothing under it)
                child = node[part] = {}
            if not isinstance(child, dict):
                prefix = ".".join(keys[: depth + 1])
                raise ConfigError(f"{where}: override {key!r}: {prefix} is not a mapping")
            node = child
        node[keys[-1]] = value
        done.append(keys)
    return done


def _parse_value(key: str, text: str) -> Any:
    """A string override's value: YAML, or the verbatim text for text fields."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if _is_text_field(key.split(".")):
        return value if isinstance(value, str) else text
    return value


def _is_text_field(keys: Sequence[str]) -> bool:
    """Whether the key path names a field declared as ``str`` (or ``str | None``)."""
    model: type[BaseModel] = JobConfig
    annotation: Any = None
    for depth, part in enumerate(keys):
        field = model.model_fields.get(part)
        if field is None:
            return False
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        elif depth < len(keys) - 1:
            return False
    if annotation is str:
        return True
    is_union = isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is (
        typing.Union
    )
    return is_union and set(typing.get_args(annotation)) == {str, type(None)}


def _describe_validation(
    exc: ValidationError, data: Mapping[str, Any], where: str, overridden: list[tuple[str, ...]]
) -> str:
    errors = exc.errors()
    first = errors[0]
    loc = _display_loc(first["loc"], data, missing=first["type"] == "missing")
    if first["type"] == "extra_forbidden":
        message = "unknown key" + _suggestion(loc)
    elif first["type"] == "missing":
        message = "field required"
    else:
        message = str(first["msg"]).removeprefix("Value error, ")
    key = ".".join(str(p) for p in loc)
    if any(loc[: len(o)] == o for o in overridden):
        message += " (set by an override)"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {key or '(top level)'}: {message}{more}"


def _display_loc(
    loc: tuple[int | str, ...], data: Mapping[str, Any], *, missing: bool
) -> tuple[str, ...]:
    """The key path a person wrote, without pydantic's union-member tags."""
    parts: list[str] = []
    node: Any = data
    for i, part in enumerate(loc):
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_dict or in_list:
            parts.append(str(part))
            node = node[part]
        elif missing and i == len(loc) - 1:
            parts.append(str(part))
    return tuple(parts)


def _suggestion(loc: tuple[str, ...]) -> str:
    """`` (did you mean 'x'?)`` when an unknown key is close to a known one."""
    model: type[BaseModel] = JobConfig
    for part in loc[:-1]:
        field = model.model_fields.get(part)
        annotation = field.annotation if field is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return ""
        model = annotation
    close = difflib.get_close_matches(loc[-1], list(model.model_fields), n=1) if loc else []
    return f" (did you mean {close[0]!r}?)" if close else ""
