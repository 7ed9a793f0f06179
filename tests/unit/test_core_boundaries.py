"""The core package stays framework-free: importing all of it pulls in neither Prefect nor Great Expectations."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import importlib, pkgutil, sys
import leadflow
for module in pkgutil.walk_packages(leadflow.__path__, "leadflow."):
    if ".migrations" not in module.name:
        importlib.import_module(module.name)
heavy = sorted(name for name in ("prefect", "great_expectations") if name in sys.modules)
print(",".join(heavy) or "clean")
"""


def test_core_package_imports_neither_prefect_nor_great_expectations():
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "clean", result.stdout + result.stderr
