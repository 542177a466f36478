"""One request, end to end: admission by the rate controller, the call, retries, the result.

:class:`RequestSender` turns rendered messages into a :class:`~enrich.results.Result`. Each
attempt first takes a permit from the shared rate controller (reserving the prompt's tokens
plus ``max_completion_tokens``) and, when the run has a budget, reserves its worst-case cost
from it (:class:`~enrich.engine.spending.Spending`), calls the
:class:`~enrich.completer.Completer`, and hands the permit back with what the attempt
reported, so the controller re-syncs from every response, and settles the budget at what the
attempt cost.

Outcomes:

* a completion: a Result with its usage, attempts and latency, ``ok`` or not as
  :func:`~enrich.results.completion_status` decides from its ``finish_reason`` (a truncated or
  filtered answer is an ``error`` row that keeps its partial text and its tokens); its cost is
  set when it is folded onto rows, at the prices of that run (:mod:`enrich.engine.fold`).
  With an output schema, a finished answer must also parse and validate
  (:meth:`~enrich.structured.OutputSchema.parse`): one that does not is an ``error`` row of
  kind ``invalid_output`` saying why, with its text and tokens kept;
* a failure that another attempt cannot fix (a 400, a context overflow): an ``error``
  Result, a row error like any other;
* a retryable failure that survived every retry (:func:`~enrich.retry.leaves_rows_pending`):
  :class:`GaveUp` is raised, and the rows that need the request stay pending until the next
  run;
* the run's budget reached (:mod:`enrich.engine.spending`: this attempt could not fit it):
  :class:`~enrich.errors.BudgetReached` is raised, and every later attempt raises it too;
* an error of the job (:func:`~enrich.retry.verdict`: a refused key, an unknown model, an
  endpoint that is not a chat API), or an error share past ``execution.max_error_share``
  (:func:`~enrich.retry.too_many_errors`): :class:`~enrich.errors.RunStopped` is raised, and
  from then on :meth:`RequestSender.send` raises it before sending anything.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from enrich.budget import Charge
from enrich.completer import Completer, Completion, CompletionRequest
from enrich.config.schema import RetrySpec
from enrich.engine.progress import RunProgress
from enrich.engine.spending import Spending
from enrich.errors import CompletionError, RunStopped
from enrich.ratelimit import RateController
from enrich.results import COMPLETION_ERRORS, Result, completion_status
from enrich.retry import JOB_ERRORS, is_retryable, retrying, too_many_errors, verdict
from enrich.steps.step import RequestKind
from enrich.structured import OutputSchema
from enrich.tokens import count_prompt_tokens

__all__ = ["INVALID_OUTPUT", "GaveUp", "RequestSender", "job_error_message"]

#: The error kind of a finished answer that does not parse or match the output schema.
INVALID_OUTPUT = "invalid_output"

_ADVICE: dict[int | str, str] = {
    401: "check {key_env}",
    403: "check {key_env} and what the key may use",
    404: "check `model` ({model!r}) and api.base_url",
    "not_a_completion": "check api.base_url",
}


def job_error_message(error: CompletionError, *, model: str, key_env: str) -> str:
    """The one line that stops a run on an error of the job: what, the server's words, advice."""
    which: int | str = error.status if error.status in JOB_ERRORS else str(error.code)
    advice = _ADVICE[which].format(key_env=key_env, model=model)
    return f"{JOB_ERRORS[which]} ({error.message}): {advice}; nothing was committed"


class GaveUp(Exception):
    """A request that still failed transiently after every retry."""

    def __init__(self, error: CompletionError, attempts: int) -> None:
        super().__init__(error.message)
        self.error = error
        self.attempts = attempts


class RequestSender:
    """Sends requests through one completer and controller: of one model and parameters by
    default, or of the :class:`~enrich.steps.step.RequestKind` a call names (a step's).

    One sender serves every step, so the run stops once for all of them and the error share
    is judged over every result.
    """

    def __init__(
        self,
        completer: Completer,
        controller: RateController,
        *,
        model: str,
        params: Mapping[str, Any],
        max_completion_tokens: int,
        retry: RetrySpec,
        progress: RunProgress,
        api_key_env: str = "CEREBRAS_API_KEY",
        max_error_share: float = 1.0,
        output: OutputSchema | None = None,
        spending: Spending | None = None,
    ) -> None:
        self.completer = completer
        self.spending = spending
        self.controller = controller
        self.progress = progress
        self._model = model
        self._kind = RequestKind(model, params, max_completion_tokens, output)
        self._retry = retry
        self._key_env = api_key_env
        self._max_error_share = max_error_share
        self._results = 0
        self._errors = 0
        #: Why the run stopped, once it has: every later send raises it without sending.
        self.stopped: RunStopped | None = None

    async def send(
        self, messages: Sequence[Mapping[str, str]], kind: RequestKind | None = None
    ) -> Result:
        """Send one request (of ``kind``, else the default) with retries; a final failure
        becomes an error Result.

        The first attempt is made directly; only a retryable failure enters the tenacity loop,
        which then makes the remaining attempts with the same waits (see ``retrying(after=)``).

        Raises:
            GaveUp: the request still failed transiently after every retry.
            RunStopped: the run has stopped (an error of the job, or too many errors).
            BudgetReached: the run's budget cannot take this request.
        """
        if self.stopped is not None:
            raise self.stopped
        kind = kind or self._kind
        request = CompletionRequest(kind.model, messages, kind.params, kind.response_format)
        reserve = count_prompt_tokens(messages) + kind.max_completion_tokens
        started = time.perf_counter()
        self.progress.requests += 1
        try:
            completion = await self._attempt(request, reserve, kind.max_completion_tokens)
            attempts = 1
        except CompletionError as first:
            attempts, outcome = await self._retry_request(
                request, reserve, kind.max_completion_tokens, first
            )
            if isinstance(outcome, CompletionError):
                judged = verdict(outcome)
                if judged == "transient":
                    raise GaveUp(outcome, attempts) from None
                if judged == "job":
                    message = job_error_message(outcome, model=kind.model, key_env=self._key_env)
                    self.stopped = self.stopped or RunStopped(message)
                    raise self.stopped from None
                return self._counted(
                    Result(
                        completion=None,
                        attempts=attempts,
                        status="error",
                        error=outcome.message,
                        error_kind=outcome.kind,
                        latency_s=time.perf_counter() - started,
                    )
                )
            completion = outcome
        usage = completion.usage
        self.progress.prompt_tokens += usage.prompt_tokens
        self.progress.completion_tokens += usage.completion_tokens
        status, error_kind = completion_status(completion.content, completion.finish_reason)
        error = COMPLETION_ERRORS[error_kind] if error_kind else None
        if status == "ok" and kind.output is not None:
            problem = kind.output.parse(completion.content).problem
            if problem is not None:
                status, error_kind, error = "error", INVALID_OUTPUT, problem
        return self._counted(
            Result(
                completion=completion.content,
                finish_reason=completion.finish_reason,
                usage=usage,
                model=completion.model,
                request_id=completion.request_id,
                attempts=attempts,
                latency_s=time.perf_counter() - started,
                status=status,
                error=error,
                error_kind=error_kind,
                reasoning=completion.reasoning,
            ),
            will_retry=(kind.retries_empty and error_kind == "empty_length")
            or (kind.repairs_invalid and error_kind == INVALID_OUTPUT),
        )

    def _counted(self, result: Result, *, will_retry: bool = False) -> Result:
        """Count a result this run paid for, and judge the error share so far (an answer
        that will be asked again is not an error yet)."""
        self._results += 1
        self._errors += result.status != "ok" and not will_retry
        self.judge(self._errors, self._results, result)
        return result

    def judge(self, errors: int, results: int, last: Result | None = None) -> None:
        """Stop the run if ``errors`` of ``results`` pass ``max_error_share`` (enough in)."""
        if self.stopped is None and too_many_errors(errors, results, self._max_error_share):
            said = f"; last: {last.error_kind}: {last.error}" if last is not None else ""
            self.stopped = RunStopped(
                f"{errors} of {results} rows failed ({errors / results:.0%}, more than "
                f"execution.max_error_share {self._max_error_share:.0%}{said}); "
                "nothing was committed",
                kind="error_rate",
            )

    async def _attempt(
        self, request: CompletionRequest, reserve: int, max_completion: int
    ) -> Completion:
        """One attempt: ``reserve`` tokens from the controller, and from the budget the worst
        case of its prompt (``reserve - max_completion``) and ``max_completion`` tokens."""
        permit = await self.controller.acquire(reserve)
        if self.stopped is not None:  # stopped while this request waited for its turn
            self.controller.release(permit, used_tokens=None)
            raise self.stopped
        held = None
        if self.spending is not None:
            worst = self.spending.worst_case(reserve - max_completion, max_completion)
            try:
                held = await self.spending.reserve(worst)
            except BaseException:
                self.controller.release(permit, used_tokens=None)
                raise
        try:
            completion = await self.completer.complete(request)
        except CompletionError as exc:
            # An answer with a status (a 400, a 429, a 5xx) was not billed; an attempt that
            # got no answer (a timeout, a dropped connection) may have been: it keeps its
            # worst case.
            self._settle(held, None if exc.status is None else (0, 0))
            self.controller.release(
                permit, used_tokens=None, headers=exc.headers, status=exc.status, code=exc.code
            )
            raise
        except BaseException:
            self._settle(held, None)
            self.controller.release(permit, used_tokens=None)
            raise
        usage = completion.usage
        self._settle(held, (usage.prompt_tokens, usage.completion_tokens))
        self.controller.release(
            permit,
            used_tokens=usage.total_tokens,
            headers=completion.headers,
            status=200,
        )
        return completion

    def _settle(self, held: Charge | None, tokens: tuple[int, int] | None) -> None:
        """Settle an attempt's reservation at ``(prompt, completion)`` tokens, or keep its
        worst case (``None``: no usage came back)."""
        if self.spending is not None and held is not None:
            actual = None if tokens is None else self.spending.actual(*tokens)
            self.spending.settle(held, actual)

    async def _retry_request(
        self, request: CompletionRequest, reserve: int, max_completion: int, first: CompletionError
    ) -> tuple[int, Completion | CompletionError]:
        """Attempts after a failed first one: ``(attempts made in all, completion or error)``."""
        attempts = 1
        if self._retry.attempts == 1 or not is_retryable(first):
            return attempts, first
        try:
            async for attempt in retrying(
                attempts=self._retry.attempts,
                initial=self._retry.backoff_initial,
                maximum=self._retry.backoff_max,
                after=first,
            ):
                with attempt:
                    attempts += 1
                    self.progress.requests += 1
                    completion = await self._attempt(request, reserve, max_completion)
        except CompletionError as exc:
            return attempts, exc
        return attempts, completion
