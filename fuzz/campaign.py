# -*- test-case-name: tests.test_fuzz_corpus -*-
"""Run targets one after another, each bounded, and record the figures of each run.

::

    nice python -m fuzz.campaign --runs 1000000 --max-time 900 [TARGET ...]

Each target runs as ``python -m fuzz.run TARGET -runs=N -max_total_time=T
-print_final_stats=1`` (one process, one core) with its log in
``fuzz/work/logs/<target>.log``; the figures (executions, executions per
second, the final libFuzzer ``cov:`` and ``ft:`` counts, whether it crashed
and where the crash input is) are appended as one JSON line per run to
``fuzz/work/results.jsonl``, which ``fuzz/README.rst``'s table is made from.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

from fuzz.harness import ROOT
from fuzz.targets import TARGETS

LOGS = ROOT / "fuzz" / "work" / "logs"
RESULTS = ROOT / "fuzz" / "work" / "results.jsonl"


def figures(log: str) -> dict:
    """What a libFuzzer log says about its run."""
    stats = dict(re.findall(r"stat::(\w+):\s+(\d+)", log))
    coverage = re.findall(r"cov: (\d+) ft: (\d+)", log)
    crash = re.search(r"Test unit written to (\S+)", log)
    return {
        "executions": int(stats.get("number_of_executed_units", 0)),
        "exec_per_s": int(stats.get("average_exec_per_sec", 0)),
        "cov": int(coverage[-1][0]) if coverage else None,
        "ft": int(coverage[-1][1]) if coverage else None,
        "crash": crash.group(1) if crash else None,
    }


def run(target: str, runs: int, max_time: int) -> dict:
    LOGS.mkdir(parents=True, exist_ok=True)
    log_path = LOGS / f"{target}.log"
    started = time.time()
    with log_path.open("w") as log:
        subprocess.run(
            [sys.executable, "-m", "fuzz.run", target, f"-runs={runs}",
             f"-max_total_time={max_time}", "-print_final_stats=1"],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, check=False)
    result = {"target": target, "seconds": round(time.time() - started),
              **figures(log_path.read_text(errors="replace"))}
    with RESULTS.open("a") as out:
        out.write(json.dumps(result) + "\n")
    return result


def table(path: Path = RESULTS) -> str:
    """An RST table of the last run of each target in ``path`` (``--table``)."""
    last: dict = {}
    for line in path.read_text().splitlines():
        result = json.loads(line)
        last[result["target"]] = result
    rows = [("target", "executions", "exec/s", "cov", "ft", "seconds", "crash")]
    for target in TARGETS:
        if target in last:
            r = last[target]
            rows.append((target, f"{r['executions']:,}", f"{r['exec_per_s']:,}", str(r["cov"]),
                         str(r["ft"]), str(r["seconds"]), "yes" if r["crash"] else "none"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    rule = "  ".join("=" * width for width in widths)
    lines = [rule, "  ".join(c.ljust(w) for c, w in zip(rows[0], widths, strict=True)), rule]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows[1:]]
    return "\n".join(line.rstrip() for line in [*lines, rule])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("targets", nargs="*", default=list(TARGETS))
    parser.add_argument("--table", action="store_true", help="print the figures as a table")
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--max-time", type=int, default=900, help="seconds per target")
    options = parser.parse_args(argv)
    if options.table:
        print(table())
        return 0
    for target in options.targets:
        print(json.dumps(run(target, options.runs, options.max_time)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
