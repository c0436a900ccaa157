"""fuzz.traced_serve: a heap snapshot of the server on SIGUSR2 (fuzz.e2e --tracemalloc)."""

from __future__ import annotations

import os
import signal
import sys
import tracemalloc

from conftest import PROJECT_ROOT

sys.path.insert(0, str(PROJECT_ROOT))

from fuzz.traced_serve import snapshot_on_signal  # noqa: E402


def test_each_signal_writes_the_next_snapshot_and_says_when_it_is_done(tmp_path):
    previous = signal.getsignal(signal.SIGUSR2)
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start(4)
    try:
        snapshot_on_signal(tmp_path)
        os.kill(os.getpid(), signal.SIGUSR2)
        kept = [bytearray(4096) for _ in range(64)]  # 256 KiB made between the two
        os.kill(os.getpid(), signal.SIGUSR2)
        assert sorted(p.name for p in tmp_path.iterdir()) == [
            "heap-0.done", "heap-0.snap", "heap-1.done", "heap-1.snap"]
        first, second = (tracemalloc.Snapshot.load(str(tmp_path / f"heap-{n}.snap"))
                         for n in (0, 1))
        grown = second.compare_to(first, "lineno")
        here = [d for d in grown if d.traceback[0].filename == __file__]
        assert here and here[0].size_diff >= 64 * 4096
        assert len(kept) == 64
    finally:
        signal.signal(signal.SIGUSR2, previous)
        if not tracing:
            tracemalloc.stop()
