"""Processes: who owns a run (host, pid, start time), whether that owner still lives, and helpers that die with it.

An intake batch records the process that runs it, so a later run can tell a batch whose process was killed from one
still at work. A pid alone is not enough: the kernel hands a dead process's pid to a new one, so the owner is also
named by its start time, and a live process with another start time is not the owner.

A helper process (the chunk worker, the temporary Prefect API server of a CLI run) must not outlive the process
that started it: killed with SIGKILL, that process runs no cleanup, and its helpers would live on, holding memory
and ports. On Linux the kernel sends such a helper a signal when its parent dies (prctl PR_SET_PDEATHSIG), and a
watchdog thread in the helper checks the parent anyway (the death signal follows the thread that started the
helper, and other systems have no such signal).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psutil

# Two readings of one process's start time differ by up to a second (boot time is read in whole seconds and NTP
# moves the clock); a pid reused by a new process starts later than that.
START_TOLERANCE = timedelta(seconds=2)
PR_SET_PDEATHSIG = 1
WATCH_INTERVAL_SECONDS = 0.25


@dataclass(frozen=True)
class ProcessOwner:
    """The process that owns a run: its host, pid and start time (UTC)."""

    host: str
    pid: int
    started_at: datetime | None


def host_name() -> str:
    """This machine as batches record it: its name, and on Linux its pid namespace.

    Containers may share a host name (replicas started with one `--hostname`) while each has pids of its own: a
    batch of another container must not be judged by this one's processes.
    """
    name = socket.gethostname()
    with contextlib.suppress(OSError):
        name += f" pidns:{os.stat('/proc/self/ns/pid').st_ino}"
    return name[:255]


def start_time(pid: int) -> datetime | None:
    """When the process with this pid started (UTC); None when there is no such process (or it cannot be read)."""
    try:
        return datetime.fromtimestamp(psutil.Process(pid).create_time(), UTC)
    except (psutil.Error, OSError, ValueError):
        return None


def this_process() -> ProcessOwner:
    """The owner record of the calling process."""
    pid = os.getpid()
    return ProcessOwner(host=host_name(), pid=pid, started_at=start_time(pid))


def owner_alive(pid: int, started_at: datetime | None) -> bool:
    """Whether the process `pid` of this host is alive and is the one that started at `started_at`.

    A zombie (dead, not yet reaped) is gone. Without a recorded start time any live process with the pid counts.
    """
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        created = datetime.fromtimestamp(process.create_time(), UTC)
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except (psutil.Error, OSError):
        return True  # it exists but cannot be inspected (another user's): not provably gone
    if started_at is None:
        return True
    stamp = started_at if started_at.tzinfo else started_at.replace(tzinfo=UTC)
    return abs(created - stamp) <= START_TOLERANCE


def _set_death_signal(sig: int) -> bool:
    """Ask the kernel to send `sig` to this process when its parent dies (Linux); whether it was set."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent_pid: int, interval: float) -> None:
    while os.getppid() == parent_pid:
        time.sleep(interval)
    # Reparented: the parent is gone. Exit at once, without cleanup that could wait on the dead parent.
    os.kill(os.getpid(), signal.SIGKILL)


def die_with_parent(parent_pid: int, death_signal: bool = True, interval: float = WATCH_INTERVAL_SECONDS) -> None:
    """Make this (helper) process end when the process `parent_pid` that started it dies, even by SIGKILL.

    Call it first thing in the helper. With `death_signal` the kernel kills it the moment the parent's starting
    thread ends (Linux): only for a helper started by a thread that lives as long as its process. The watchdog
    thread covers the rest (within `interval` seconds), and a parent that died before this call ends it at once.
    """
    if death_signal:
        _set_death_signal(signal.SIGKILL)
    if os.getppid() != parent_pid:
        os.kill(os.getpid(), signal.SIGKILL)
    threading.Thread(target=_watch_parent, args=(parent_pid, interval), name="leadflow-parent-watch",
                     daemon=True).start()
