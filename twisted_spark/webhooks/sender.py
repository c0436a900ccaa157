# -*- test-case-name: tests.test_webhooks_e2e -*-
"""Sending one rendered request with treq, to a checked address (API.md §6).

:class:`HttpSender` makes each attempt with ``treq`` over an
``Agent`` whose endpoints resolve the host name once (the reactor's
non-blocking ``nameResolver``), keep only the addresses the
:class:`~twisted_spark.webhooks.policy.NetworkPolicy` allows, and connect
to those very addresses (in order, the next when one refuses; at most 4),
so a DNS answer that changes between a check and the connection cannot slip
a denied address in.  A connection that stays open
after its response may carry the next request to the same scheme, host and
port (its address was checked when it was made; idle ones close after 30 s);
every new connection resolves and checks again.  Redirects are not followed.
An attempt has ``timeout`` seconds from connecting to the end of the
response body, of which at most :data:`MAX_RESPONSE` bytes are read.
"""

from __future__ import annotations

from dataclasses import dataclass

import treq
from twisted.internet import defer, error, ssl
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, wrapClientTLS
from twisted.internet.interfaces import IResolutionReceiver
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from twisted_spark.interfaces.webhooks import IWebhookSender
from twisted_spark.webhooks.outgoing import Outgoing
from twisted_spark.webhooks.policy import NetworkPolicy, ip_literal

#: Bytes of a response body read at most.
MAX_RESPONSE = 100_000


@dataclass(frozen=True)
class Answer:
    """The target's answer: status code and (at most :data:`MAX_RESPONSE` bytes of) body."""

    status: int
    body: bytes


class AddressNotAllowed(Exception):
    """Every address of the target is in a denied network."""


class ConnectionFailed(Exception):
    """The target could not be reached or broke the exchange (retried)."""


class AttemptTimedOut(Exception):
    """The target did not answer completely within the timeout (not retried)."""


@implementer(IResolutionReceiver)
class _Addresses:
    def __init__(self) -> None:
        self.found: list = []
        self.done: defer.Deferred = defer.Deferred()

    def resolutionBegan(self, resolution) -> None:
        pass

    def addressResolved(self, address) -> None:
        self.found.append(address)

    def resolutionComplete(self) -> None:
        self.done.callback(self.found)


class _CheckedEndpoint:
    """Resolve, check, connect to the allowed address (TLS on top for https)."""

    def __init__(self, reactor, policy: NetworkPolicy, uri, verify: bool) -> None:
        self._reactor = reactor
        self._policy = policy
        self._host = uri.host.decode("ascii")
        self._port = uri.port
        self._tls = uri.scheme == b"https"
        self._verify = verify

    async def _addresses(self) -> list[str]:
        """The addresses to try, in order: the literal, or the allowed DNS answers
        (resolved once; a denied answer is never tried)."""
        literal = ip_literal(self._host)
        if literal is not None:  # no lookup (a thread) for an IP literal
            if not self._policy.allows(literal):
                raise AddressNotAllowed(self._host)
            return [str(literal)]
        receiver = _Addresses()
        self._reactor.nameResolver.resolveHostName(receiver, self._host, portNumber=self._port)
        found = await receiver.done
        if not found:
            raise error.DNSLookupError(f"no address for {self._host}")
        allowed = list(dict.fromkeys(a.host for a in found if self._policy.allows(a.host)))
        if not allowed:
            raise AddressNotAllowed(self._host)
        return allowed

    async def _connect(self, protocol_factory):
        failure: Exception | None = None
        for address in (await self._addresses())[:4]:
            kind = TCP6ClientEndpoint if ":" in address else TCP4ClientEndpoint
            endpoint = kind(self._reactor, address, self._port, timeout=10)
            if self._tls:
                if self._verify:
                    creator = ssl.optionsForClientTLS(self._host)
                else:
                    creator = ssl.CertificateOptions(verify=False)
                endpoint = wrapClientTLS(creator, endpoint)
            try:
                return await endpoint.connect(protocol_factory)
            except error.ConnectError as refused:  # refused, unreachable: the next one
                failure = refused
        assert failure is not None
        raise failure

    def connect(self, protocol_factory) -> defer.Deferred:
        return defer.ensureDeferred(self._connect(protocol_factory))


@implementer(IAgentEndpointFactory)
class _Endpoints:
    def __init__(self, reactor, policy: NetworkPolicy, verify: bool) -> None:
        self._reactor = reactor
        self._policy = policy
        self._verify = verify

    def endpointForURI(self, uri):
        return _CheckedEndpoint(self._reactor, self._policy, uri, self._verify)


class _BoundedBody(Protocol):
    """Collects at most ``limit`` bytes of a body, then hangs up."""

    def __init__(self, limit: int) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.limit = limit
        self.done: defer.Deferred = defer.Deferred(lambda _: self._stop())

    def _stop(self) -> None:
        stop = getattr(self.transport, "stopProducing", None)
        if stop is not None:
            stop()

    def dataReceived(self, data: bytes) -> None:
        if self.done.called:
            return
        room = self.limit - self.size
        self.chunks.append(data[:room])
        self.size += min(len(data), room)
        if self.size >= self.limit:
            self.done.callback(b"".join(self.chunks))
            self._stop()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.done.called:
            return
        from twisted.web.client import PotentialDataLoss, ResponseDone

        if reason.check(ResponseDone, PotentialDataLoss):
            self.done.callback(b"".join(self.chunks))
        else:
            self.done.errback(reason)


@implementer(IWebhookSender)
class HttpSender:
    """The production :class:`~twisted_spark.interfaces.webhooks.IWebhookSender`.

    :param reactor: connects, resolves and times attempts out.
    :param policy: the :class:`~twisted_spark.webhooks.policy.NetworkPolicy`.
    :param timeout: seconds per attempt (``--webhook-timeout``).
    """

    def __init__(self, reactor, policy: NetworkPolicy, timeout: float = 20.0) -> None:
        self._reactor = reactor
        self.timeout = timeout
        # One pool per certificate policy: a connection made without checking the
        # certificate must never carry a request of a hook that checks it.
        self._pools = {verify: _pool(reactor) for verify in (True, False)}
        self._agents = {
            verify: Agent.usingEndpointFactory(reactor, _Endpoints(reactor, policy, verify),
                                               pool=self._pools[verify])
            for verify in (True, False)
        }
        self._in_flight: set[defer.Deferred] = set()

    async def _attempt(self, request: Outgoing, verify: bool) -> Answer:
        headers: dict[str | bytes, list[str | bytes]] = {
            name: [value] for name, value in request.headers.items()}
        response = await treq.request(
            request.method, request.url, headers=headers, data=request.body,
            agent=self._agents[verify], allow_redirects=False)
        body = _BoundedBody(MAX_RESPONSE)
        response.deliverBody(body)
        return Answer(response.code, await body.done)

    def send(self, request: Outgoing, verify: bool = True) -> defer.Deferred:
        """One attempt. :rtype: Deferred[Answer]; fails with AddressNotAllowed,
        AttemptTimedOut or ConnectionFailed."""
        d = defer.ensureDeferred(self._attempt(request, verify))
        timed_out = []

        def time_out():
            timed_out.append(True)
            d.cancel()

        timer = self._reactor.callLater(self.timeout, time_out)
        self._in_flight.add(d)

        def done(result):
            self._in_flight.discard(d)
            if timer.active():
                timer.cancel()
            return result

        def classify(failure):
            # A cancelled request may surface as ResponseNeverReceived and the like.
            if timed_out:
                raise AttemptTimedOut(self.timeout)
            if failure.check(AddressNotAllowed, defer.CancelledError):
                return failure
            raise ConnectionFailed(_reason(failure.value))

        return d.addBoth(done).addErrback(classify)

    def close(self) -> defer.Deferred:
        """Cancel every attempt in flight. :rtype: Deferred[None]"""
        for d in list(self._in_flight):
            d.cancel()
        return defer.gatherResults(
            [pool.closeCachedConnections() for pool in self._pools.values()]
        ).addCallback(lambda _: None)


def _pool(reactor) -> HTTPConnectionPool:
    """Idle connections kept 30 s, at most 16 per scheme, host and port."""
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = 16
    pool.cachedConnectionTimeout = 30
    return pool


def _reason(exc: BaseException) -> str:
    """A short reason for a connection failure (``refused``, ``DNS lookup failed``...)."""
    reasons = getattr(exc, "reasons", None)  # ResponseFailed, ResponseNeverReceived
    if reasons:
        exc = reasons[0].value
    if isinstance(exc, error.ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, error.DNSLookupError):
        return "DNS lookup failed"
    if isinstance(exc, error.TimeoutError):
        return "connect timed out"
    if isinstance(exc, (error.ConnectionLost, error.ConnectionDone)):
        return "connection closed before the response ended"
    text = str(exc).strip() or type(exc).__name__
    return text[:120]
