# -*- test-case-name: tests.test_cluster_e2e -*-
"""Which node holds which device, in Redis, with a TTL its holder refreshes.

Keys (all under the namespace):

* ``dev:<device id>`` = ``node\\nseq\\ninfo JSON``, expiring after the
  presence TTL unless the holder refreshes it (every TTL/3);
* ``held:<node>``, the set of ids a node claimed (what a sweep of a dead
  node goes through);
* ``node:<node>``, the node's heartbeat (same TTL), and ``nodes``, every
  node that joined;
* ``seq``, the counter that orders claims; ``sweep:<node>``, the lock one
  node takes to sweep a dead one.

A claim and a release are Lua scripts, so each changes the key, announces
the change on the ``presence`` channel and publishes the ``spark/status``
event on the event channel in one step: every node sees a device's status
events and presence changes in the order Redis applied them, whichever
nodes they came from.  The announcement goes first, so whoever sees the
event and asks any node about the device finds it as the event says.  A
release publishes only if the releasing node still holds the device (or
held it until its key expired), so a device that moved to another node gets
no ``offline`` from the node it left.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import defer

from twisted_spark.cluster.codec import dumps, encode_event

CLAIM = """
local seq = redis.call('INCR', KEYS[5])
redis.call('SET', KEYS[1], ARGV[1] .. '\\n' .. seq .. '\\n' .. ARGV[4], 'PX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('PUBLISH', KEYS[4], '{"op":"on","seq":' .. seq .. ',"node":' .. cjson.encode(ARGV[1])
  .. ',"id":' .. cjson.encode(ARGV[3]) .. ',"info":' .. ARGV[4] .. '}')
if ARGV[5] ~= '' then redis.call('PUBLISH', KEYS[3], ARGV[5]) end
return seq
"""

RELEASE = """
local value = redis.call('GET', KEYS[1])
local member = redis.call('SREM', KEYS[2], ARGV[2])
local mine = value and string.sub(value, 1, string.len(ARGV[1]) + 1) == ARGV[1] .. '\\n'
if mine or (not value and member == 1) then
  if value then redis.call('DEL', KEYS[1]) end
  redis.call('PUBLISH', KEYS[4], ARGV[4])
  if ARGV[3] ~= '' then redis.call('PUBLISH', KEYS[3], ARGV[3]) end
  return 1
end
return 0
"""

REFRESH = """
local lost, missing = {}, {}
local prefix = ARGV[1] .. '\\n'
for i, key in ipairs(KEYS) do
  local value = redis.call('GET', key)
  if not value then
    table.insert(missing, i)
  elseif string.sub(value, 1, string.len(prefix)) == prefix then
    redis.call('PEXPIRE', key, ARGV[2])
  else
    table.insert(lost, i)
  end
end
return {lost, missing}
"""

HEARTBEAT = """
local alive = redis.call('EXISTS', KEYS[1])
redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
redis.call('SADD', KEYS[2], ARGV[2])
return alive
"""

DEAD_NODES = """
local dead = {}
for _, node in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if node ~= ARGV[1] and redis.call('EXISTS', ARGV[2] .. node) == 0 then
    table.insert(dead, node)
  end
end
return dead
"""

#: Device keys one refresh script handles (the script blocks Redis while it runs).
REFRESH_BATCH = 1000


def parse_value(value: str) -> tuple[str, int, dict[str, Any]]:
    """``(node, seq, info)`` of a ``dev:`` key's value."""
    node, seq, info = value.split("\n", 2)
    return node, int(seq), json.loads(info)


class Presence:
    """This node's side of the presence keys (see the module docstring).

    :param link: the :class:`~twisted_spark.cluster.link.RedisLink`.
    :param node_id: this node's id.
    :param ttl: seconds a device key and a heartbeat live unrefreshed.
    """

    def __init__(self, link, node_id: str, ttl: float) -> None:
        self.link = link
        self.node_id = node_id
        self.ttl_ms = str(int(ttl * 1000))
        self.events = link.key("events")
        self.channel = link.key("presence")

    def _dev(self, device_id: str) -> str:
        return self.link.key("dev", device_id)

    def _held(self, node: str) -> str:
        return self.link.key("held", node)

    def claim(self, device_id: str, info: dict[str, Any], event) -> defer.Deferred[int]:
        """Hold ``device_id`` from now on, publishing ``event`` (its ``online``
        status, or None); fires with the claim's sequence number."""
        message = encode_event(event, self.node_id) if event is not None else ""
        keys = [self._dev(device_id), self._held(self.node_id), self.events, self.channel,
                self.link.key("seq")]
        d = self.link.redis.eval(CLAIM, keys, [self.node_id, self.ttl_ms, device_id,
                                               dumps(info), message])
        return d.addCallback(int)

    def release(self, device_id: str, event, node: str | None = None) -> defer.Deferred[bool]:
        """Give up ``device_id`` if ``node`` (default: this one) still holds
        it, publishing ``event`` (its ``offline`` status) then; fires with
        whether it did."""
        node = node or self.node_id
        message = encode_event(event, self.node_id) if event is not None else ""
        note = dumps({"op": "off", "node": node, "id": device_id})
        keys = [self._dev(device_id), self._held(node), self.events, self.channel]
        d = self.link.redis.eval(RELEASE, keys, [node, device_id, message, note])
        return d.addCallback(lambda done: bool(int(done)))

    def forget(self, device_id: str) -> defer.Deferred:
        """Drop ``device_id`` from this node's set (another node took it over)."""
        return self.link.redis.srem(self._held(self.node_id), device_id)

    def announce(self, device_id: str, info: dict[str, Any]) -> defer.Deferred:
        """Tell the other nodes new facts about a device held here (its Describe)."""
        message = dumps({"op": "info", "node": self.node_id, "id": device_id, "info": info})
        return self.link.publish(self.channel, message)

    async def heartbeat(self) -> bool:
        """Renew this node's heartbeat; whether it was still alive (False on the
        first beat, and after the node was taken for dead and swept)."""
        alive = await self.link.redis.eval(
            HEARTBEAT, [self.link.key("node", self.node_id), self.link.key("nodes")],
            [self.ttl_ms, self.node_id])
        return bool(int(alive))

    async def refresh(self, device_ids: list[str]) -> tuple[list[str], list[str]]:
        """Renew the keys of ``device_ids``: ``(lost, missing)``, the ids
        another node holds now (this node missed their takeover) and those
        whose key expired (to claim again)."""
        lost: list[str] = []
        missing: list[str] = []
        for start in range(0, len(device_ids), REFRESH_BATCH):
            batch = device_ids[start:start + REFRESH_BATCH]
            gone, expired = await self.link.redis.eval(
                REFRESH, [self._dev(i) for i in batch], [self.node_id, self.ttl_ms])
            lost.extend(batch[int(i) - 1] for i in gone or ())
            missing.extend(batch[int(i) - 1] for i in expired or ())
        return lost, missing

    async def dead_nodes(self) -> list[str]:
        """The nodes that joined and whose heartbeat expired (not this one)."""
        dead = await self.link.redis.eval(DEAD_NODES, [self.link.key("nodes")],
                                          [self.node_id, self.link.key("node", "")])
        return list(dead or ())

    async def sweep(self, node: str, offline_event) -> list | None:
        """Release every device of dead ``node`` with ``await offline_event(device_id)``
        (its Event), if this node wins the sweep lock; the events published,
        or None when another node sweeps it."""
        won = await self.link.redis.set(self.link.key("sweep", node), self.node_id,
                                        only_if_not_exists=True,
                                        pexpire=max(5000, 2 * int(self.ttl_ms)))
        if not won:
            return None
        released = await self.release_all(node, offline_event)
        await self.link.redis.srem(self.link.key("nodes"), node)
        return released

    async def release_all(self, node: str, offline_event) -> list:
        """Release every device ``node`` still holds (see :meth:`sweep`)."""
        released: list = []
        ids = list(await self.link.redis.smembers(self._held(node)))
        for start in range(0, len(ids), REFRESH_BATCH):  # in flight together, in order
            events = [await offline_event(i) for i in ids[start:start + REFRESH_BATCH]]
            done = await defer.gatherResults(
                [self.release(event.coreid, event, node=node) for event in events],
                consumeErrors=True)
            released.extend(event for event, ok in zip(events, done, strict=True) if ok)
        await self.link.redis.delete(self._held(node))
        return released

    async def snapshot(self) -> dict[str, tuple[str, int, dict[str, Any]]]:
        """Every device key now: ``{device id: (node, seq, info)}``."""
        redis = self.link.redis
        found: dict[str, tuple[str, int, dict[str, Any]]] = {}
        for node in await redis.smembers(self.link.key("nodes")):
            ids = list(await redis.smembers(self._held(node)))
            for start in range(0, len(ids), REFRESH_BATCH):
                batch = ids[start:start + REFRESH_BATCH]
                values = await redis.mget([self._dev(i) for i in batch])
                for device_id, value in zip(batch, values, strict=True):
                    if value:
                        found[device_id] = parse_value(value)
        return found

    async def leave(self) -> None:
        """This node stops: its heartbeat ends a third of the TTL from now, so
        devices have that long to reconnect to another node (which takes them
        over without ``offline``); the sweep after it publishes ``offline``
        for the others, and only for them."""
        await self.link.redis.execute_command(
            "PEXPIRE", self.link.key("node", self.node_id), int(self.ttl_ms) // 3)
