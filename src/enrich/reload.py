"""Changing a running job's limits: on SIGHUP, re-read the job config and apply its limits.

``kill -HUP <pid>`` makes a process that is running a job (``enrich run``, with or without
Prefect, or a flow run started by a worker) re-read the job's config file and hand the limits in
its ``execution`` section to the rate controller at once (:data:`LIVE_LIMITS`). Waiting
requests see the new limits within half a second; nothing in flight is interrupted.

* Only these limits change. Everything else in the file (prompt, model, parameters, chunking)
  shapes the job's identity and waits for the next run.
* A limit whose running value differs from the file's value when the run started was set by an
  override (``--set execution.requests_per_minute=...``, a flow's ``overrides``): it keeps its
  overridden value, as an override wins over the file at start too.
* A file that no longer reads or validates changes nothing; the error is logged as a warning.
* ``max_concurrency`` can be lowered at will; raised above its starting value, requests beyond
  the connection pool (sized at start) wait for a connection.

The decisions are pure functions (:func:`overridden`, :func:`changes`); :class:`LimitReloader`
does the reading and applying, and :func:`reload_on_sighup` wires it to the running event loop.

A SIGHUP outside that window (while the job is prepared, after the engine closed, or with no
file to reload from) must not end the process, as the default action would: ``enrich run``
holds :func:`sighup_logged` for its whole life, which logs that there was nothing to reload.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from enrich.config import JobConfig, load_job_config
from enrich.config.schema import ExecutionSpec
from enrich.errors import EnrichError
from enrich.ratelimit import RateController

__all__ = [
    "LIVE_LIMITS",
    "LimitReloader",
    "apply_limits",
    "changes",
    "live_limits",
    "overridden",
    "reload_on_sighup",
    "sighup_logged",
]

log = logging.getLogger("enrich.reload")

#: ``execution`` keys a reload applies to the running rate controller.
LIVE_LIMITS: tuple[str, ...] = (
    "max_concurrency",
    "requests_per_minute",
    "tokens_per_minute",
    "requests_per_day",
    "tokens_per_day",
)

Limits = dict[str, Any]


def live_limits(execution: ExecutionSpec) -> Limits:
    """The :data:`LIVE_LIMITS` of an ``execution`` section."""
    return {name: getattr(execution, name) for name in LIVE_LIMITS}


def overridden(running: Mapping[str, Any], in_file: Mapping[str, Any]) -> frozenset[str]:
    """Limits whose running value is not the file's: set by an override, kept across reloads."""
    return frozenset(name for name in LIVE_LIMITS if running[name] != in_file[name])


def changes(
    current: Mapping[str, Any], pinned: frozenset[str], in_file: Mapping[str, Any]
) -> Limits:
    """What a reload changes: the file's value of every limit that is not pinned and differs."""
    return {
        name: in_file[name]
        for name in LIVE_LIMITS
        if name not in pinned and in_file[name] != current[name]
    }


def apply_limits(controller: RateController, limits: Mapping[str, Any]) -> None:
    """Hand ``limits`` (names as in :data:`LIVE_LIMITS`) to the controller."""
    kwargs: dict[str, Any] = {}
    for name, value in limits.items():
        kwargs["max_in_flight" if name == "max_concurrency" else name] = value
    controller.update_limits(**kwargs)


class LimitReloader:
    """Re-reads one job's config file and applies its limits to one controller.

    ``running`` is the config the job started with (file plus overrides); the file is read once
    here to tell which limits were overridden. ``load`` reads the file (injectable for tests).
    """

    def __init__(
        self,
        controller: RateController,
        path: Path,
        running: JobConfig,
        *,
        load: Callable[[Path], JobConfig] = load_job_config,
    ) -> None:
        self.controller = controller
        self.path = path
        self._load = load
        self._current = live_limits(running.execution)
        self._pinned = overridden(self._current, live_limits(load(path).execution))

    @property
    def limits(self) -> Limits:
        """The limits in force, as far as reloads are concerned."""
        return dict(self._current)

    def reload(self) -> Limits:
        """Re-read the file and apply what changed; returns the changes (empty on an error)."""
        try:
            config = self._load(self.path)
        except EnrichError as exc:
            log.warning("limits not reloaded, the config did not load: %s", exc)
            return {}
        diff = changes(self._current, self._pinned, live_limits(config.execution))
        try:
            apply_limits(self.controller, diff)
        except ValueError as exc:
            log.warning("limits not reloaded from %s: %s", self.path, exc)
            return {}
        if diff:
            shown = ", ".join(f"{k} {self._current[k]} -> {v}" for k, v in diff.items())
            log.warning("reloaded limits from %s: %s", self.path, shown)
        else:
            log.warning("reloaded %s: no limit changed", self.path)
        self._current.update(diff)
        return diff


def _nothing_to_reload(signum: int, frame: FrameType | None) -> None:
    log.warning("SIGHUP: no job is running in this process, nothing to reload")


@contextmanager
def sighup_logged() -> Iterator[None]:
    """While the block runs, a SIGHUP that no run's reloader takes is logged, not fatal.

    :func:`reload_on_sighup` takes the signal over while a run's engine is open and hands it
    back after. Outside the main thread (where no handler can be set) this does nothing.
    """
    sighup = getattr(signal, "SIGHUP", None)
    if sighup is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(sighup, _nothing_to_reload)
    try:
        yield
    finally:
        signal.signal(sighup, previous)


@contextmanager
def reload_on_sighup(
    controller: RateController, config: JobConfig, where: str
) -> Iterator[LimitReloader | None]:
    """While the block runs, SIGHUP reloads the limits in ``where`` (the job's config file).

    Yields the reloader, which holds the event loop's SIGHUP handler until the block ends; or
    ``None`` when there is nothing to reload from (``where`` is not a file), no way to receive
    the signal (not the main thread, or no SIGHUP on this platform), or another run in this
    process holds SIGHUP already (one signal can reach one reloader). Call it with the event
    loop running.
    """
    path = Path(where)
    sighup = getattr(signal, "SIGHUP", None)
    if sighup is None or not path.is_file():
        yield None
        return
    previous = signal.getsignal(sighup)
    if previous not in (signal.SIG_DFL, signal.SIG_IGN, None, _nothing_to_reload):
        log.warning("limits of %s do not reload on SIGHUP: another run in this process does", path)
        yield None
        return
    try:
        reloader = LimitReloader(controller, path, config)
    except EnrichError as exc:
        log.warning("limits cannot be reloaded from %s: %s", path, exc)
        yield None
        return
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(sighup, reloader.reload)
    except (RuntimeError, ValueError, NotImplementedError):
        yield None  # not the main thread: signals cannot reach this loop
        return
    try:
        yield reloader
    finally:
        loop.remove_signal_handler(sighup)  # which leaves the default action: restore ours
        if previous is not None:
            signal.signal(sighup, previous)
