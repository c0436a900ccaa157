"""What the benchmark servers share: logging as ``serve`` does, their threads, their one user.

Without a log observer twisted keeps the last 200 log events in memory (with
whatever they refer to: sessions, requests), and a benchmark would not pay
for the log lines a real server writes (an access-log line per request, a
line per device online and offline): :func:`log_like_serve`.
"""

from __future__ import annotations

import os


def log_like_serve() -> None:
    """Begin logging to ``serve``'s text format, into ``/dev/null``."""
    from twisted.logger import globalLogBeginner

    from twisted_spark.logs import text_observer

    sink = open(os.devnull, "w")  # noqa: SIM115 -- lives as long as the process
    globalLogBeginner.beginLoggingTo([text_observer(sink)], redirectStandardIO=False)


def nodelay_on_accepted_sockets() -> None:
    """Set TCP_NODELAY on every socket the process accepts from now on."""
    from twisted.internet import tcp

    original = tcp.Server.__init__

    def nodelay_init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.setTcpNoDelay(True)

    tcp.Server.__init__ = nodelay_init


def started_executors(reactor, rsa_threads: int):
    """The server's thread executors, started now and stopped at reactor shutdown."""
    from twisted_spark.executors import Executors

    executors = Executors.threaded(reactor, rsa_threads)
    executors.start()
    reactor.addSystemEventTrigger("before", "shutdown", executors.stop)
    return executors


async def add_bench_user(store, token: str) -> None:
    """The user ``bench`` (no admin) and its never-expiring ``token``."""
    from twisted_spark.models import AccessToken, User

    await store.add_user(User("bench", "x", is_admin=False))
    await store.add_token(AccessToken(token, "bench", "bench", 0.0, None))
