"""The temporary Prefect API server of a CLI run, started so that it ends with the command, even after a SIGKILL.

Without PREFECT_API_URL, Prefect starts a temporary API server (`SubprocessASGIServer`, a uvicorn process) for the
command the first time it needs the API, and stops it at exit (atexit). A killed command runs no atexit, and the
server lived on. `guard_temporary_server()` puts a `GuardedServer` in the slot Prefect takes its server from (the
instance registered for port None, as Prefect's own test harness does), so the server Prefect starts is this one:
the same uvicorn command, run through this module, which makes the server process watch its parent first.

The slot is filled only once Prefect's server module is imported (by the first API call of a command that runs a
flow), so commands that never need the API do not pay for importing it.

Run as `python -m deployments.ephemeral_server PARENT_PID DEATH_SIGNAL UVICORN_ARGS...`: the server process.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import subprocess
import sys
import threading
from types import ModuleType
from typing import Any

SERVER_MODULE = "prefect.server.api.server"


def _guarded_class(module: ModuleType) -> type:
    base = module.SubprocessASGIServer

    class GuardedServer(base):  # type: ignore[misc, valid-type]
        """Prefect's temporary API server, started through this module so that it dies with the command."""

        def _run_uvicorn_command(self) -> subprocess.Popen[Any]:
            # Prefect 3.8's command (SubprocessASGIServer._run_uvicorn_command), with the parent watch in front.
            import prefect
            from prefect.settings import get_current_settings

            # The kernel's death signal follows the starting thread: only the main thread lives as long as we do.
            death_signal = threading.current_thread() is threading.main_thread()
            return subprocess.Popen(
                args=[sys.executable, "-m", __name__, str(os.getpid()), "1" if death_signal else "0",
                      "--app-dir", str(prefect.__module_path__.parent),
                      "--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1",
                      "--port", str(self.port), "--log-level", "error", "--lifespan", "on"],
                env={**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1",
                     "PREFECT__SERVER_FINAL": "1",
                     **get_current_settings().to_environment_variables(exclude_unset=True)},
            )

    return GuardedServer


def _install(module: ModuleType) -> None:
    """Take the default server slot (port None) unless a server already holds it (a test harness, a started one)."""
    if None not in module.SubprocessASGIServer._instances:
        _guarded_class(module)()


class _InstallOnImport(importlib.abc.MetaPathFinder):
    """Fills the slot right after Prefect imports its server module, wherever that happens first."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != SERVER_MODULE:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        load = spec.loader.exec_module

        def exec_module(module: ModuleType) -> None:
            load(module)
            _install(module)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def guard_temporary_server() -> None:
    """Make the temporary Prefect API server this process may start end when this process ends, however it ends."""
    module = sys.modules.get(SERVER_MODULE)
    if module is not None:
        _install(module)
    elif not any(isinstance(finder, _InstallOnImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _InstallOnImport())


def _serve(argv: list[str]) -> None:
    """The server process: watch the parent, then run uvicorn with the remaining arguments."""
    from leadflow.io.processes import die_with_parent

    die_with_parent(int(argv[0]), death_signal=argv[1] == "1")
    import uvicorn

    sys.argv = ["uvicorn", *argv[2:]]
    uvicorn.main()


if __name__ == "__main__":
    _serve(sys.argv[1:])
