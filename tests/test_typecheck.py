"""mypy with mypy-zope is clean: every @implementer class has what its
interfaces declare, and annotated code type-checks (configuration in setup.cfg)."""

import subprocess
import sys

from conftest import PROJECT_ROOT


def test_mypy_reports_nothing():
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", "setup.cfg", "--cache-dir", "/dev/null"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
