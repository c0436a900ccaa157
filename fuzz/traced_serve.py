# -*- test-case-name: tests.test_fuzz_traced_serve -*-
"""``python -m twisted_spark`` under tracemalloc, with a heap snapshot on SIGUSR2.

``python -m fuzz.e2e --tracemalloc`` runs the server this way, to find out
what its RSS growth over a long run is made of::

    python -m fuzz.traced_serve OUT_DIR serve --data-dir ... [serve options]

Each SIGUSR2 collects garbage, then writes ``OUT_DIR/heap-N.snap`` (N = 0,
1, ...; ``tracemalloc.Snapshot.load`` reads it) and, once written,
``OUT_DIR/heap-N.done``.  Tracing costs the server CPU and memory of its
own: use it to find allocation sites, not to measure.
"""

from __future__ import annotations

import gc
import signal
import sys
import tracemalloc
from pathlib import Path

#: Frames kept per allocation (the call path that made it).
FRAMES = 8


def snapshot_on_signal(out: Path) -> None:
    """From now on, each SIGUSR2 writes the next numbered snapshot to ``out``."""
    taken = [0]

    def take(signum, frame):
        gc.collect()
        n = taken[0]
        taken[0] += 1
        tracemalloc.take_snapshot().dump(str(out / f"heap-{n}.snap"))
        (out / f"heap-{n}.done").touch()

    signal.signal(signal.SIGUSR2, take)


def main(argv: list[str]) -> None:
    from twisted_spark.__main__ import main as twisted_spark_main

    tracemalloc.start(FRAMES)
    snapshot_on_signal(Path(argv[0]))
    twisted_spark_main(argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
