"""What the API answers when the store cannot take a request.

* A NUL character (U+0000) anywhere in a request is a 400, for every store:
  PostgreSQL text cannot hold one, and both stores must answer alike.
* A database that cannot be reached is a 503 with the API.md §1 error body
  and ``Retry-After``, never a 500 (the real PostgreSQL outage is in
  ``test_e2e_postgres.py``; here the store's failure is simulated).
"""

from __future__ import annotations

import base64
from urllib.parse import quote

import pytest
import pytest_twisted
from api_fakes import PASSWORD, Harness, assert_error
from twisted.internet import defer

from twisted_spark.errors import StoreUnavailable

LOGIN = {"grant_type": "password", "username": "alice", "password": PASSWORD}


def with_nul(form: dict, field: str) -> bytes:
    changed = dict(form, **{field: form[field][:2] + "\x00" + form[field][2:]})
    return "&".join(f"{quote(k)}={quote(v)}" for k, v in changed.items()).encode()


@pytest.mark.parametrize("field", ["client_id", "username", "password", "grant_type"])
@pytest_twisted.ensureDeferred
async def test_a_nul_in_a_form_field_is_400(field):
    h = Harness()
    await h.user("alice")
    form = dict(LOGIN, client_id="particle", client_secret="particle")
    r = await h.call("POST", "/oauth/token", data=with_nul(form, field),
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert_error(r, 400, "invalid_request")
    assert "NUL character" in r.json["error_description"]
    assert len(await h.store.list_tokens("alice")) == 1  # only the one h.user made


@pytest.mark.parametrize("body", [
    {"name": "kitch\x00en"},
    {"name": "kitchen", "extra": ["fine", {"deep": "no\x00pe"}]},
    {"na\x00me": "kitchen"},
])
@pytest_twisted.ensureDeferred
async def test_a_nul_anywhere_in_a_json_body_is_400(body):
    h = Harness()
    token = await h.user("alice")
    await h.device(1, owner="alice", name="kettle")
    r = await h.call("PUT", "/v1/devices/kettle", token=token, json_body=body)
    assert_error(r, 400, "invalid_request")
    assert (await h.store.list_devices("alice"))[0].name == "kettle"


@pytest.mark.parametrize("path", [
    "/v1/devices/kett%00le",
    "/v1/devices?name=%00",
    "/v1/devices/kettle/temperature?format=raw%00",
])
@pytest_twisted.ensureDeferred
async def test_a_nul_in_the_path_or_query_is_400(path):
    h = Harness()
    token = await h.user("alice")
    await h.device(1, owner="alice", name="kettle")
    r = await h.call("GET", path, token=token)
    assert_error(r, 400, "invalid_request")


@pytest_twisted.ensureDeferred
async def test_a_nul_in_basic_credentials_is_a_wrong_password():
    h = Harness()
    await h.user("alice")
    raw = base64.b64encode(b"ali\x00ce:" + PASSWORD.encode()).decode()
    r = await h.call("GET", "/v1/access_tokens", headers={"Authorization": f"Basic {raw}"})
    assert r.status == 401


@pytest_twisted.ensureDeferred
async def test_an_unreachable_database_is_503_with_retry_after():
    h = Harness()
    token = await h.user("alice")
    down = StoreUnavailable("PostgreSQL at postgresql://db/spark is unavailable: refused")
    h.store.get_token = lambda token: defer.fail(down)
    r = await h.call("GET", "/v1/devices", token=token)
    assert_error(r, 503, "service_unavailable")
    assert "try again" in r.json["error_description"]
    assert r.header(b"retry-after") == b"5"
    r = await h.call("POST", "/oauth/token", basic=("spark", "spark"), form=LOGIN)
    assert r.status == 200  # a route that does not need the failing call still works
