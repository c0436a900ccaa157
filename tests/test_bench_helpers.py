"""The pure helpers of the benchmarks that can drive another server (bench/bench_api.py)."""

from __future__ import annotations

import os
import sys

import pytest
from conftest import PROJECT_ROOT

sys.path.insert(0, str(PROJECT_ROOT / "bench"))

import bench_api  # noqa: E402


def test_stat_cpu_ticks_adds_user_and_system_time_after_the_command_name():
    # The command name may hold spaces and parentheses: fields count from the last ")".
    line = "4242 (node (main) x) S 1 4242 4242 0 -1 4194560 900 0 0 0 117 23 5 6 20 0 11 0"
    assert bench_api.stat_cpu_ticks(line) == 117 + 23


def test_parse_pids():
    assert bench_api.parse_pids("12") == [12]
    assert bench_api.parse_pids("12, 34,") == [12, 34]
    assert bench_api.parse_pids(None) == []
    assert bench_api.parse_pids("") == []


def test_cpu_seconds_sums_processes():
    me = os.getpid()
    one = bench_api.cpu_seconds(me)
    two = bench_api.cpu_seconds(f"{me},{me}")
    assert one > 0
    assert two >= 2 * one  # read later, so never less
    assert bench_api.cpu_seconds("self") >= one


def test_split_hostport():
    assert bench_api.split_hostport("127.0.0.1:5683") == ("127.0.0.1", 5683)
    assert bench_api.split_hostport("[::1]:80") == ("[::1]", 80)
    for bad in ("127.0.0.1", ":80", "host:port"):
        with pytest.raises(ValueError):
            bench_api.split_hostport(bad)
