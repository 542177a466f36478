"""The processes the benchmarks start: a free port, a Prefect server up and answering, and CPU
time from ``/proc``.

CPU is that of a whole process tree (a server and the workers it spawns, a worker and its
flow-run processes), read from ``/proc/<pid>/stat`` (Linux only): user and system time of every
live descendant, with what each has collected from children it reaped.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

__all__ = ["free_port", "prefect_server_command", "tree_cpu_seconds", "wait_until_healthy"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def prefect_server_command(port: int | str) -> list[str]:
    """``prefect server start`` on 127.0.0.1:``port``, with this interpreter's Prefect."""
    server = [sys.executable, "-m", "prefect", "server", "start"]
    return [*server, "--host", "127.0.0.1", "--port", str(port)]


def wait_until_healthy(
    proc: subprocess.Popen[bytes], api: str, within_s: float, log: Path | None = None
) -> None:
    """Poll ``<api>/health`` until it answers 200. RuntimeError (with the end of ``log``, if
    given) when ``proc`` exits first or ``within_s`` seconds pass."""
    deadline = time.monotonic() + within_s
    while True:
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = f":\n{log.read_text()[-3000:]}" if log is not None and log.exists() else ""
            raise RuntimeError(f"the Prefect server at {api} did not start{tail}")
        try:
            with urllib.request.urlopen(f"{api}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)


def _stat(pid: int) -> tuple[int, float] | None:
    """``(parent pid, own + reaped children's CPU seconds)`` of a live process, else None."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # After the command name: state, ppid, ...; utime, stime, cutime, cstime are 14-17 of stat(5).
    ticks = sum(int(x) for x in fields[11:15])
    return int(fields[1]), ticks / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds of ``root`` and its live descendants, with the children each has reaped."""
    stats: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (found := _stat(int(entry))) is not None:
            stats[int(entry)] = found
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in stats.items():
        children.setdefault(parent, []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            total += stats[pid][1]
        todo += children.get(pid, [])
    return total
