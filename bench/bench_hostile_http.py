"""How the API port holds up under hostile request bodies: ``/healthz`` latency during an attack.

Three processes, so the attack, the probe and the server do not share a Python
interpreter:

* ``server`` – the API (``SparkAPI.site()``, the real request factory, access
  log formatter and timeouts) on a loopback port, MemoryStore, one user with a
  token;
* ``attack`` – ``--attackers`` threads, each sending the hostile body over and
  over on its own connection until told to stop;
* the probe (this process) – ``GET /healthz`` on one persistent connection
  every ``--interval`` seconds, before and during the attack.

Attacks (``--attack``):

* ``multipart`` – a multipart body of tiny parts (``--size`` bytes, ~77 000 parts
  for 4 MiB) to ``PUT /v1/devices/x`` without a token (issue 9, item 1);
* ``token-multipart`` – the tiny-parts body to ``/oauth/token`` (no token needed there);
* ``token`` – a ``--size`` urlencoded body to ``/oauth/token``;
* ``upload`` – the same multipart body *with* a valid token (the body is then
  parsed; a part-count limit must stop it);
* ``firmware`` – one ``--size`` file part to ``PUT /v1/devices/x`` with a valid
  token (a large legitimate upload: the parse must not stall the reactor).

Prints one JSON object: healthz p50/p90/p99/max in ms during the attack, the
server's own reactor lag (how late a 10 ms timer fired) and the most CPU its
reactor thread used between two ticks (lag with little CPU is the machine not
scheduling the server; lag with as much CPU is the reactor blocked), how many
hostile requests were answered and with which status, and their mean round
trip.  Run from the repository root::

    python bench/bench_hostile_http.py --attack multipart --attackers 3 --duration 10
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "be0c4b0c4b0c4b0c4b0c4b0c4b0c4b0c4b0c4b0c"
BOUNDARY = "hostile-boundary-1"
MIB = 1024 * 1024
LAG_TICK = 0.01


# -- server ----------------------------------------------------------------------------


def serve(args):
    from Crypto.PublicKey import RSA
    from twisted.internet import defer, reactor, task
    from twisted.internet.endpoints import TCP4ServerEndpoint
    from twisted.logger import globalLogBeginner, textFileLogObserver

    from twisted_spark.cloud import build_cloud
    from twisted_spark.config import Settings
    from twisted_spark.executors import Executors
    from twisted_spark.models import AccessToken, DeviceRecord, User
    from twisted_spark.store import MemoryStore

    # Log as a running server does (to a file; here /dev/null).  Without an
    # observer, twisted buffers every access-log event in memory, and the
    # garbage collector's walks over that buffer show up as reactor lag.
    globalLogBeginner.beginLoggingTo([textFileLogObserver(open(os.devnull, "w"))],
                                     redirectStandardIO=False)

    async def start():
        store = MemoryStore()
        await store.add_user(User("bench", "x", is_admin=False))
        await store.add_token(AccessToken(TOKEN, "bench", "bench", 0.0, None))
        await store.put_device(DeviceRecord("be" * 12, owner="bench", name="x"))
        executors = Executors.threaded(reactor)
        reactor.addSystemEventTrigger("before", "shutdown", executors.stop)
        server_key = RSA.import_key((ROOT / "tests" / "keys" / "server.pem").read_bytes())
        cloud = build_cloud(Settings(), reactor=reactor, store=store, server_key=server_key,
                            executors=executors)
        site = cloud.site
        site.noisy = False
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(site)
        print(json.dumps({"api": port.getHost().port}), flush=True)

    def failed(f):
        print(f"server failed: {f.getErrorMessage()}", file=sys.stderr, flush=True)
        reactor.stop()

    # Reactor lag: how late a 10 ms timer fires, and how much CPU the reactor
    # thread used between two ticks (a late tick with little CPU means the
    # process was not scheduled; with as much CPU as wall time, it was busy).
    # SIGUSR1 starts a new window; it is printed when the server stops (SIGTERM).
    lags, cpus, last = [], [], [time.perf_counter(), time.thread_time()]

    def tick():
        now, cpu = time.perf_counter(), time.thread_time()
        lags.append(max(0.0, now - last[0] - LAG_TICK))
        cpus.append(cpu - last[1])
        last[:] = [now, cpu]

    def report():
        print(json.dumps({**summary(lags), "cpu_between_ticks_max_ms":
                          round(max(cpus, default=0.0) * 1000, 2)}), flush=True)

    def restart():
        lags.clear()
        cpus.clear()

    task.LoopingCall(tick).start(LAG_TICK)
    signal.signal(signal.SIGUSR1, lambda *_: reactor.callFromThread(restart))
    reactor.addSystemEventTrigger("before", "shutdown", report)
    reactor.callWhenRunning(lambda: defer.ensureDeferred(start()).addErrback(failed))
    reactor.run()


# -- attack ----------------------------------------------------------------------------


def tiny_parts(size: int) -> bytes:
    """A multipart body of as many one-byte fields as fit in ``size`` bytes."""
    part = (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="a"\r\n\r\nx\r\n').encode()
    end = f"--{BOUNDARY}--\r\n".encode()
    return part * ((size - len(end)) // len(part)) + end


def one_file(size: int) -> bytes:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="fw.bin"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f'\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name="file_type"\r\n\r\n' \
        f"binary\r\n--{BOUNDARY}--\r\n".encode()
    return head + os.urandom(size - len(head) - len(tail)) + tail


def hostile_request(attack: str, size: int):
    """``(method, path, headers, body)`` of one hostile request."""
    multipart = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    if attack == "multipart":
        return "PUT", "/v1/devices/x", multipart, tiny_parts(size)
    if attack == "upload":
        return "PUT", "/v1/devices/x", {**multipart, **bearer}, tiny_parts(size)
    if attack == "firmware":
        return "PUT", "/v1/devices/x", {**multipart, **bearer}, one_file(size)
    if attack == "token-multipart":
        return "POST", "/oauth/token", multipart, tiny_parts(size)
    if attack == "token":
        body = b"grant_type=password&username=a&password=b&x=" + b"y" * (size - 45)
        return "POST", "/oauth/token", {"Content-Type": "application/x-www-form-urlencoded"}, body
    raise SystemExit(f"unknown attack {attack!r}")


def attack(args):
    method, path, headers, body = hostile_request(args.attack, args.size)
    stop = threading.Event()
    statuses: dict[int, int] = {}
    times: list[float] = []
    lock = threading.Lock()

    def hammer():
        while not stop.is_set():
            connection = http.client.HTTPConnection("127.0.0.1", args.port, timeout=120)
            started = time.perf_counter()
            try:
                connection.request(method, path, body=body, headers=headers)
                response = connection.getresponse()
                response.read()
                status = response.status
            except OSError:
                status = 0  # the server cut the connection
            finally:
                connection.close()
            with lock:
                statuses[status] = statuses.get(status, 0) + 1
                times.append(time.perf_counter() - started)

    threads = [threading.Thread(target=hammer, daemon=True) for _ in range(args.attackers)]
    for thread in threads:
        thread.start()
    print("attacking", flush=True)
    sys.stdin.readline()  # the probe says when to stop
    stop.set()
    for thread in threads:
        thread.join(120)
    mean = sum(times) / len(times) if times else None
    print(json.dumps({"statuses": statuses, "mean_round_trip_s": mean,
                      "body_bytes": len(body)}), flush=True)


# -- probe ------------------------------------------------------------------------------


def probe(port: int, seconds: float, interval: float) -> list[float]:
    """``GET /healthz`` latencies (seconds) over ``seconds``, one request every ``interval``."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    latencies = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        started = time.perf_counter()
        try:
            connection.request("GET", "/healthz")
            response = connection.getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError):
            connection.close()  # an idle keep-alive connection closed by the server: again
            connection.request("GET", "/healthz")
            response = connection.getresponse()
        response.read()
        if response.status != 200:
            raise SystemExit(f"/healthz answered {response.status}")
        latencies.append(time.perf_counter() - started)
        time.sleep(interval)
    connection.close()
    return latencies


def summary(latencies: list[float]) -> dict:
    ordered = sorted(latencies)

    def pct(p):
        return round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000, 2)

    return {"count": len(ordered), "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99),
            "max_ms": round(ordered[-1] * 1000, 2)}


def run(args):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    me = [sys.executable, str(Path(__file__).resolve())]
    server = subprocess.Popen(me + ["server"], stdout=subprocess.PIPE, env=env, text=True)
    attacker = None
    try:
        port = json.loads(server.stdout.readline())["api"]
        quiet = summary(probe(port, 1.0, args.interval))
        attacker = subprocess.Popen(
            me + ["attack", "--port", str(port), "--attack", args.attack,
                  "--attackers", str(args.attackers), "--size", str(args.size)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
        if attacker.stdout.readline().strip() != "attacking":
            raise SystemExit("the attacker did not start")
        server.send_signal(signal.SIGUSR1)
        loud = summary(probe(port, args.duration, args.interval))
        attacker.stdin.write("stop\n")  # no new hostile requests; those in flight finish
        attacker.stdin.flush()
        outcome = json.loads(attacker.stdout.readline())
        server.terminate()
        lag = json.loads(server.stdout.readline())
        result = {"attack": args.attack, "attackers": args.attackers, "size": args.size,
                  "healthz_quiet": quiet, "healthz_under_attack": loud,
                  "reactor_lag_under_attack": lag, **outcome}
        print(json.dumps(result, indent=2))
        print(f"\n{args.attackers} x {args.attack} ({outcome['body_bytes']} bytes): "
              f"/healthz p50 {loud['p50_ms']} ms, p99 {loud['p99_ms']} ms, "
              f"max {loud['max_ms']} ms over {loud['count']} probes; reactor lag p99 "
              f"{lag['p99_ms']} ms, max {lag['max_ms']} ms (most CPU between two ticks "
              f"{lag['cpu_between_ticks_max_ms']} ms); "
              f"hostile answers {outcome['statuses']}")
    finally:
        for proc in (attacker, server):
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs="?", default="run", choices=["run", "server", "attack"])
    parser.add_argument("--attack", default="multipart",
                        choices=["multipart", "token-multipart", "token", "upload", "firmware"])
    parser.add_argument("--attackers", type=int, default=3)
    parser.add_argument("--size", type=int, default=4 * MIB - 1024,
                        help="hostile body size in bytes (default: just under 4 MiB)")
    parser.add_argument("--duration", type=float, default=10.0,
                        help="seconds of probing under attack")
    parser.add_argument("--interval", type=float, default=0.01, help="seconds between probes")
    parser.add_argument("--port", type=int)
    args = parser.parse_args(argv)
    {"run": run, "server": serve, "attack": attack}[args.command](args)


if __name__ == "__main__":
    main()
