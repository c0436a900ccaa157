"""mypy with mypy-zope is clean: every @implementer class has what its
interfaces declare, with compatible signatures where annotated, and annotated
code type-checks (configuration in setup.cfg).

One run checks the package and a deliberately drifted implementation, which
must be reported: that proves the zope plugin is really at work.
"""

import subprocess
import sys

from conftest import PROJECT_ROOT

DRIFTED = '''
from zope.interface import implementer

from twisted_spark.interfaces import IDeviceRegistry


@implementer(IDeviceRegistry)
class Drifted:
    def get(self, device_id: str) -> None:
        return None

    def owner_changed(self, device_id: str) -> None:
        pass
'''


def test_mypy_reports_only_the_drifted_implementation(tmp_path):
    drifted = tmp_path / "drifted.py"
    drifted.write_text(DRIFTED)
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", "setup.cfg", "--cache-dir", "/dev/null",
         "twisted_spark", str(drifted)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert all(line.startswith(str(drifted)) for line in errors), result.stdout + result.stderr
    text = "\n".join(errors)
    assert "is missing following 'IDeviceRegistry' interface members" in text, result.stdout
    assert 'Signature of "Drifted" incompatible with "owner_changed"' in text, result.stdout
