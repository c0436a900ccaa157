"""A lean HTTP/1.1 keep-alive client for load generators.

treq (``twisted.web.client.Agent``) spends about as much CPU per request as
the server it measures, so on a 2-core machine the generator competes with
the server and its latency becomes the figure.  This client sends requests
encoded once, on persistent connections, one request at a time per
connection, and reads a ``Content-Length`` response: about a tenth of treq's
cost, so the server's CPU and latency are what is measured.  Only what the
benchmarks need: no chunked responses, no redirects, no TLS.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol


class ResponseError(Exception):
    """The server's answer is not a response this client can read."""


def encode_request(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    """The bytes of one request (``Host`` is the caller's business)."""
    lines = [f"{method} {path} HTTP/1.1"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def parse_head(head: bytes) -> tuple[int, int]:
    """``(status, content length)`` of a response head (without its blank line)."""
    status_line, _, header_lines = head.partition(b"\r\n")
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ResponseError(f"not an HTTP/1.x status line: {status_line[:80]!r}")
    length = None
    for line in header_lines.split(b"\r\n"):
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"transfer-encoding" and value.strip().lower() != b"identity":
            raise ResponseError("chunked responses are not supported")
    if length is None:
        raise ResponseError("response without Content-Length")
    return int(parts[1]), length


class KeepAliveConnection(Protocol):
    """One persistent connection; :meth:`request` fires with ``(status, body)``."""

    def __init__(self) -> None:
        self._buffer = b""
        self._waiting: defer.Deferred | None = None
        self._head: tuple[int, int] | None = None

    def request(self, data: bytes) -> defer.Deferred:
        if self._waiting is not None:
            raise RuntimeError("one request at a time per connection")
        self._waiting = defer.Deferred()
        self.transport.write(data)
        return self._waiting

    def dataReceived(self, data: bytes) -> None:
        self._buffer += data
        while self._waiting is not None:
            if self._head is None:
                end = self._buffer.find(b"\r\n\r\n")
                if end < 0:
                    return
                try:
                    self._head = parse_head(self._buffer[:end])
                except ResponseError as error:
                    self._fail(error)
                    return
                self._buffer = self._buffer[end + 4:]
            status, length = self._head
            if len(self._buffer) < length:
                return
            body, self._buffer = self._buffer[:length], self._buffer[length:]
            self._head = None
            waiting, self._waiting = self._waiting, None
            waiting.callback((status, body))

    def connectionLost(self, reason) -> None:
        if self._waiting is not None:
            self._fail(ResponseError(f"connection lost: {reason.getErrorMessage()}"))

    def _fail(self, error: Exception) -> None:
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            waiting.errback(error)
        self.transport.loseConnection()


def connect(reactor, host: str, port: int) -> defer.Deferred:
    """A :class:`KeepAliveConnection` to ``host:port`` (with ``TCP_NODELAY``)."""

    def nodelay(connection):
        connection.transport.setTcpNoDelay(True)
        return connection

    endpoint = TCP4ClientEndpoint(reactor, host, port)
    return connectProtocol(endpoint, KeepAliveConnection()).addCallback(nodelay)
