# -*- test-case-name: tests.test_cluster_units,tests.test_cluster_e2e -*-
"""Keeping every node's read cache right: writes announced on ``<namespace>:cache``.

Each node reads tokens, users and devices through a
:class:`~twisted_spark.store.cache.CachingStore` (entries trusted for 1 s).
A write on one node drops that node's entries itself; this relay tells the
others, which drop theirs at once, so a token revoked or a device claimed
on one node is seen by every node within a Redis hop rather than a second.
"""

from __future__ import annotations

import json

from twisted.logger import Logger

from twisted_spark.cluster.codec import dumps

log = Logger()


class CacheRelay:
    """Passes the cache's invalidations between nodes.

    :param cache: the node's :class:`~twisted_spark.interfaces.IStoreCache`.
    :param link: the :class:`~twisted_spark.cluster.link.RedisLink`.
    :param node_id: this node's id.
    """

    def __init__(self, cache, link, node_id: str) -> None:
        self.cache = cache
        self.link = link
        self.node_id = node_id
        self.channel = link.key("cache")
        self.sent = self.heard = 0
        cache.add_listener(self._local)

    def _local(self, kind: str, key: str | None) -> None:
        if self.link.redis is None:
            return  # not connected yet, or stopped
        self.sent += 1
        d = self.link.publish(self.channel, dumps([self.node_id, kind, key]))
        d.addErrback(lambda f: log.failure("Could not tell the cluster about a write", f))

    def received(self, message: str) -> None:
        """Another node wrote: drop the entry it names."""
        try:
            node, kind, key = json.loads(message)
        except (TypeError, ValueError):
            log.warn("Ignoring a malformed message on {channel}", channel=self.channel)
            return
        if node == self.node_id:
            return
        self.heard += 1
        drop = {"token": self.cache.invalidate_token, "user": self.cache.invalidate_user,
                "device": self.cache.invalidate_device}.get(kind)
        if drop is not None and key is not None:
            drop(key)
        else:
            self.cache.invalidate_all()
