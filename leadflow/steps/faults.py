"""A fault-injection hook for crash tests: kill this process with SIGKILL right after a named step.

`LEADFLOW_CRASH_AFTER="Calculate Lead Score:1"` kills the process as soon as that step (task name) has finished
its first run in this process; `:2` after its second run, and so on. Task shells call `crash_after` from an
on-completion hook and the plain steps from a wrapper, so a crash test stops a run at an exact point instead of
a timing-dependent one. Unset (always, outside tests), it costs one environment lookup per step run.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import signal
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, wait
from typing import Any, TypeVar

CRASH_AFTER_ENV = "LEADFLOW_CRASH_AFTER"

_runs: Counter = Counter()
_lock = threading.Lock()
Steps = TypeVar("Steps")


def crash_after(step: str) -> None:
    """Kill this process (SIGKILL, no cleanup) if the crash point names this step and its run count is reached."""
    spec = os.environ.get(CRASH_AFTER_ENV)
    if not spec:
        return
    name, _, nth = spec.rpartition(":")
    if name != step:
        return
    with _lock:
        _runs[step] += 1
        reached = _runs[step] == int(nth or 1)
    if reached:
        os.kill(os.getpid(), signal.SIGKILL)


def crash_hook(task: Any, task_run: Any, state: Any) -> None:
    """Prefect on-completion hook: a crash point after the task run (by the task's name)."""
    crash_after(task.name)


def with_crash_points(steps: Steps, names: dict[str, str]) -> Steps:
    """These steps (a dataclass of callables) with a crash point after each, named `names[field]`; as they are
    when no crash point is set."""
    if not os.environ.get(CRASH_AFTER_ENV):
        return steps

    def wrap(step: Callable[..., Any], name: str) -> Callable[..., Any]:
        @functools.wraps(step)
        def run(*args: Any, **kwargs: Any) -> Any:
            result = step(*args, **kwargs)
            if isinstance(result, Future):
                # A started step: its run ends when its outcome is there (a failure stays in the future).
                wait([result])
            crash_after(name)
            return result

        return run

    return dataclasses.replace(steps, **{f: wrap(getattr(steps, f), n) for f, n in names.items()})
