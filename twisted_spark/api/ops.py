# -*- test-case-name: tests.test_api_http,tests.test_health -*-
"""Operations (API.md §7): health, readiness, metrics; and CORS preflight.

``/healthz`` answers while the process runs; ``/readyz`` runs the server's
:class:`~twisted_spark.health.Readiness` checks (503 unless all pass);
``/metrics`` is the Prometheus text, for addresses in ``--metrics-allow``
only (others get 403).  None of them needs a token.
"""

from __future__ import annotations

import ipaddress

from twisted_spark.api.context import Reply
from twisted_spark.api.errors import ApiError
from twisted_spark.metrics import CONTENT_TYPE

PREFLIGHT = {
    "Access-Control-Allow-Methods": "GET, POST, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "X-Requested-With, Content-Type, Accept, Authorization",
    "Access-Control-Max-Age": "300",
}


def address_allowed(address: str, networks) -> bool:
    """Whether ``address`` (IPv4, IPv6 or IPv4-mapped IPv6) is in one of ``networks``."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False  # a UNIX socket or something else that is not IP
    mapped = getattr(ip, "ipv4_mapped", None)
    if mapped is not None:
        ip = mapped
    return any(ip.version == net.version and ip in net for net in networks)


def register(api):
    route = api.route
    networks = [ipaddress.ip_network(text) for text in api.settings.metrics_allow]

    @route("/", ["OPTIONS"], auth=None)
    @route("/<path:_path>", ["OPTIONS"], auth=None)
    async def preflight(call, _path=""):
        return Reply(None, status=204, headers=PREFLIGHT)

    @route("/healthz", ["GET"], auth=None)
    async def healthz(call):
        return {"ok": True, "devices_online": len(api.registry.online_ids())}

    @route("/readyz", ["GET"], auth=None)
    async def readyz(call):
        ready, checks = await api.readiness.evaluate()
        if ready:
            return {"ok": True, "checks": checks}
        failing = ", ".join(name for name, entry in checks.items() if not entry["ok"])
        return Reply({"ok": False, "error": "not_ready",
                      "error_description": f"Not ready: {failing}.", "checks": checks},
                     status=503, headers={"Retry-After": "5"})

    if api.settings.metrics:

        @route("/metrics", ["GET"], auth=None)
        async def metrics(call):
            if not address_allowed(call.remote_address, networks):
                raise ApiError(403, "forbidden", "Metrics are served only to the networks in "
                               "--metrics-allow; this address is not in them.")
            return Reply(api.metrics.render(), content_type=CONTENT_TYPE)
