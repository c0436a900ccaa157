# -*- test-case-name: tests.test_heap -*-
"""The garbage collector set up for a long-running server process.

CPython's cyclic collector runs a young collection every 700 net container
allocations; a function call through the API allocates a few hundred, so
the objects of the calls in flight survive one young collection after
another into the oldest generation, and that one, traversed whole (the
~80 000 objects of the imported modules included), is collected every
thousand calls or so: 40 ms with the reactor stopped each time, about 5 %
of the server's CPU (measured with ``bench/bench_call_path.py`` and
``gc.callbacks``).  Once the server is up, :func:`settle` moves what
startup made into the permanent generation (``gc.freeze``: never traversed
again) and collects the young generation ten times less often, which
promotes far fewer live request objects.  The process's own entry points
(``twistd spark`` and ``python -m twisted_spark serve``) call it; an
embedding application decides for its own process.
"""

from __future__ import annotations

import gc

#: Net container allocations between young collections (CPython's default: 700).
YOUNG_THRESHOLD = 7000


def settle(result=None):
    """Collect once, freeze what is alive, and space out young collections.

    Returns ``result`` unchanged, so it can be a Deferred callback.
    """
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, oldest)
    return result
