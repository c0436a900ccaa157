"""The code base stays ruff-clean (configuration in ruff.toml)."""

import subprocess
import sys

from conftest import PROJECT_ROOT


def test_ruff_reports_nothing():
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache",
         "twisted_spark", "tests", "bench", "fuzz", "twisted"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
