"""Who holds the run lease: a process's identity, and whether that process is still running.

A host name alone does not say which process holds a lease: sibling containers share host
names, and process ids repeat (every container's first process is pid 1). A holder is named by

* ``host`` -- its host name, as people read it;
* ``machine`` -- the pid namespace its pid means something in: the kernel's boot id
  (``/proc/sys/kernel/random/boot_id``) with the container id (Docker, Podman, CRI-O,
  containerd; from ``/proc/self/mountinfo`` or ``/proc/self/cgroup``) or, outside a container,
  the inode of ``/proc/self/ns/pid``. A container's id outlives a restart of the container, so a
  restarted container is the same machine; a sibling container is not. Empty when unknown;
* ``pid`` and ``started`` -- its process id and start time (clock ticks after boot,
  ``/proc/<pid>/stat`` field 22), so a new process that reuses the pid is a different holder.

:func:`holder_state` is the decision, pure: a lease is ``expired`` when its expiry has passed;
``dead`` when its holder ran on this machine (same host, same machine) and no process with its
pid and start time runs here now; otherwise ``live``: a holder elsewhere, or one whose machine
is unknown (an older release's lease, a system without ``/proc``), is waited for until its lease
expires. :func:`this_process` and :func:`look_here` read the facts, and nothing else.
"""

from __future__ import annotations

import functools
import os
import re
import socket
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "Here",
    "HolderState",
    "ProcessId",
    "container_id",
    "holder_state",
    "look_here",
    "process_started",
    "this_process",
]

HolderState = Literal["live", "expired", "dead"]


@dataclass(frozen=True, slots=True)
class ProcessId:
    """A process, named well enough that another process can tell whether it still runs."""

    host: str
    machine: str  # the pid namespace: boot id + container id or namespace inode; "" if unknown
    pid: int
    started: int  # start time in clock ticks after boot; 0 if unknown


@dataclass(frozen=True, slots=True)
class Here:
    """What this process sees of a holder: its own host and machine, and the holder's pid.

    ``started`` is the start time of the process that has the holder's pid here, or None when
    no (living) process has it.
    """

    host: str
    machine: str
    started: int | None


def holder_state(holder: ProcessId, expires_at: float, *, now: float, here: Here) -> HolderState:
    """Whether a lease's holder may still be running (``live``) or it can be taken over."""
    if expires_at <= now:
        return "expired"
    if not (holder.machine and here.machine):
        return "live"  # cannot tell which process it names: wait for the lease to expire
    if (holder.host, holder.machine) != (here.host, here.machine):
        return "live"  # another machine or container: its processes are not visible here
    if here.started is None:
        return "dead"  # no process has its pid: it stopped (crashed, killed, restarted)
    if holder.started and here.started != holder.started:
        return "dead"  # the pid now belongs to a newer process
    return "live"


# Container ids in the source of the /etc/hostname bind mount (Docker, Podman) and in cgroup
# paths (cgroup v1, or v2 seen from the host's cgroup namespace). Pod-level ids (a Kubernetes
# sandbox) are not matched: containers of one pod do not share a pid namespace.
_MOUNTED_ID = re.compile(r"/(?:overlay-)?containers/([0-9a-f]{64})/")
_CGROUP_ID = re.compile(r"(?:docker[-/]|libpod-|crio-|cri-containerd-|kubepods\S*/)([0-9a-f]{64})")


def container_id(mountinfo: str, cgroup: str) -> str | None:
    """The container id in ``/proc/self/mountinfo`` or ``/proc/self/cgroup``, if any."""
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) > 4 and fields[4] == "/etc/hostname":
            found = _MOUNTED_ID.search(fields[3])
            if found:
                return found.group(1)
    found = _CGROUP_ID.search(cgroup)
    return found.group(1) if found else None


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return ""


@functools.cache
def _machine() -> str:
    boot = _read("/proc/sys/kernel/random/boot_id").strip()
    if not boot:
        return ""
    container = container_id(_read("/proc/self/mountinfo"), _read("/proc/self/cgroup"))
    if container:
        return f"{boot}/container:{container}"
    try:
        return f"{boot}/pidns:{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return ""


def process_started(pid: int) -> int | None:
    """The start time of process ``pid`` here (clock ticks after boot), None if it is not running.

    A zombie (killed, not yet reaped) is not running. 0 when the process exists but its start
    time cannot be read.
    """
    if pid <= 0:
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return _started_without_proc(pid)  # no /proc, or it hides other users' processes
    if not fields or fields[0] in (b"Z", b"X"):
        return None
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return 0


def _started_without_proc(pid: int) -> int | None:
    """0 (running, start unknown) or None, from whether ``pid`` can be signalled."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return 0  # someone else's process: running
    return 0


def this_process() -> ProcessId:
    """This process's identity."""
    pid = os.getpid()
    return ProcessId(socket.gethostname(), _machine(), pid, process_started(pid) or 0)


def look_here(pid: int) -> Here:
    """What this process sees of a holder whose pid is ``pid``."""
    return Here(socket.gethostname(), _machine(), process_started(pid))
