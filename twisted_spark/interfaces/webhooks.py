# -*- test-case-name: tests.test_webhooks_store,tests.test_webhooks_dispatch -*-
"""The webhook seams (API.md §6): storage, sending, and the dispatcher the API drives."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface


class IWebhookStore(Interface):
    """Webhooks (:class:`~twisted_spark.models.Webhook`), kept across restarts.

    A hook belongs to its owner: deleting the user deletes their hooks.
    """

    def add_webhook(hook: Any, limit: int | None = None) -> Deferred[Any]:
        """Store a new hook; with ``limit``, only if its owner has fewer than
        ``limit`` hooks (the count and the insert are one atomic step).

        :rtype: Deferred[Webhook]; fails with
            :class:`~twisted_spark.store.TooManyWebhooks` over the limit, or
            ``ConstraintError`` for an unknown owner or a duplicate id.
        """

    def get_webhook(hook_id: str) -> Deferred[Any]:
        """:rtype: Deferred[Webhook | None]"""

    def list_webhooks(owner: str | None = None) -> Deferred[Any]:
        """Every hook, or ``owner``'s, oldest first. :rtype: Deferred[list[Webhook]]"""

    def delete_webhook(hook_id: str) -> Deferred[bool]:
        """:rtype: Deferred[bool], True if a hook was removed."""


class IWebhookSender(Interface):
    """Makes one HTTP attempt of a delivery."""

    timeout = Attribute("float: seconds an attempt may take")

    def send(request: Any, verify: bool = True) -> Deferred[Any]:
        """Send a rendered :class:`~twisted_spark.webhooks.outgoing.Outgoing`.

        :param verify: check the https certificate (``rejectUnauthorized``).
        :rtype: Deferred[Answer]; fails with ``AddressNotAllowed``,
            ``AttemptTimedOut`` or ``ConnectionFailed`` (of
            :mod:`twisted_spark.webhooks.sender`).
        """

    def close() -> Deferred[None]:
        """Cancel every attempt in flight."""


class IWebhookHealth(Interface):
    """Consecutive failed deliveries and sleep per hook (API.md §6).

    Called on the reactor thread and answering at once: a shared
    implementation (a cluster's) keeps a local view and updates it.
    """

    max_errors = Attribute("int: consecutive failed deliveries that start a sleep")

    def asleep(hook_id: str) -> bool:
        """Whether the hook sleeps now (an event for it is refused, not sent)."""

    def failed(hook_id: str) -> None:
        """A delivery failed; the ``max_errors``-th in a row (and each after) starts a sleep."""

    def succeeded(hook_id: str) -> None:
        """A delivery succeeded: the count starts again from 0."""

    def failures(hook_id: str) -> int:
        """Consecutive failed deliveries now."""

    def forget(hook_id: str) -> None:
        """The hook was deleted."""


class IWebhookDispatcher(Interface):
    """Delivers events to the hooks it knows; the API tells it of changes."""

    def start() -> Deferred[None]:
        """Load the stored hooks and start following the event bus."""

    def hook_added(hook: Any) -> None:
        """A hook was created: deliver to it from now on."""

    def hook_removed(hook_id: str) -> None:
        """A hook was deleted: no new delivery of it starts after this returns."""

    def reload() -> Deferred[None]:
        """Make the known hooks the stored ones (changes other nodes made)."""

    def failures(hook_id: str) -> int:
        """Consecutive failed deliveries of a hook (0 when unknown)."""

    def stop() -> Deferred[None]:
        """Stop following the bus and cancel the deliveries in flight."""
