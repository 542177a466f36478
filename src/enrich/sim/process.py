"""The simulator as a child process: its URL, its controls, and the CPU time it used.

Benchmarks run the simulator in its own process so that its CPU is not charged to the client
being measured. :class:`SimProcess` starts ``python -m enrich.sim --port 0 ...``, reads the URL
from the first line it prints, and talks to its ``/_sim`` routes with plain blocking HTTP
(these calls are rare; run them in a thread from async code).
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from typing import IO, Any, Self

import orjson

from enrich.sim.handle import SimulatorHandle, running
from enrich.sim.stats import SimStats


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux ``/proc``)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop_process(proc: subprocess.Popen[bytes], grace: float) -> None:
    """Ask a child to exit (SIGTERM), give it ``grace`` seconds, then kill it; reaps it."""
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class SimProcess(SimulatorHandle):
    """``enrich sim`` in a child process; a context manager that stops it on exit.

    ``args`` are ``enrich sim`` options (``--ttft 0.3``, ``--tpm 60000``...); ``stderr`` is
    where its log goes (an open binary file; discarded by default).
    """

    def __init__(self, *args: str, stderr: IO[bytes] | int = subprocess.DEVNULL) -> None:
        self.args = args
        self._stderr = stderr
        self.base_url = ""
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        proc = subprocess.Popen(
            [sys.executable, "-m", "enrich.sim", "--port", "0", *self.args],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().strip()
        if not line.startswith("enrich sim listening on "):
            proc.kill()
            proc.wait()
            raise RuntimeError(f"the simulator did not start: {line!r}")
        self._proc = proc
        self.base_url = line.rsplit(" ", 1)[-1]
        return self

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_process(proc, grace=10)

    @property
    def pid(self) -> int:
        return running(self._proc).pid

    def cpu_seconds(self) -> float:
        """CPU seconds the simulator process has used so far."""
        return process_cpu_seconds(self.pid)

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else orjson.dumps(body)
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        with urllib.request.urlopen(request, timeout=10) as response:
            return orjson.loads(response.read())

    def stats(self) -> SimStats:
        """What the simulator has served since it started (or was reset)."""
        return SimStats.from_json(self._call("GET", "/_sim/stats"))

    def reset(self) -> None:
        """Zero the counters and refill the quota buckets (a fresh account)."""
        self._call("POST", "/_sim/reset", {})

    def set_limits(self, **limits: int | None) -> dict[str, int | None]:
        """Change some of ``rpm``, ``tpm``, ``rpd``, ``tpd`` (``None`` removes a limit)."""
        result: dict[str, int | None] = self._call("POST", "/_sim/limits", dict(limits))
        return result

    def set_faults(self, **faults: float) -> dict[str, Any]:
        """Change some fault rates (``fail_503=1.0``: every request answered 503); the
        faults now in force."""
        result: dict[str, Any] = self._call("POST", "/_sim/faults", dict(faults))
        return result
