"""Which of a chunk's requests to send, which to wait for and which are already answered.

A pure decision, made once per chunk before anything is sent. Each distinct request hash of
the chunk is taken, in row order, from the first of these places that has it:

1. the output's result index (``known``): paid for by an earlier run, under any chunking;
2. the engine's window of recent results: paid for by another chunk of this run;
3. the requests in flight: another chunk is paying for it now, so this chunk waits for it;
4. otherwise this chunk sends it, and pays for it.

A hash that repeats inside the chunk is decided once: the first row that has it stands for
all of them. A request this chunk would send but that cannot fit the model's context
(``fits`` says so of its first row) is not sent: it is an overflow, answered with an error
row without asking (:mod:`enrich.context`).
"""

from __future__ import annotations

from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass, field

from enrich.results import Result

__all__ = ["Selection", "select_requests"]


@dataclass(slots=True)
class Selection:
    """What a chunk does about each distinct request hash (see the module doc)."""

    #: Results taken from the recent window, by hash: nothing is sent for them.
    reuse: dict[str, Result] = field(default_factory=dict)
    #: Hashes another chunk has in flight: this chunk waits for them and does not pay.
    wait: list[str] = field(default_factory=list)
    #: Hashes this chunk sends, each with the index of the first row that needs it.
    send: dict[str, int] = field(default_factory=dict)
    #: Hashes that cannot fit the model's context, each with the index of its first row:
    #: never sent, answered with an error row.
    overflow: dict[str, int] = field(default_factory=dict)


def select_requests(
    hashes: Sequence[str],
    *,
    known: Container[str],
    recent: Mapping[str, Result],
    in_flight: Container[str],
    fits: Callable[[int], bool] | None = None,
) -> Selection:
    """Decide, for each distinct hash of ``hashes`` (in row order), where its result comes from.

    ``fits(row)`` says whether the request of row ``row`` fits the model's context (None: all
    do); it is asked only of requests that would be sent.
    """
    selection = Selection()
    decided: set[str] = set()
    for row, h in enumerate(hashes):
        if h in decided:
            continue
        decided.add(h)
        if h in known:
            continue
        earlier = recent.get(h)
        if earlier is not None:
            selection.reuse[h] = earlier
        elif h in in_flight:
            selection.wait.append(h)
        elif fits is not None and not fits(row):
            selection.overflow[h] = row
        else:
            selection.send[h] = row
    return selection
