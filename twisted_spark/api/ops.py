# -*- test-case-name: tests.test_api_http -*-
"""Operations (API.md §7) and CORS preflight."""

from __future__ import annotations

from twisted_spark.api.context import Reply

PREFLIGHT = {
    "Access-Control-Allow-Methods": "GET, POST, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "X-Requested-With, Content-Type, Accept, Authorization",
    "Access-Control-Max-Age": "300",
}


def register(api):
    route = api.route

    @route("/", ["OPTIONS"], auth=None)
    @route("/<path:_path>", ["OPTIONS"], auth=None)
    async def preflight(call, _path=""):
        return Reply(None, status=204, headers=PREFLIGHT)

    @route("/healthz", ["GET"], auth=None)
    async def healthz(call):
        return {"ok": True, "devices_online": len(api.registry.online_ids())}

    if api.settings.metrics:

        @route("/metrics", ["GET"], auth=None)
        async def metrics(call):
            return Reply(
                api.metrics.render(), content_type="text/plain; version=0.0.4; charset=utf-8"
            )
