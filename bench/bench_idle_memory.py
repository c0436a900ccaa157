"""Server memory per idle device session.

Starts the device server in this process, connects N idle virtual devices
from a SEPARATE process (bench_handshake's load generator, holding the
connections), and reports the server's RSS growth divided by N.

Usage::

    PYTHONPATH=. python bench/bench_idle_memory.py [--count 1000]
"""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_handshake import ROOT, open_store, raise_fd_limit, start_server  # noqa: E402


def rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    args = parser.parse_args()
    raise_fd_limit()
    from serving import log_like_serve
    from twisted.internet import defer, task, threads

    log_like_serve()

    async def run(reactor):
        store = await open_store(reactor, "memory", args.count)
        cloud, listening = start_server(reactor, 2, store)
        factory = cloud.devices
        port = (await listening).getHost().port
        # Warm up: one device through every code path, so imports and caches
        # are not counted as per-device memory.
        await one_round(reactor, port, factory, 20)
        gc.collect()
        before = rss_kib()
        proc = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "bench" / "bench_handshake.py"),
                "--client",
                f"127.0.0.1:{port}",
                "--count",
                str(args.count),
                "--hold",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
        )
        line = await threads.deferToThread(proc.stdout.readline)
        deadline = time.monotonic() + 60
        while len(factory.registry) < args.count and time.monotonic() < deadline:
            await task.deferLater(reactor, 0.05, lambda: None)
        await task.deferLater(reactor, 1.0, lambda: None)
        gc.collect()
        after = rss_kib()
        online = len(factory.registry)
        timers = len(reactor.getDelayedCalls())
        print(f"client: {line.strip()}")
        print(f"idle devices online: {online}; reactor timers: {timers}")
        print(
            f"server RSS {before} KiB -> {after} KiB: "
            f"{(after - before) / max(online, 1):.2f} KiB per idle device"
        )
        proc.stdin.write("\n")
        proc.stdin.flush()
        await threads.deferToThread(proc.wait)
        (await listening).stopListening()
        await cloud.stop()

    async def one_round(reactor, port, factory, count):
        proc = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "bench" / "bench_handshake.py"),
                "--client",
                f"127.0.0.1:{port}",
                "--count",
                str(count),
            ],
            stdout=subprocess.PIPE,
            text=True,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
        )
        await threads.deferToThread(proc.communicate)
        while factory.connections:
            await task.deferLater(reactor, 0.05, lambda: None)

    task.react(lambda r: defer.ensureDeferred(run(r)))


if __name__ == "__main__":
    main()
