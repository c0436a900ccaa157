# -*- test-case-name: tests.test_fuzz_corpus -*-
"""What the fuzz targets share: input splitting, the failure oracle, fixed keys.

A target is a function of one ``bytes`` input that raises only when the code
under test broke its contract (an undocumented exception, a logged internal
error, an unbounded output).  The helpers here keep each target short:

* :func:`split` cuts an input into messages at :data:`SEPARATOR`, so a
  mutation of one message leaves the others intact;
* :class:`FailureLog` watches ``twisted.logger`` for what the server logs when
  an exception escaped a handler (``log.failure`` or a critical line);
* :class:`MemoExecutor` runs crypto work inline and remembers the result for
  identical arguments: the targets repeat one correct handshake per input, and
  its private-key work need not be redone each time;
* :func:`test_keys` loads the suite's RSA keys (no generation at start-up).
"""

from __future__ import annotations

from pathlib import Path

from twisted.internet import defer
from twisted.logger import LogLevel, globalLogPublisher

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"
KEYS = ROOT / "tests" / "keys"

#: Between two messages of one input.  Short, unlikely inside a CoAP header.
SEPARATOR = b"\xf0MSG"
#: Messages of one input beyond this are ignored (bounded time per input).
MAX_MESSAGES = 64


def sequenced(message: bytes) -> bool:
    """Whether a device numbers this CoAP message from its counter (CON or NON, §5.5)."""
    return len(message) >= 4 and (message[0] >> 4) & 3 in (0, 1)


def renumber(message: bytes, message_id: int) -> bytes:
    """The message with ``message_id`` in its header (bytes 2-3)."""
    return message[:2] + (message_id & 0xFFFF).to_bytes(2, "big") + message[4:]


class ContractBroken(AssertionError):
    """The code under test did something its contract rules out."""


def split(data: bytes, limit: int = MAX_MESSAGES) -> list[bytes]:
    """The messages of one input (at most ``limit``)."""
    return data.split(SEPARATOR, limit)[:limit]


class FailureLog:
    """Collects log events that mean an exception escaped a handler.

    :param level: the lowest level that counts (critical by default:
        ``log.failure`` logs at critical).
    """

    def __init__(self, level: LogLevel = LogLevel.critical) -> None:
        self.level = level
        self.events: list[dict] = []
        self._started = False

    def __call__(self, event: dict) -> None:
        if "log_failure" in event or event.get("log_level", LogLevel.info) >= self.level:
            self.events.append(event)

    def start(self) -> FailureLog:
        if not self._started:
            globalLogPublisher.addObserver(self)
            self._started = True
        return self

    def clear(self) -> None:
        """Forget what was logged so far (before an input: only its own failures count)."""
        self.events.clear()

    def check(self) -> None:
        """Raise :class:`ContractBroken` naming the first failure logged since the last call."""
        if not self.events:
            return
        events, self.events = self.events, []
        failure = events[0].get("log_failure")
        if failure is not None:
            raise ContractBroken(
                f"{events[0].get('log_format')}: {failure.getTraceback()}")
        raise ContractBroken(f"critical log line: {events[0].get('log_format')} {events[0]!r}")


class MemoExecutor:
    """An inline ``IExecutor`` that remembers results by the identity/value of the arguments.

    Only for work whose result depends on nothing but its arguments (RSA and
    ECC operations with fixed randomness).  Failures are not remembered.
    """

    pending = 0

    def __init__(self, name: str = "memo") -> None:
        self.name = name
        self._results: dict = {}

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def run(self, function, *args, **kwargs) -> defer.Deferred:
        key = (function, *map(_memo_key, args), tuple(sorted(kwargs.items())))
        if key in self._results:
            return defer.succeed(self._results[key])
        d = defer.maybeDeferred(function, *args, **kwargs)

        def remember(result):
            self._results[key] = result
            return result

        return d.addCallback(remember)


def _memo_key(arg):
    """What identifies an argument: its value, a public key's numbers (a key
    loaded afresh per connection is the same key), or else its identity."""
    if isinstance(arg, bytes | str | int):
        return arg
    public_numbers = getattr(arg, "public_numbers", None)
    return public_numbers() if callable(public_numbers) else id(arg)


def connection_done():
    """The ``reason`` a transport gives ``connectionLost`` for a clean close."""
    from twisted.internet.error import ConnectionDone
    from twisted.python.failure import Failure

    return Failure(ConnectionDone("the fuzz input ended"))


def test_keys():
    """(server RSA-2048 private key, [device RSA-1024 private keys]) of the test suite."""
    from Crypto.PublicKey import RSA

    server = RSA.import_key((KEYS / "server.pem").read_bytes())
    devices = [RSA.import_key((KEYS / f"device-{i}.pem").read_bytes()) for i in (1, 2, 3)]
    return server, devices


def ec_key(label: str):
    """A fixed P-256 key per label (the suite's ``dtls_harness.key``)."""
    import hashlib

    from cryptography.hazmat.primitives.asymmetric import ec

    scalar = int.from_bytes(hashlib.sha256(label.encode()).digest(), "big") % (2**255) + 1
    return ec.derive_private_key(scalar, ec.SECP256R1())


class FixedRandom:
    """SHA-256 in counter mode over a label (the suite's ``dtls_harness.FixedRandom``)."""

    def __init__(self, label: str) -> None:
        self.label = label.encode()
        self.counter = 0

    def __call__(self, count: int) -> bytes:
        import hashlib

        out = b""
        while len(out) < count:
            out += hashlib.sha256(self.label + self.counter.to_bytes(8, "big")).digest()
            self.counter += 1
        return out[:count]


def constant_random(count: int) -> bytes:
    """Always the same bytes: every connection gets the same nonce and session."""
    return (bytes(range(1, 256)) * (count // 255 + 1))[:count]
