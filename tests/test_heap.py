"""The garbage collector of a server process (twisted_spark.heap)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from twisted_spark import heap


def _in_fresh_interpreter(code: str) -> str:
    """What ``code`` prints, run in its own interpreter (gc settings are per process)."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                          capture_output=True, text=True, check=True, timeout=60)
    return done.stdout.strip()


def test_settle_freezes_what_is_alive_and_spaces_young_collections():
    printed = _in_fresh_interpreter("""
        import gc
        from twisted_spark import heap
        before = gc.get_freeze_count()
        assert heap.settle("passed through") == "passed through"
        print(before, gc.get_freeze_count() > 1000, gc.get_threshold()[0])
    """)
    assert printed == f"0 True {heap.YOUNG_THRESHOLD}"


def test_twistd_settles_its_heap_and_an_embedding_process_is_left_alone():
    """makeService without a reactor is twistd's call (the process is the
    server's); with one (an embedder, or these tests) gc is not touched."""
    from twisted.internet.task import Clock

    from twisted_spark.tap import Options, makeService

    options = Options()
    options.parseOptions(["--data-dir", "unused"])
    assert makeService(options)._settle_heap is True
    assert makeService(options, reactor=Clock())._settle_heap is False
    assert makeService(options, reactor=Clock(), settle_heap=True)._settle_heap is True
