"""Authorization matrix: every device route × every kind of caller, exact status."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_twisted
from api_fakes import Harness, assert_error, device_id

D1 = device_id(1)
KEY = (Path(__file__).parent / "keys" / "device-1.pub.pem").read_text()

#: (method, path, form) for every device route.
ROUTES = {
    "list": ("GET", "/v1/devices", None),
    "claim": ("POST", "/v1/devices", {"id": D1}),
    "info": ("GET", f"/v1/devices/{D1}", None),
    "rename": ("PUT", f"/v1/devices/{D1}", {"name": "renamed"}),
    "signal": ("PUT", f"/v1/devices/{D1}", {"signal": "1"}),
    "release": ("DELETE", f"/v1/devices/{D1}", None),
    "variable": ("GET", f"/v1/devices/{D1}/temp", None),
    "variable-raw": ("GET", f"/v1/devices/{D1}/temp?format=raw", None),
    "function": ("POST", f"/v1/devices/{D1}/brew", {"arg": "1"}),
    "ping": ("PUT", f"/v1/devices/{D1}/ping", None),
    "provision": ("POST", f"/v1/provisioning/{D1}", {"publicKey": KEY}),
}

CALLERS = ("none", "bad", "expired", "other", "owner", "admin")

#: route -> expected status per caller, in CALLERS order.
EXPECTED = {
    "list": (401, 401, 401, 200, 200, 200),
    "claim": (401, 401, 401, 403, 200, 403),
    "info": (401, 401, 401, 403, 200, 200),
    "rename": (401, 401, 401, 403, 200, 200),
    "signal": (401, 401, 401, 403, 200, 200),
    "release": (401, 401, 401, 403, 200, 200),
    "variable": (401, 401, 401, 403, 200, 200),
    "variable-raw": (401, 401, 401, 403, 200, 200),
    "function": (401, 401, 401, 403, 200, 200),
    "ping": (401, 401, 401, 403, 200, 200),
    "provision": (401, 401, 401, 403, 200, 200),
}

DESCRIPTIONS = {
    "none": "The access token was not found",
    "bad": "The access token provided is invalid.",
    "expired": "The access token provided has expired.",
}

CASES = [
    pytest.param(route, caller, EXPECTED[route][i], id=f"{route}-{caller}")
    for route in ROUTES
    for i, caller in enumerate(CALLERS)
]


async def world():
    h = Harness()
    tokens = {
        "none": None,
        "bad": "b" * 40,
        "expired": await h.user("alice", lifetime=1),
        "owner": await h.user("alice"),
        "other": await h.user("bob"),
        "admin": await h.user("root", admin=True),
    }
    h.clock.advance(1)  # the "expired" token is now exactly expired
    session = await h.device(
        1,
        owner="alice",
        name="kettle",
        variables={"temp": "int32"},
        values={"temp": 3},
        functions=("brew",),
    )
    return h, tokens, session


@pytest.mark.parametrize("route,caller,status", CASES)
@pytest_twisted.ensureDeferred
async def test_authorization_matrix(route, caller, status):
    h, tokens, session = await world()
    method, path, form = ROUTES[route]
    r = await h.call(method, path, token=tokens[caller], form=form)
    assert r.status == status, (route, caller, r.body)
    if status == 401:
        assert_error(r, 401, description=DESCRIPTIONS[caller])
    elif status == 403:
        assert_error(r, 403)
        assert (await h.store.get_device(D1)).owner == "alice"  # nothing changed
        assert session.calls == []  # nothing reached the device
    if route == "list" and status == 200:
        ids = {d["id"] for d in r.json}
        assert (D1 in ids) == (caller in ("owner", "admin"))


def test_matrix_covers_every_device_route():
    """A new device route must be added to the matrix."""
    h = Harness()
    rules = {
        (rule.rule, method)
        for rule in h.api.app.url_map.iter_rules()
        for method in rule.methods - {"HEAD", "OPTIONS"}
        if rule.rule.startswith(("/v1/devices", "/v1/provisioning"))
    }
    covered = set()
    for method, path, _ in ROUTES.values():
        for rule in h.api.app.url_map.iter_rules():
            adapter = h.api.app.url_map.bind("x")
            try:
                endpoint, _args = adapter.match(path.split("?")[0], method=method)
            except Exception:
                continue
            if endpoint == rule.endpoint:
                covered.add((rule.rule, method))
    assert rules <= covered, rules - covered
