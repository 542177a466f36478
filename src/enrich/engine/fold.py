"""Folding a chunk's results back onto its rows, and counting what the chunk did.

A pure function of what the chunk learned: for each row (in row order) the result of its
request, and the chunk's counters. The rules it keeps:

* the first row of a request this chunk **sent** carries the request's tokens, cost, attempts
  and latency: the chunk paid for it;
* the first row of a request in **known** (a result an earlier run paid for, found in the
  output's result index, whose cost this chunk claimed: no part that stays carries it and no
  other chunk of this run claimed it first; :meth:`enrich.output.index.ResultIndex.claim`)
  keeps its tokens (and so its cost), and counts as reused;
* every other row with that request, and every row whose result came from elsewhere (the
  index when a part that stays or another chunk carries its cost, the recent window, or a
  request another chunk had in flight), gets a shared copy: zero tokens, zero cost, zero
  attempts, and counts as reused;
* a row whose request still failed **transiently** after every retry gets no result: it is
  pending, and the chunk is not committed.

A paying row's ``cost_usd`` is its tokens at the job's current prices (:func:`priced`), never
the cost a journal or an earlier part recorded: a price change re-commits the dataset with new
costs and asks nothing again.

So the token and cost columns of a committed dataset add up to what was paid for the results
it holds, each request once, under any chunking: a chunk committed anew from earlier parts
(after a change of output format, column name or ``rows_per_chunk``, say) reads back the copy
that carried the cost (the index prefers it), and claims it only if nothing that stays
carries it. One case is not covered:
a row whose result was shared from another chunk keeps its zero copy when that chunk's paying
row has since changed (an edited input), so no row carries that cost any more.
"""

from __future__ import annotations

import copy
from collections.abc import Container, Mapping, Sequence
from dataclasses import replace

from enrich.catalogue import Prices
from enrich.errors import CompletionError
from enrich.results import Result
from enrich.summary import ChunkSummary, add_latency

__all__ = ["add_step", "fold_results", "priced"]


def priced(result: Result, pricing: Prices) -> Result:
    """``result`` with ``cost_usd`` recomputed from its tokens at ``pricing``."""
    usage = result.usage
    return replace(result, cost_usd=pricing.cost_usd(usage.prompt_tokens, usage.completion_tokens))


def fold_results(
    start: ChunkSummary,
    hashes: Sequence[str],
    results: Mapping[str, Result],
    *,
    sent: Container[str],
    known: Container[str],
    transient: Mapping[str, CompletionError],
    pricing: Prices,
) -> tuple[list[Result], ChunkSummary]:
    """``(one result per row that has one, start's counters plus this fold's)``.

    ``hashes`` are the rows' request hashes in row order; ``results`` has a result for each
    hash not in ``transient``. Paying rows are costed at ``pricing``. ``start`` is not modified.
    """
    summary = copy.deepcopy(start)
    rows: list[Result] = []
    seen: set[str] = set()
    for h in hashes:
        failure = transient.get(h)
        if failure is not None:
            summary.pending += 1
            summary.add_error(failure.kind, failure.message)
            continue
        result = results[h]
        first = h not in seen
        seen.add(h)
        if first and h in known:
            result = priced(result, pricing)
            summary.reused += 1  # paid for by an earlier run
        elif first and h in sent:
            result = priced(result, pricing)
            summary.attempts += result.attempts
            if result.latency_s is not None:
                add_latency(summary.latency, result.latency_s)
        else:
            result = result.shared()  # another row paid for this request
            summary.reused += 1
        rows.append(result)
        summary.prompt_tokens += result.usage.prompt_tokens
        summary.completion_tokens += result.usage.completion_tokens
        summary.reasoning_tokens += result.usage.reasoning_tokens
        summary.cost_usd += result.cost_usd
        if result.status == "ok":
            summary.ok += 1
        else:
            summary.failed += 1
            summary.add_error(result.error_kind or "error", result.error or "")
    return rows, summary


def add_step(summary: ChunkSummary, tally: ChunkSummary, name: str | None, *, skipped: int) -> None:
    """Add one step's fold (``tally``) to its chunk's ``summary``.

    A one-prompt job's step is the chunk's figures as they are. A named step's figures also go
    to ``summary.steps[name]``, its error kinds are prefixed by its name (``summary:
    invalid_output``), and its rows are not counted ``ok`` or ``failed``: a row's outcome is
    that of all its steps, counted once the chunk has them all.
    """
    if name is None:
        summary.add_tally(tally)
        return
    figures = {
        "requests": tally.requests,
        "ok": tally.ok,
        "failed": tally.failed,
        "skipped": skipped,
        "prompt_tokens": tally.prompt_tokens,
        "completion_tokens": tally.completion_tokens,
        "reasoning_tokens": tally.reasoning_tokens,
        "cost_usd": tally.cost_usd,
    }
    step = replace(
        tally,
        ok=0,
        failed=0,
        errors={f"{name}: {kind}": entry for kind, entry in tally.errors.items()},
        steps={name: figures},
    )
    summary.add_tally(step)
