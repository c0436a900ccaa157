# -*- test-case-name: tests.test_events_devices,tests.test_events_publishing -*-
"""Event routes (API.md §5): three Server-Sent Event streams and publishing.

Streams are opened through ``api.streams`` (an
:class:`~twisted_spark.api.streams.StreamRegistry`); every error — bad token,
unknown device — is answered as JSON before any stream header is written.
"""

from __future__ import annotations

from twisted_spark.api import sse
from twisted_spark.api.errors import bad_request
from twisted_spark.api.lookup import any_device
from twisted_spark.events import publishing
from twisted_spark.events import visibility as rules


def open_stream(call, fixed_segments: int, rule):
    """Start a stream on this request: prefix from the raw path, token-bound."""
    token = call.caller.token
    return call.api.streams.open(
        call.request,
        sse.prefix_from_path(call.request.path, fixed_segments),
        rule,
        token=token.token if token else None,
        expires_at=token.expires_at if token else None,
    )


async def streamed(stream):
    """Keep the request open until the stream ends (Klein cancels this on hang-up)."""
    await stream.ended
    return stream


def register(api) -> None:
    # A trailing slash means "no prefix", as some clients build their URLs that way.
    @api.route("/v1/events", ["GET"])
    @api.route("/v1/events/", ["GET"])
    @api.route("/v1/events/<path:prefix>", ["GET"])
    async def firehose(call, prefix=""):
        caller = call.caller
        return await streamed(
            open_stream(call, 2, rules.firehose_rule(caller.username, caller.is_admin)))

    @api.route("/v1/devices/events", ["GET"])
    @api.route("/v1/devices/events/", ["GET"])
    @api.route("/v1/devices/events/<path:prefix>", ["GET"])
    async def my_devices(call, prefix=""):
        caller = call.caller
        return await streamed(
            open_stream(call, 3, rules.my_devices_rule(caller.username, caller.is_admin)))

    @api.route("/v1/devices/<device>/events", ["GET"])
    @api.route("/v1/devices/<device>/events/", ["GET"])
    @api.route("/v1/devices/<device>/events/<path:prefix>", ["GET"])
    async def one_device(call, device, prefix=""):
        record = await any_device(call.api, call.caller, device)
        rule = rules.device_rule(record.device_id, call.caller.username, call.caller.is_admin)
        return await streamed(open_stream(call, 4, rule))

    @api.route("/v1/devices/events", ["POST"], body_limit=api.small_body_limit)
    async def publish(call):
        body = call.body
        try:
            event = publishing.api_event(
                body.text("name"), body.text("data"), body.text("private"), body.text("ttl"),
                owner=call.caller.username, now=call.api.clock.seconds(),
                max_data=call.api.settings.max_event_data)
        except publishing.InvalidEvent as error:
            raise bad_request(str(error)) from error
        call.api.bus.publish(event)
        return {"ok": True}
