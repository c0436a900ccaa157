# -*- test-case-name: tests.test_cluster_units -*-
"""The registry of a cluster node: its own sessions, and every other node's devices.

:class:`ClusterRegistry` is the single-node
:class:`~twisted_spark.registry.DeviceRegistry` with three changes:

* ``get`` and ``online_ids`` are cluster-wide: a device another node holds
  is a :class:`~twisted_spark.cluster.calls.RemoteDevice`, from a table the
  ``presence`` channel keeps current (loaded from Redis at start);
* a session coming online claims the device in Redis, and its ``spark/status
  online`` event travels with the claim; one going offline releases it, and
  its ``offline`` is published only if this node still held it;
* a claim by another node that is newer (claims are numbered by Redis) than
  this node's takes the device over: the stale local session is closed
  without any status event, so a device moving between nodes shows
  ``online`` once and never ``offline`` in between.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from twisted_spark.cluster.calls import RemoteDevice
from twisted_spark.cluster.codec import dumps
from twisted_spark.models import Event
from twisted_spark.registry import DeviceRegistry

log = Logger()


@dataclass
class RemoteEntry:
    """A device held by another node: which one, its claim number, its facts."""

    node: str
    seq: int
    info: dict[str, Any] = field(default_factory=dict)


def facts(session) -> dict[str, Any]:
    """What other nodes show of a local session (and need to call it)."""
    return {
        "platform_id": session.platform_id, "product_id": session.product_id,
        "firmware_version": session.firmware_version, "remote_ip": session.remote_ip,
        "owner": session.owner, "since": session.last_heard,
        "functions": list(session.functions or ()), "variables": dict(session.variables or {}),
    }


class ClusterRegistry(DeviceRegistry):
    """A :class:`DeviceRegistry` that knows the devices of the whole cluster.

    :param presence: the :class:`~twisted_spark.cluster.presence.Presence`.
    :param relay: the :class:`~twisted_spark.cluster.relay.EventRelay`.
    :param router: set after construction: the
        :class:`~twisted_spark.cluster.calls.CallRouter` remote devices call through.
    """

    def __init__(self, clock, *, bus, store, presence, relay) -> None:
        super().__init__(clock, bus=bus, store=store)
        self.presence = presence
        self.relay = relay
        self.router: Any = None
        #: device id -> RemoteEntry, for devices other nodes hold.
        self.remote: dict[str, RemoteEntry] = {}
        #: device id -> the claim number of the local session (None: on its way).
        self._claims: dict[str, int | None] = {}
        self._quiet: object = None
        #: Set when the node stops: sessions then close without any status
        #: event; the sweep of this node publishes the ``offline`` ones.
        self.draining = False
        self._pending: set[defer.Deferred] = set()

    # -- cluster-wide views --------------------------------------------------------

    def get(self, device_id):
        session = self._sessions.get(device_id)
        if session is not None:
            return session
        entry = self.remote.get(device_id)
        return RemoteDevice(device_id, entry, self.router) if entry is not None else None

    def online_ids(self) -> set[str]:
        return set(self._sessions) | set(self.remote)

    def owner_changed(self, device_id: str, owner: str | None) -> None:
        """Every node's view of the device takes the new owner (events follow it)."""
        self._apply_owner(device_id, owner)
        note = dumps({"op": "owner", "node": self.presence.node_id, "id": device_id,
                      "owner": owner})
        self._track(self.presence.link.publish(self.presence.channel, note), device_id)

    def _apply_owner(self, device_id, owner):
        super().owner_changed(device_id, owner)
        entry = self.remote.get(device_id)
        if entry is not None:
            entry.info["owner"] = owner

    # -- the local side ---------------------------------------------------------------

    def save(self, device_id, **changes):
        d = super().save(device_id, **changes)
        if "functions" in changes or "variables" in changes:
            session = self._sessions.get(device_id)
            if session is not None:
                info = {"functions": list(session.functions or ()),
                        "variables": dict(session.variables or {})}
                self._track(self.presence.announce(device_id, info), device_id)
        return d

    def _publish_status(self, session, status):
        if self.bus is None or session is self._quiet or self.draining:
            return
        event = self._status_event(session, status)
        device_id = session.device_id
        if status == "online":
            self._claims[device_id] = None
            self.relay.publish_locally(event)
            d = self.presence.claim(device_id, facts(session), event)
            d.addCallback(self._claimed, session)
        else:
            if self._sessions.get(device_id) is None:
                self._claims.pop(device_id, None)
            d = self.presence.release(device_id, event)
            d.addCallback(lambda released: released and self.relay.publish_locally(event))
        self._track(d, device_id)

    def _status_event(self, session, status: str) -> Event:
        return Event(name="spark/status", data=status, ttl=60,
                     published_at=self.clock.seconds(), coreid=session.device_id,
                     public=False, owner=session.owner)

    def _track(self, d, device_id):
        self._pending.add(d)
        d.addErrback(lambda f: log.failure(
            "Updating the cluster's presence of {device_id} failed", f, device_id=device_id))
        d.addBoth(lambda _: self._pending.discard(d))

    def _claimed(self, seq: int, session) -> None:
        device_id = session.device_id
        if self._sessions.get(device_id) is not session:
            return
        self._claims[device_id] = seq
        entry = self.remote.get(device_id)
        if entry is not None and entry.seq > seq:
            self.evict(device_id, entry.node)
        elif entry is not None:
            del self.remote[device_id]

    def reclaim(self, device_id: str, online: bool) -> None:
        """The key of a device held here expired: claim it again, announcing
        ``online`` when the other nodes took it for offline (this node was swept)."""
        session = self._sessions.get(device_id)
        if session is None:
            return
        event = None
        if online:
            event = self._status_event(session, "online")
            self.relay.publish_locally(event)
        self._claims[device_id] = None
        d = self.presence.claim(device_id, facts(session), event)
        self._track(d.addCallback(self._claimed, session), device_id)

    def evict(self, device_id: str, node: str) -> None:
        """Another node took ``device_id`` over: close the local session quietly."""
        session = self._sessions.pop(device_id, None)
        self._claims.pop(device_id, None)
        if session is None:
            return
        log.info("Device {device_id} reconnected to node {node}; closing its connection here",
                 device_id=device_id, node=node)
        self._quiet = session
        try:
            self._went_offline(session)
        finally:
            self._quiet = None
        session.disconnect(f"the device reconnected to node {node}")
        self._track(self.presence.forget(device_id), device_id)

    # -- what other nodes say ------------------------------------------------------------

    def presence_message(self, message: str) -> None:
        """A message on the ``presence`` channel."""
        note = _parse(message)
        if note is None or note["node"] == self.presence.node_id and note["op"] != "owner":
            return
        op, device_id, node = note["op"], note["id"], note["node"]
        entry = self.remote.get(device_id)
        if op == "on":
            seq = int(note["seq"])
            if entry is not None and entry.seq > seq:
                return
            self.remote[device_id] = RemoteEntry(node, seq, dict(note.get("info") or {}))
            mine = self._claims.get(device_id)
            if device_id in self._sessions and mine is not None and mine < seq:
                self.evict(device_id, node)
        elif op == "off":
            if entry is not None and entry.node == node:
                del self.remote[device_id]
        elif op == "info":
            if entry is not None and entry.node == node:
                entry.info.update(note.get("info") or {})
        elif op == "owner" and node != self.presence.node_id:
            self._apply_owner(device_id, note.get("owner"))

    def load(self, snapshot, replace: bool = False) -> None:
        """Take the devices other nodes hold from a presence snapshot (with
        ``replace``, forget those it no longer lists)."""
        if replace:
            for device_id in set(self.remote) - set(snapshot):
                del self.remote[device_id]
        for device_id, (node, seq, info) in snapshot.items():
            if node != self.presence.node_id and device_id not in self._sessions:
                entry = self.remote.get(device_id)
                if entry is None or entry.seq < seq:
                    self.remote[device_id] = RemoteEntry(node, seq, info)

    def node_lost(self, node: str) -> dict[str, str | None]:
        """Forget the devices of dead ``node``: ``{device id: owner}`` of them."""
        gone = {i: entry.info.get("owner") for i, entry in self.remote.items()
                if entry.node == node}
        for device_id in gone:
            del self.remote[device_id]
        return gone

    async def settle(self) -> None:
        """Wait for the presence updates on their way (the node stops)."""
        while self._pending:
            await defer.DeferredList(list(self._pending), consumeErrors=True)


def _parse(message):
    import json

    try:
        note = json.loads(message)
        if note["op"] in ("on", "off", "info", "owner") and note["id"] and note["node"]:
            return note
    except (TypeError, ValueError, KeyError):
        pass
    log.warn("Ignoring a malformed presence message: {message!r}", message=message[:80])
    return None
