"""Settings of the Cerebras-compatible simulator.

Three small frozen value objects: `Limits` (the account's quotas), `Faults` (injected failure
rates) and `SimConfig` (everything else). They are built once, at the edge (CLI or test), and
read on every request, so they are plain slotted dataclasses rather than validating models.
`Limits` and `Faults` can be swapped while the server runs; `SimConfig` cannot.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar

# The public catalogue, less the models Cerebras retired (llama3.1-8b and
# qwen-3-235b-a22b-instruct-2507 on 2026-05-27).
DEFAULT_MODELS: tuple[str, ...] = ("gpt-oss-120b", "zai-glm-4.7")

LIMIT_FIELDS: tuple[str, ...] = ("rpm", "tpm", "rpd", "tpd")
FAULT_FIELDS: tuple[str, ...] = (
    "fail_429",
    "fail_500",
    "fail_503",
    "hang",
    "drop",
    "error_body",
    "stream_drop",
    "stream_cut",
    "fail_400",
    "fail_403",
    "invalid_json",
    "truncated_json",
    "reasoning_starved",
)
#: How an injected 429 looks (not probabilities): its code, its `retry-after`, its headers.
FAULT_SHAPE_FIELDS: tuple[str, ...] = ("code_429", "retry_after_429", "headers_429")
# Faults that break a stream after its first deltas; a request that does not stream meets none.
STREAM_FAULTS = frozenset({"stream_drop", "stream_cut"})
# Faults that spoil a structured answer (a 200 all the same); a free-text request meets none.
ANSWER_FAULTS = frozenset({"invalid_json", "truncated_json"})
# Faults that change what the model says rather than how the server answers.
GENERATION_FAULTS = ANSWER_FAULTS | {"reasoning_starved"}

_Settings = TypeVar("_Settings", "Limits", "Faults")


def _replaced(
    settings: _Settings, kind: str, names: tuple[str, ...], changes: Mapping[str, object]
) -> _Settings:
    """`settings` with `changes` applied, as the control routes change them while serving.

    A name outside `names` is a `ValueError` (the routes answer it with a 400); values are
    checked by the new object's `__post_init__`.
    """
    unknown = set(changes) - set(names)
    if unknown:
        raise ValueError(f"unknown {kind} field(s): {', '.join(sorted(unknown))}")
    return dataclasses.replace(settings, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Limits:
    """Quotas enforced with token buckets; `None` means not enforced (a huge limit is reported)."""

    rpm: int | None = None
    tpm: int | None = None
    rpd: int | None = None
    tpd: int | None = None

    def __post_init__(self) -> None:
        for name in LIMIT_FIELDS:
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise ValueError(f"limit {name} must be a positive integer or None, got {value!r}")

    def replace(self, changes: Mapping[str, object]) -> Limits:
        """A copy with `changes` applied; an unknown name is a `ValueError`."""
        return _replaced(self, "limit", LIMIT_FIELDS, changes)


@dataclass(frozen=True, slots=True)
class Faults:
    """Probabilities (0..1) that a chat request fails in a given way; they must sum to <= 1.

    * fail_429 -- 429 `code_429` (default `queue_exceeded`: capacity, not quota), at random
      and whatever the rate, as a provider under load or a proxy answers
    * fail_500, fail_503 -- server errors with a flat error body
    * hang -- no response until the client gives up (or the server stops)
    * drop -- the connection is aborted without a response
    * error_body -- 200 whose body is `{"error": {...}, "status_code": 500}`
    * stream_drop -- a stream's connection is aborted after its first deltas
    * stream_cut -- a stream ends cleanly after its first deltas, with no final chunk (no
      finish_reason, no usage, no `[DONE]`)
    * fail_400 -- 400 `wrong_api_format`, the request's own fault (a row error)
    * fail_403 -- 403 `permission_denied`, a key that may not use the API (the job's error)
    * invalid_json -- a structured answer that is not JSON (a trailing comma), finish "stop"
    * truncated_json -- a structured answer cut in half, finish "length"
    * reasoning_starved -- an empty answer, finish "length": the whole budget
      (`max_completion_tokens`) went on reasoning, and is billed as reasoning tokens

    The two stream faults apply to streamed requests only, and the two JSON faults to requests
    with a `response_format` only: a request that draws one it cannot meet is answered normally
    (and not counted as a fault).

    How an injected 429 looks: `code_429` is its error code (`rate_limit_exceeded` is what
    OpenAI-style servers and proxies send), `retry_after_429` the seconds of its `retry-after`
    header (None: none), and `headers_429` whether it carries the rate-limit headers (a proxy's
    429 carries none of the provider's).
    """

    fail_429: float = 0.0
    fail_500: float = 0.0
    fail_503: float = 0.0
    hang: float = 0.0
    drop: float = 0.0
    error_body: float = 0.0
    stream_drop: float = 0.0
    stream_cut: float = 0.0
    fail_400: float = 0.0
    fail_403: float = 0.0
    code_429: str = "queue_exceeded"
    retry_after_429: float | None = None
    headers_429: bool = True
    invalid_json: float = 0.0
    truncated_json: float = 0.0
    reasoning_starved: float = 0.0

    def __post_init__(self) -> None:
        for name in FAULT_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
                raise ValueError(f"fault rate {name} must be within 0..1, got {value!r}")
        if not isinstance(self.code_429, str) or not self.code_429:
            raise ValueError(f"code_429 must be a non-empty string, got {self.code_429!r}")
        wait = self.retry_after_429
        if wait is not None and (not isinstance(wait, int | float) or not 0 <= wait < 86400):
            raise ValueError(f"retry_after_429 must be seconds or None, got {wait!r}")
        if not isinstance(self.headers_429, bool):
            raise ValueError(f"headers_429 must be true or false, got {self.headers_429!r}")
        if self.total > 1.0 + 1e-9:
            raise ValueError(f"fault rates add up to {self.total:g}, more than 1")

    @property
    def total(self) -> float:
        """Probability that a request meets any fault."""
        return sum(float(getattr(self, name)) for name in FAULT_FIELDS)

    def pick(self, draw: float) -> str | None:
        """The fault that a uniform draw in [0, 1) lands on, or None for a normal answer."""
        edge = 0.0
        for name in FAULT_FIELDS:
            edge += getattr(self, name)
            if draw < edge:
                return name
        return None

    def replace(self, changes: Mapping[str, object]) -> Faults:
        """A copy with `changes` applied; an unknown name is a `ValueError`."""
        return _replaced(self, "fault", FAULT_FIELDS + FAULT_SHAPE_FIELDS, changes)


@dataclass(frozen=True, slots=True)
class SimConfig:
    """Everything the simulator needs to know; defaults give an instant, unlimited server.

    Attributes:
        host, port: where to listen; port 0 picks a free port.
        models: the catalogue; other model ids get 404 `model_not_found`.
        deprecated: models of `models` marked deprecated, each with the date (`YYYY-MM-DD`)
            it stops being served; still served.
        retired: models the provider no longer serves, each with the date it stopped: listed
            by `GET /public/v1/models` flagged so, absent from `/v1/models`, 404 for chat.
        api_keys: accepted keys; empty accepts any key (a missing header is still 403).
        ttft: seconds before the first token.
        tokens_per_second: completion speed; None or 0 means instant.
        max_completion_default: the longest natural completion, in tokens (completions are short).
        context_length: prompt tokens + `max_completion_tokens` above this is a 400.
        reserve_default: tokens reserved for the completion when the request sets no
            `max_completion_tokens` (the provider reserves 16384).
        reasoning_tokens: tokens a reasoning model (`gpt-oss-*`) spends reasoning on each
            request at `reasoning_effort` medium (half at low, twice at high, none at none);
            they count against `max_completion_tokens` and into `completion_tokens`, as
            `usage.completion_tokens_details.reasoning_tokens`, which such a model always reports.
        limits, faults: see `Limits` and `Faults`.
        retry_after: send `retry-after` (whole seconds) on quota 429s.
        openai_headers: also send OpenAI-style `x-ratelimit-*-requests/-tokens` headers.
        seed: seeds fault injection and the response fingerprint.
        shutdown_timeout: seconds to wait for requests in flight when stopping.
    """

    host: str = "127.0.0.1"
    port: int = 0
    models: tuple[str, ...] = DEFAULT_MODELS
    deprecated: Mapping[str, str] = field(default_factory=dict)
    retired: Mapping[str, str] = field(default_factory=dict)
    api_keys: frozenset[str] = field(default_factory=frozenset)
    ttft: float = 0.0
    tokens_per_second: float | None = None
    max_completion_default: int = 48
    context_length: int = 131072
    reserve_default: int = 16384
    reasoning_tokens: int = 0
    limits: Limits = field(default_factory=Limits)
    faults: Faults = field(default_factory=Faults)
    retry_after: bool = True
    openai_headers: bool = False
    seed: int = 0
    shutdown_timeout: float = 1.0

    def __post_init__(self) -> None:
        if self.ttft < 0:
            raise ValueError("ttft must be >= 0")
        if self.tokens_per_second is not None and self.tokens_per_second < 0:
            raise ValueError("tokens_per_second must be >= 0")
        if self.max_completion_default < 1:
            raise ValueError("max_completion_default must be >= 1")
        if self.reasoning_tokens < 0:
            raise ValueError("reasoning_tokens must be >= 0")
        if self.context_length < 1 or self.reserve_default < 1:
            raise ValueError("context_length and reserve_default must be >= 1")
        if not self.models:
            raise ValueError("the model catalogue is empty")
        if set(self.deprecated) - set(self.models):
            raise ValueError("a deprecated model must be one of the models served")
        if set(self.retired) & set(self.models):
            raise ValueError("a retired model cannot be one of the models served")
