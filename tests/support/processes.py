"""Child processes for tests: free ports, starting a server, waiting for it, stopping it, and
running the ``enrich`` command line the way a user does.

A child runs in its own session (process group), so stopping it also stops whatever it
started (a Prefect worker's flow runs, a server's workers). Waiting for readiness polls
with a generous deadline and fails at once if the child exits.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from support.waiting import DEADLINE_S


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_process(
    args: list[str],
    env: Mapping[str, str],
    log: IO[bytes] | int = subprocess.DEVNULL,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """A child in its own process group, so stopping it stops what it started."""
    return subprocess.Popen(
        args, cwd=cwd, env=dict(env), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """SIGTERM the child's process group, then SIGKILL it if it has not exited in time."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout)


def wait_for_http(url: str, process: subprocess.Popen[bytes], within_s: float = DEADLINE_S) -> None:
    """Wait until ``url`` answers; fail if ``process`` (the server) exits or time runs out."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if process.poll() is not None:
                exited = f"the server exited ({process.returncode}) before {url} answered"
                raise RuntimeError(exited) from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer within {within_s:.0f} s") from None
            time.sleep(0.05)


def run_enrich(
    *args: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``enrich ARGS`` in a child process (this environment, plus ``env``), run to its end."""
    return subprocess.run(
        [sys.executable, "-m", "enrich.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,  # bounds a hang only
        env={**os.environ, **(env or {})},
    )
