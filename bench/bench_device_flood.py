"""Server memory and log volume under a pre-authentication flood of the device port.

Reproduces issue 9 item 2: ``--queued`` connections each send a 256-byte
identity blob of junk (each costs one RSA private-key decryption, so they
queue in the RSA pool), then ``--streams`` more connections send a blob and
keep streaming ``--mib`` MiB of junk behind it while their decryption waits
at the back of that queue.

The server runs as a separate process (``python -m twisted_spark serve``
from ``--root``, default this checkout, so an older tree can be measured
the same way) on loopback ports; its RSS is read from ``/proc`` every 20 ms.
Reports the RSS before, the peak during, and after the attack, the server's
peak (``VmHWM``), how much junk the streams got through before being cut
off, and how many log lines the server wrote meanwhile.

Usage::

    python bench/bench_device_flood.py [--queued 1500] [--streams 20] [--mib 20]
        [--root /path/to/other/checkout] [-- extra server options]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
CHUNK = 64 * 1024
#: Log line fragments counted in the report (refusals, drops, summaries).
MARKERS = (
    "Refusing device connection",
    "server busy",
    "before the server answered",
    "handshake refused",
    "Suppressed",
)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status(pid, field):
    """A ``VmRSS``-style field of /proc/<pid>/status, in MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field}")


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def start_server(root, data_dir, device_port, api_port, extra, log_path):
    data_dir.mkdir(mode=0o700)
    key = data_dir / "server_key.pem"
    shutil.copy(root / "tests" / "keys" / "server.pem", key)
    key.chmod(0o600)
    log = open(log_path, "w")  # noqa: SIM115 - closed by the caller via the process
    process = subprocess.Popen(
        [sys.executable, "-m", "twisted_spark", "serve", "--data-dir", str(data_dir),
         "--device", f"tcp:{device_port}:interface=127.0.0.1", "--udp-device", "off",
         "--api", f"tcp:{api_port}:interface=127.0.0.1", *extra],
        cwd=root, env=dict(os.environ, PYTHONPATH=str(root)), stdout=log,
        stderr=subprocess.STDOUT, preexec_fn=raise_fd_limit,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}; see {log_path}")
        try:
            socket.create_connection(("127.0.0.1", api_port), timeout=1).close()
            return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("server did not start within 30 s")


def open_connections(port, count):
    """``count`` idle connections (they wait for their nonce: no RSA work yet)."""
    sockets = []
    for _ in range(count):
        try:
            sockets.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        except OSError:
            continue  # refused: that is the server defending itself
    return sockets


def send_identities(sockets):
    """A junk identity blob on every connection, as fast as possible: the jobs queue."""
    sent = 0
    for s in sockets:
        try:
            s.sendall(os.urandom(256))
            sent += 1
        except OSError:
            pass
    return sent


def stream_junk(port, mib, sent, index):
    """One connection: a junk blob, then ``mib`` MiB of junk until the server cuts it."""
    junk = os.urandom(CHUNK)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(os.urandom(256))
            for _ in range(mib * 1024 * 1024 // CHUNK):
                s.sendall(junk)
                sent[index] += CHUNK
    except OSError:
        pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queued", type=int, default=1500, help="junk handshakes queued")
    parser.add_argument("--streams", type=int, default=20, help="connections streaming junk")
    parser.add_argument("--mib", type=int, default=20, help="MiB each stream tries to send")
    parser.add_argument("--root", type=Path, default=HERE, help="checkout to run the server from")
    parser.add_argument("server_args", nargs="*", help="extra server options (after --)")
    args = parser.parse_args()
    raise_fd_limit()
    root = args.root.resolve()
    work = Path(tempfile.mkdtemp(prefix="spark-flood-"))
    device_port, api_port = free_port(), free_port()
    log_path = work / "server.log"
    server = start_server(root, work / "data", device_port, api_port, args.server_args, log_path)
    try:
        time.sleep(1.0)  # let start-up settle before the baseline
        before = status(server.pid, "VmRSS")
        with open(log_path) as f:
            lines_before = len(f.readlines())
        peak = before
        sockets = open_connections(device_port, args.queued)
        started = time.monotonic()
        identities = send_identities(sockets)
        sent = [0] * args.streams
        threads = [
            threading.Thread(target=stream_junk, args=(device_port, args.mib, sent, i))
            for i in range(args.streams)
        ]
        for thread in threads:
            thread.start()
        while any(thread.is_alive() for thread in threads):
            peak = max(peak, status(server.pid, "VmRSS"))
            time.sleep(0.02)
        attack = time.monotonic() - started
        for s in sockets:
            s.close()
        time.sleep(2.0)  # the queue drains, closed connections are reaped
        peak = max(peak, status(server.pid, "VmRSS"))
        after = status(server.pid, "VmRSS")
        hwm = status(server.pid, "VmHWM")
        with open(log_path) as f:
            logged = f.readlines()[lines_before:]
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"server: {root} {' '.join(args.server_args)}".rstrip())
    print(f"attack: {len(sockets)} connections open, {identities} junk identities sent at "
          f"once, {args.streams} streams x {args.mib} MiB behind them; {attack:.1f} s")
    print(f"junk the streams sent before being cut off (kernel buffers included): "
          f"{sum(sent) / 2**20:.1f} MiB")
    print(f"server RSS: before {before:.0f} MiB, peak {peak:.0f} MiB (VmHWM {hwm:.0f} MiB), "
          f"after {after:.0f} MiB")
    print(f"server log lines during the attack: {len(logged)}")
    for marker in MARKERS:
        count = sum(1 for line in logged if marker in line)
        if count:
            print(f"  {count:6d}  ...{marker}...")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
