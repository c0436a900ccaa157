# -*- test-case-name: tests.test_webhooks_e2e -*-
"""Webhook routes (API.md §6): create, list, read, delete.

The definition is validated by :mod:`twisted_spark.webhooks.definition`;
this module adds what needs the caller: the ``deviceID`` must name one of
the caller's devices (403 otherwise, unknown ones included), a user has at
most ``webhook_max_per_user`` hooks, and a hook is visible only to its owner
(and to administrators by id), others get 404 so existence does not leak.
The dispatcher (``api.webhooks``) hears of every creation and deletion
before the reply is sent.
"""

from __future__ import annotations

import secrets

from twisted_spark.api.errors import ApiError, forbidden
from twisted_spark.api.lookup import DEVICE_ID, by_name
from twisted_spark.models import Webhook
from twisted_spark.store import TooManyWebhooks
from twisted_spark.webhooks.definition import InvalidWebhook, parse_definition


def not_found() -> ApiError:
    return ApiError(404, "Webhook not found",
                    "There is no webhook with that id among yours; "
                    "GET /v1/webhooks lists them.")


async def own_device_id(api, caller, ident: str) -> str:
    """The id of the caller's device ``ident`` (24-hex id or name), or 403."""
    if DEVICE_ID.fullmatch(ident):
        record = await api.store.get_device(ident.lower())
        if record is not None and record.owner == caller.username:
            return record.device_id
        raise forbidden()
    record = await by_name(api, caller, ident, own_only=True)
    if record is None:
        raise forbidden()
    return record.device_id


async def visible_hook(api, caller, hook_id: str) -> Webhook:
    """The hook ``hook_id`` if the caller owns it or is an administrator, else 404."""
    hook = await api.store.get_webhook(hook_id.lower())
    if hook is None or not (caller.is_admin or hook.owner == caller.username):
        raise not_found()
    return hook


def register(api) -> None:
    dispatcher = api.webhooks

    @api.route("/v1/webhooks", ["POST"], body_limit=api.small_body_limit)
    async def create(call):
        caller = call.caller
        try:
            draft = parse_definition(call.body.fields, api.webhook_policy,
                                     form=call.body.kind != "json")
        except InvalidWebhook as error:
            raise ApiError(400, "Invalid webhook", str(error), errors=error.errors) from error
        device_id = None
        if draft.device is not None:
            device_id = await own_device_id(api, caller, draft.device)
        hook = Webhook(
            hook_id=secrets.token_hex(12), owner=caller.username, event=draft.event,
            url=draft.url, request_type=draft.request_type, created_at=api.clock.seconds(),
            device_id=device_id, no_defaults=draft.no_defaults,
            reject_unauthorized=draft.reject_unauthorized, definition=draft.definition,
        )
        limit = api.settings.webhook_max_per_user
        try:
            await api.store.add_webhook(hook, limit=limit)
        except TooManyWebhooks as error:
            raise ApiError(400, "Too many webhooks",
                           f"You already have {limit} webhooks, the most allowed; "
                           "delete one first.") from error
        dispatcher.hook_added(hook)
        item = hook.to_api()
        reply = {"ok": True}
        for key in ("id", "event", "url", "requestType", "created_at", "deviceID", "name"):
            if key in item:
                reply[key] = item[key]
        return reply

    @api.route("/v1/webhooks", ["GET"])
    async def list_hooks(call):
        return [hook.to_api() for hook in await api.store.list_webhooks(call.caller.username)]

    @api.route("/v1/webhooks/<hook_id>", ["GET"])
    async def get_hook(call, hook_id):
        return (await visible_hook(api, call.caller, hook_id)).to_api()

    @api.route("/v1/webhooks/<hook_id>", ["DELETE"])
    async def delete_hook(call, hook_id):
        hook = await visible_hook(api, call.caller, hook_id)
        dispatcher.hook_removed(hook.hook_id)
        await api.store.delete_webhook(hook.hook_id)
        return {"ok": True}
