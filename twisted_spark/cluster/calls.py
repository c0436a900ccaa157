# -*- test-case-name: tests.test_cluster_units -*-
"""Calls on a device another node holds: request and answer through Redis.

Each node listens on its inbox channel, ``<namespace>:inbox:<node id>``.  A
call on a :class:`RemoteDevice` publishes ``{"k": "req", "id": n, "from":
node, "dev": device id, "op": ..., "args": {...}}`` to the holder's inbox;
the holder runs it on its local session and publishes ``{"k": "res", "id":
n, "ok": value}`` or ``{"k": "res", "id": n, "error": ...}`` to the caller's
inbox.  Each call is sent once and never retried, so none runs twice; if
nobody listens on the holder's inbox (it just died) the call fails at once
with DeviceNotConnected (404), and an answer that does not come within the
request timeout (plus a margin) fails it with DeviceTimeout (408).  The
holder's own errors (DeviceBusy while flashing, 409; DeviceTimeout; an
unknown function) come back as themselves.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from twisted_spark.cluster.codec import decode_error, dumps, encode_error
from twisted_spark.errors import DeviceNotConnected, DeviceTimeout
from twisted_spark.interfaces import IDeviceSession

log = Logger()

#: Seconds an answer may take beyond the request timeout (the hops through Redis).
MARGIN = 5.0


def _describe_answer(answer) -> dict[str, Any]:
    answer = answer if isinstance(answer, dict) else {}
    return {"functions": list(answer.get("functions") or ()),
            "variables": dict(answer.get("variables") or {})}


#: op -> ``handler(session, args) -> Deferred`` run on the holding node.
HOLDER_OPS = {
    "function": lambda s, a: s.call_function(a["name"], a["arg"].encode("latin-1")),
    "variable": lambda s, a: s.read_variable(a["name"]),
    "signal": lambda s, a: s.signal(bool(a["on"])),
    "ping": lambda s, a: s.ping(),
    "describe": lambda s, a: s.describe().addCallback(_describe_answer),
    "final_describe": lambda s, a: s.final_describe().addCallback(_describe_answer),
}


class CallRouter:
    """Sends calls to other nodes and serves theirs (see the module docstring).

    :param link: the :class:`~twisted_spark.cluster.link.RedisLink`.
    :param node_id: this node's id.
    :param registry: the registry whose ``local`` sessions serve calls here.
    :param clock: ``IReactorTime`` for the answer timeouts.
    :param timeout: seconds a normal call waits (the request timeout + :data:`MARGIN`).
    """

    def __init__(self, link, node_id: str, registry, clock, timeout: float) -> None:
        self.link = link
        self.node_id = node_id
        self.registry = registry
        self.clock = clock
        self.timeout = timeout
        self.inbox = self.inbox_of(node_id)
        #: op -> handler(session, args) -> Deferred, run here for other nodes.
        self.ops = dict(HOLDER_OPS)
        self._ids = itertools.count(1)
        self._waiting: dict[int, defer.Deferred] = {}
        self.served = 0

    def inbox_of(self, node: str) -> str:
        return self.link.key("inbox", node)

    # -- the calling side ------------------------------------------------------

    def call(self, node: str, device_id: str, op: str, args: dict[str, Any],
             timeout: float | None = None) -> defer.Deferred:
        """Run ``op`` on ``device_id`` at ``node`` -> Deferred[its answer]."""
        ident = next(self._ids)
        d: defer.Deferred = defer.Deferred(lambda _: self._forget(ident))
        self._waiting[ident] = d
        d.addTimeout(self.timeout if timeout is None else timeout, self.clock,
                     onTimeoutCancel=lambda result, t: self._timed_out(ident, device_id))
        request = dumps({"k": "req", "id": ident, "from": self.node_id, "dev": device_id,
                         "op": op, "args": args})
        sent = self.link.publish(self.inbox_of(node), request)
        sent.addCallbacks(lambda receivers: receivers or self._unheard(ident, device_id),
                          lambda failure: self._fail(ident, failure))
        return d

    def _forget(self, ident: int) -> None:
        self._waiting.pop(ident, None)

    def _timed_out(self, ident, device_id):
        self._waiting.pop(ident, None)
        raise DeviceTimeout(device_id)

    def _unheard(self, ident, device_id):
        self._fail(ident, DeviceNotConnected(device_id))

    def _fail(self, ident, error) -> None:
        d = self._waiting.pop(ident, None)
        if d is not None:
            d.errback(error)

    def close(self) -> None:
        """Fail every call still waiting (the node stops)."""
        waiting, self._waiting = self._waiting, {}
        for d in waiting.values():
            d.errback(DeviceNotConnected("this node is stopping"))

    # -- both sides --------------------------------------------------------------

    def received(self, message: str) -> None:
        """A message on this node's inbox: a request to serve or an answer."""
        try:
            body = json.loads(message)
            kind = body["k"]
        except (TypeError, ValueError, KeyError):
            log.warn("Ignoring a malformed message on {inbox}", inbox=self.inbox)
            return
        if kind == "res":
            d = self._waiting.pop(body.get("id"), None)
            if d is None:
                return  # timed out or cancelled meanwhile
            if "error" in body:
                d.errback(decode_error(body))
            else:
                d.callback(body.get("ok"))
        elif kind == "req":
            self._serve(body).addErrback(
                lambda f: log.failure("Answering a call from {node} failed", f,
                                      node=body.get("from")))

    @defer.inlineCallbacks
    def _serve(self, request):
        self.served += 1
        device_id = request.get("dev")
        reply: dict[str, Any] = {"k": "res", "id": request.get("id")}
        try:
            session = self.registry.local(device_id)
            if session is None:
                raise DeviceNotConnected(device_id)
            handler = self.ops[request["op"]]
            reply["ok"] = yield handler(session, request.get("args") or {})
        except Exception as e:
            reply.update(encode_error(e))
        yield self.link.publish(self.inbox_of(request["from"]), dumps(reply))


@implementer(IDeviceSession)
class RemoteDevice:
    """A device another node holds, as the API sees it: facts and calls.

    :param device_id: its id.
    :param entry: the registry's :class:`RemoteEntry` for it (node and facts).
    :param router: the :class:`CallRouter`.
    """

    connected = True
    busy = False  # the holder answers DeviceBusy itself

    def __init__(self, device_id: str, entry, router: CallRouter) -> None:
        self.device_id = device_id
        self.entry = entry
        self.router = router

    def _fact(self, name, default=None):
        return self.entry.info.get(name, default)

    platform_id = property(lambda self: self._fact("platform_id", 0))
    product_id = property(lambda self: self._fact("product_id"))
    firmware_version = property(lambda self: self._fact("firmware_version"))
    remote_ip = property(lambda self: self._fact("remote_ip", ""))
    last_heard = property(lambda self: self._fact("since", 0.0))
    owner = property(lambda self: self._fact("owner"))
    functions = property(lambda self: tuple(self._fact("functions") or ()))
    variables = property(lambda self: dict(self._fact("variables") or {}))

    @property
    def node(self) -> str:
        """The id of the node holding the device."""
        return self.entry.node

    def _call(self, op, args=None, timeout=None):
        return self.router.call(self.entry.node, self.device_id, op, args or {}, timeout)

    def _remember(self, answer):
        if answer.get("functions") or answer.get("variables"):
            self.entry.info.update(answer)
        return {"functions": tuple(answer.get("functions") or ()),
                "variables": dict(answer.get("variables") or {})}

    def describe(self):
        if self.functions or self.variables:
            return defer.succeed({"functions": self.functions, "variables": self.variables})
        return self._call("describe").addCallback(self._remember)

    def final_describe(self):
        return self._call("final_describe").addCallback(self._remember)

    def call_function(self, name, argument):
        if isinstance(argument, str):
            argument = argument.encode("utf-8")
        return self._call("function", {"name": name, "arg": argument.decode("latin-1")})

    def read_variable(self, name):
        return self._call("variable", {"name": name})

    def signal(self, on):
        return self._call("signal", {"on": bool(on)})

    def ping(self):
        return self._call("ping")

    def flash(self, image_id: str, timeout: float):
        """Flash stored image ``image_id`` at the holder -> Deferred[image id]."""
        return self._call("flash", {"image": image_id}, timeout)

    def __repr__(self) -> str:
        return f"<RemoteDevice {self.device_id} at {self.entry.node}>"
