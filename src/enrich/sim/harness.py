"""Serving the simulator in-process: on the current event loop, or in a thread of its own.

`LoopSimulator` serves a `SimulatorApp` on the caller's running event loop (`enrich sim` uses
it). `ThreadedSimulator` is the harness for tests and scripts: a context manager that serves on
127.0.0.1 and a free port from a background thread with its own event loop, so synchronous and
asynchronous clients in the calling thread can both use it. Its controls (`stats`, `reset`,
`set_limits`, `set_faults`) run on the server's loop, so they never race a request.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Self, TypeVar

from aiohttp import web

from enrich.sim.config import Faults, Limits, SimConfig
from enrich.sim.handle import SimulatorHandle, running
from enrich.sim.server import SimulatorApp
from enrich.sim.stats import SimStats

T = TypeVar("T")


class LoopSimulator:
    """Serve a `SimulatorApp` on the running event loop until `stop()`."""

    def __init__(self, config: SimConfig, clock: Callable[[], float] | None = None) -> None:
        self.config = config
        self.simulator = SimulatorApp(config, clock or time.monotonic)
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    async def start(self) -> str:
        """Start listening; returns the base URL (`http://host:port`, no `/v1`)."""
        config = self.config
        runner = web.AppRunner(
            self.simulator.app(),
            access_log=None,
            handler_cancellation=True,
            shutdown_timeout=config.shutdown_timeout,
        )
        await runner.setup()
        self._runner = runner
        # A deep backlog: load generators open hundreds of connections at once.
        site = web.TCPSite(runner, config.host, config.port, backlog=2048, reuse_address=True)
        await site.start()
        host, port = runner.addresses[0][:2]
        host = f"[{host}]" if ":" in host else host
        self.base_url = f"http://{host}:{port}"
        return self.base_url

    async def stop(self) -> None:
        """Release hung requests, close connections and stop listening."""
        self.simulator.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


class ThreadedSimulator(SimulatorHandle):
    """The simulator in a background thread; use as a context manager.

    `clock` (monotonic seconds, default `time.monotonic`) drives the quota buckets, so tests can
    move time instead of waiting; it is called from the server's thread.

    Example:
        >>> with ThreadedSimulator(SimConfig(limits=Limits(rpm=60))) as sim:
        ...     client = Cerebras(api_key="k", base_url=sim.base_url, warm_tcp_connection=False)
    """

    def __init__(
        self, config: SimConfig | None = None, *, clock: Callable[[], float] | None = None
    ) -> None:
        self.config = config or SimConfig()
        self._clock = clock
        self.base_url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: LoopSimulator | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> Self:
        """Start serving; returns once the port is open."""
        self._thread = threading.Thread(target=self._run, name="enrich-sim", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        """Stop serving and join the thread."""
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
        self._thread = None

    @property
    def simulator(self) -> SimulatorApp:
        """The live simulator (touch it only through `call`)."""
        return running(self._runner).simulator

    def call(self, fn: Callable[[SimulatorApp], T]) -> T:
        """Run `fn(simulator)` on the server's loop and return its result."""
        loop = running(self._loop)
        simulator = self.simulator

        async def run() -> T:
            return fn(simulator)

        return asyncio.run_coroutine_threadsafe(run(), loop).result()

    @property
    def stats(self) -> SimStats:
        """A snapshot of what the server has served."""
        return self.call(lambda sim: sim.counters.snapshot())

    def reset(self) -> None:
        """Zero the counters, refill the buckets and reseed fault injection."""
        self.call(lambda sim: sim.reset())

    def set_limits(self, **changes: int | None) -> Limits:
        """Change some of `rpm`, `tpm`, `rpd`, `tpd` (None removes a limit)."""
        return self.call(lambda sim: sim.set_limits(changes))

    def set_faults(self, **changes: float | str | bool | None) -> Faults:
        """Change some fault rates, or the shape of an injected 429 (see `Faults`)."""
        return self.call(lambda sim: sim.set_faults(changes))

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        runner = LoopSimulator(self.config, self._clock)
        try:
            self.base_url = loop.run_until_complete(runner.start())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._loop, self._runner = loop, runner
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(runner.stop())
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            self._loop = None
