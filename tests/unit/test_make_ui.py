"""`make ui` tells the UI where its API is, for whatever port it serves on."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize(("args", "port"), [([], "4200"), (["UI_PORT=4321"], "4321")])
def test_make_ui_sets_the_ui_api_url_for_its_port(args, port):
    # -n prints the recipe without running it (nor installing anything).
    done = subprocess.run(["make", "-n", "ui", *args], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    (line,) = [line for line in done.stdout.splitlines() if "prefect server start" in line]
    assert line.startswith(f"PREFECT_UI_API_URL=http://127.0.0.1:{port}/api ")
    assert line.endswith(f"--port {port}")
