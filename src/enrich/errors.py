"""The engine's exception tree.

* EnrichError                 -- anything the engine raises on purpose
  + ConfigError               -- the job config is invalid (names the file and key path)
  + InputError                -- the input cannot be read (names the file, and the line when known)
    + InputChanged            -- an input file is not the version that was planned
  + StorageError              -- object storage refused or failed (names the URL)
  + QuotaExhausted            -- a daily quota is gone; the run stops cleanly and can resume
  + BudgetReached             -- the run's budget is spent; it stops like a spent quota
  + CompletionError           -- one chat completion failed (status, code, retry hints)
  + RunStopped                -- the run stopped before committing (a job error, too many errors)

Every message is one line meant for a person: what is wrong and where.
"""

from __future__ import annotations

from collections.abc import Mapping


class EnrichError(Exception):
    """Base class of every error the engine raises deliberately."""


class ConfigError(EnrichError):
    """The job config is invalid; the message names the file and the key path."""


class InputError(EnrichError):
    """The input cannot be read; the message names the object (and line, when known)."""


class InputChanged(InputError):
    """An input file was rewritten since it was planned; the message says what changed."""


class StorageError(EnrichError):
    """Object storage failed or refused; the message names the URL."""


class QuotaExhausted(EnrichError):
    """A daily quota is used up. ``resets_in`` is seconds until the provider resets it."""

    def __init__(self, which: str, resets_in: float | None) -> None:
        self.which = which
        self.resets_in = resets_in
        when = f"; it resets in {resets_in:.0f} s" if resets_in is not None else ""
        super().__init__(f"daily {which} quota exhausted{when}; rerun the job to resume")


class CompletionError(EnrichError):
    """One chat completion failed.

    ``status`` is the HTTP status (``None`` for transport faults), ``code`` a short machine name
    (``timeout``, ``connection``, ``model_not_found``, ``token_quota_exceeded``...), ``headers``
    the response headers when there was a response. ``retryable`` is decided by
    :func:`enrich.retry.is_retryable`, not here.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.headers: Mapping[str, str] = headers or {}

    @property
    def kind(self) -> str:
        """A short label for grouping errors in reports: ``http_429``, ``timeout``..."""
        if self.status is not None:
            return f"http_{self.status}"
        return self.code or "error"


class RunStopped(EnrichError):
    """The run stopped without committing: an error of the job (a refused key, an unknown
    model, an endpoint that is not a chat API) or too many error rows. One line for a person.

    ``kind`` says which, for whoever reacts to a stopped run: ``job_error`` or ``error_rate``.
    """

    def __init__(self, message: str, kind: str = "job_error") -> None:
        super().__init__(message)
        self.kind = kind


class BudgetReached(EnrichError):
    """The next request would pass the run's budget (``budget.*``): the run stops the way a
    spent daily quota stops it (requests in flight finish and are journaled, no chunk is
    half-committed) and a rerun with a higher budget resumes. One line for a person."""
