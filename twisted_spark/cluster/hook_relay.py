# -*- test-case-name: tests.test_cluster_webhooks -*-
"""Webhooks created or deleted on one node, followed by the others at once.

Every node's dispatcher knows every hook (any node may receive an owner's
event).  The API tells its own node's dispatcher of a change; this relay,
which the API is given as its dispatcher in a cluster, also announces the
change on ``<namespace>:webhooks`` as ``[node, change, owner, hook]``.
The other nodes then drop a deleted hook at once (no new delivery of it
starts) and reload the stored hooks for a created one.  The dispatchers'
periodic reload stays as the safety net for announcements lost while a
node was away from Redis.
"""

from __future__ import annotations

import json

from twisted.logger import Logger
from zope.interface import implementer

from twisted_spark.cluster.codec import dumps
from twisted_spark.interfaces.webhooks import IWebhookDispatcher

log = Logger()


@implementer(IWebhookDispatcher)
class HookRelay:
    """The node's dispatcher, announcing the API's changes to the cluster.

    :param dispatcher: this node's
        :class:`~twisted_spark.webhooks.dispatcher.WebhookDispatcher`.
    :param link: the cluster's :class:`~twisted_spark.cluster.link.RedisLink`.
    :param node_id: this node's id.
    """

    def __init__(self, dispatcher, link, node_id: str) -> None:
        self.dispatcher = dispatcher
        self.link = link
        self.node_id = node_id
        #: The channel of the announcements.
        self.channel = link.key("webhooks")
        self.sent = self.heard = 0

    def start(self):
        return self.dispatcher.start()

    def stop(self):
        return self.dispatcher.stop()

    def reload(self):
        return self.dispatcher.reload()

    def failures(self, hook_id: str) -> int:
        return self.dispatcher.failures(hook_id)

    def hook_added(self, hook) -> None:
        self.dispatcher.hook_added(hook)
        self._announce("added", hook.owner, hook.hook_id)

    def hook_removed(self, hook_id: str) -> None:
        known = self.dispatcher.hook(hook_id)
        self.dispatcher.hook_removed(hook_id)
        self._announce("removed", known.owner if known is not None else None, hook_id)

    def _announce(self, change: str, owner: str | None, hook_id: str) -> None:
        if self.link.redis is None:
            return  # not connected, or stopped: the others' reload finds it
        self.sent += 1
        d = self.link.publish(self.channel, dumps([self.node_id, change, owner, hook_id]))
        d.addErrback(lambda f: log.failure(
            "Could not tell the cluster that webhook {hook_id} was {change}", f,
            hook_id=hook_id, change=change))

    def received(self, message: str) -> None:
        """Another node created or deleted a hook: follow it now."""
        try:
            node, change, _owner, hook_id = json.loads(message)
        except (TypeError, ValueError):
            log.warn("Ignoring a malformed message on {channel}", channel=self.channel)
            return
        if node == self.node_id:
            return
        self.heard += 1
        if change == "removed":
            self.dispatcher.hook_removed(str(hook_id))
        elif change == "added":
            self.dispatcher.reload().addErrback(lambda f: log.failure(
                "Could not load webhook {hook_id}, created on node {node}", f,
                hook_id=hook_id, node=node))
        else:
            log.warn("Ignoring an unknown change {change!r} on {channel}", change=change,
                     channel=self.channel)
