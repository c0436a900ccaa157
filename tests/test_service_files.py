"""The systemd unit example: it parses, hardens, and names only options the server has."""

from __future__ import annotations

import configparser
import re
import shlex
import shutil
import subprocess
import sys

import pytest
from conftest import PROJECT_ROOT

from twisted_spark.config import Settings
from twisted_spark.tap import Options

UNIT = PROJECT_ROOT / "docs" / "systemd" / "twisted-spark.service"


def unit():
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # systemd keys are case-sensitive
    text = UNIT.read_text().replace("\\\n", " ")  # continuation lines
    parser.read_string(text)
    return parser


def exec_start_argv():
    return shlex.split(unit()["Service"]["ExecStart"])


def test_the_unit_has_its_sections_and_hardening():
    service = unit()["Service"]
    assert set(unit().sections()) == {"Unit", "Service", "Install"}
    assert service["DynamicUser"] == "yes" or "User" in service
    assert service["StateDirectory"] == "twisted-spark"
    assert service["StateDirectoryMode"] == "0700"
    for key, value in {"ProtectSystem": "strict", "NoNewPrivileges": "yes",
                       "KillSignal": "SIGTERM", "ProtectHome": "yes",
                       "PrivateTmp": "yes"}.items():
        assert service[key] == value, key


def test_exec_start_names_only_server_options_and_the_state_directory():
    argv = exec_start_argv()
    assert argv[1:4] == ["-m", "twisted_spark", "serve"]
    options = Options()
    options.parseOptions(argv[4:])  # raises UsageError for an option the server lacks
    assert str(options.settings.data_dir) == "/var/lib/" + unit()["Service"]["StateDirectory"]


def test_systemd_waits_longer_than_the_drain():
    options = Options()
    options.parseOptions(exec_start_argv()[4:])
    drain = options.settings.drain_timeout
    assert drain == Settings().drain_timeout or "--drain-timeout" in exec_start_argv()
    assert float(unit()["Service"]["TimeoutStopSec"]) > drain + 5


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed; the structural checks above ran")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path):
    """systemd's own parser: unknown keys and bad values are warnings there, so any
    line it prints about the file fails the test (the interpreter path is this
    one's, since verify checks that ExecStart's program exists)."""
    copy = tmp_path / "twisted-spark.service"
    copy.write_text(UNIT.read_text().replace("/opt/twisted-spark/bin/python", sys.executable))
    result = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True,
                            text=True, timeout=60)
    about_the_file = [line for line in (result.stdout + result.stderr).splitlines()
                      if re.search(r"twisted-spark\.service", line)]
    assert result.returncode == 0 and about_the_file == [], result.stdout + result.stderr
