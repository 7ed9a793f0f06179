"""Process ownership and helpers that die with their parent (leadflow/io/processes.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import psutil
import pytest

from leadflow.io.processes import owner_alive, start_time, this_process

ROOT = Path(__file__).resolve().parents[2]
# A parent that starts a helper and waits: the helper watches it with the watchdog alone (no death signal), as
# a helper started by a thread other than the main thread does.
PARENT = """
import subprocess, sys, time
helper = subprocess.Popen([sys.executable, "-c", HELPER.replace("PARENT", str(__import__("os").getpid()))],
                          stdout=subprocess.PIPE, text=True)
print(helper.pid, helper.stdout.readline().strip(), flush=True)
time.sleep(120)
"""
HELPER = """
import time
from leadflow.io.processes import die_with_parent
die_with_parent(PARENT, death_signal=False, interval=0.1)
print("watching", flush=True)
time.sleep(120)
"""


def test_this_process_is_its_own_live_owner_and_a_later_start_is_not():
    me = this_process()
    assert me.pid == os.getpid() and me.started_at == start_time(os.getpid())
    assert owner_alive(me.pid, me.started_at) and owner_alive(me.pid, None)
    assert not owner_alive(me.pid, me.started_at + timedelta(minutes=5))


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_helper_ends_soon_after_its_parents_sigkill():
    code = f"HELPER = {HELPER!r}\n{PARENT}"
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        helper_pid, state = parent.stdout.readline().split()
        assert state == "watching"
        helper = psutil.Process(int(helper_pid))
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 3
    while helper.is_running() and helper.status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
        time.sleep(0.05)
    gone = not helper.is_running() or helper.status() == psutil.STATUS_ZOMBIE
    if not gone:
        helper.kill()
    assert gone and time.monotonic() < deadline
