"""Authentication (API.md §2): token carriers, 401 bodies, /oauth/token,
/v1/access_tokens, /v1/user, the failed-login throttle."""

from __future__ import annotations

import base64
import json

import pytest
import pytest_twisted
from api_fakes import PASSWORD, Harness, assert_error

from twisted_spark.api.tokens import LoginThrottle, parse_iso8601
from twisted_spark.models import iso8601

LOGIN = {"grant_type": "password", "username": "alice", "password": PASSWORD}
SPARK = ("spark", "spark")


# -- token carriers -----------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_three_carriers_each_work():
    h = Harness()
    token = await h.user("alice")
    by_header = await h.call("GET", "/v1/user", token=token)
    by_query = await h.call("GET", f"/v1/user?access_token={token}")
    by_body = await h.call("POST", "/v1/devices", form={"access_token": token, "id": "x" * 24})
    assert by_header.json == {"username": "alice"}
    assert by_query.json == {"username": "alice"}
    # The body token authenticated (404 is claim's "unknown device"), and was removed.
    assert by_body.status == 404


@pytest_twisted.ensureDeferred
async def test_query_token_works_on_any_method():
    h = Harness()
    token = await h.user("alice")
    await h.device(1, owner="alice")
    r = await h.call("DELETE", f"/v1/devices/{'0' * 23}1?access_token={token}")
    assert r.status == 200 and r.json == {"ok": True}


@pytest.mark.parametrize(
    "carriers",
    [("header", "query"), ("header", "body"), ("query", "body"), ("header", "query", "body")],
)
@pytest_twisted.ensureDeferred
async def test_two_carriers_at_once_is_400(carriers):
    h = Harness()
    token = await h.user("alice")
    path = "/v1/devices" + (f"?access_token={token}" if "query" in carriers else "")
    form = {"access_token": token, "id": "1" * 24} if "body" in carriers else {"id": "1" * 24}
    r = await h.call("POST", path, token=token if "header" in carriers else None, form=form)
    assert_error(r, 400, "invalid_request")


@pytest_twisted.ensureDeferred
async def test_missing_token_401_body():
    h = Harness()
    r = await h.call("GET", "/v1/devices")
    assert r.json == {
        "ok": False,
        "error": "invalid_request",
        "error_description": "The access token was not found",
    }
    assert r.status == 401


@pytest.mark.parametrize("token", ["0" * 40, "null", "undefined", "ABC", "f" * 41])
@pytest_twisted.ensureDeferred
async def test_unknown_token_401_body(token):
    h = Harness()
    await h.user("alice")
    r = await h.call("GET", "/v1/devices", token=token)
    assert_error(r, 401, "invalid_token", "The access token provided is invalid.")


@pytest_twisted.ensureDeferred
async def test_expired_token_401_body_at_the_exact_second():
    h = Harness()
    token = await h.user("alice", lifetime=10)
    assert (await h.call("GET", "/v1/user", token=token)).status == 200
    h.clock.advance(9.9)
    assert (await h.call("GET", "/v1/user", token=token)).status == 200
    h.clock.advance(0.1)
    r = await h.call("GET", "/v1/user", token=token)
    assert_error(r, 401, "invalid_token", "The access token provided has expired.")


@pytest_twisted.ensureDeferred
async def test_basic_header_on_token_route_is_not_a_token():
    h = Harness()
    await h.user("alice")
    r = await h.call("GET", "/v1/devices", basic=("alice", PASSWORD))
    assert_error(r, 401, "invalid_request")


@pytest_twisted.ensureDeferred
async def test_token_of_deleted_user_is_invalid():
    h = Harness()
    token = await h.user("alice")
    del h.store._users["alice"]
    r = await h.call("GET", "/v1/user", token=token)
    assert_error(r, 401, "invalid_token")


# -- POST /oauth/token ----------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_login_with_basic_client_gives_a_90_day_token():
    h = Harness()
    await h.user("alice")
    r = await h.call("POST", "/oauth/token", basic=SPARK, form=LOGIN)
    assert r.status == 200
    body = r.json
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer" and body["expires_in"] == 7_776_000
    assert len(body["access_token"]) == 40 and int(body["access_token"], 16) >= 0
    assert body["access_token"] == body["access_token"].lower()
    stored = await h.store.get_token(body["access_token"])
    assert stored.username == "alice" and stored.client_id == "spark"
    assert r.header(b"cache-control") == b"no-store"
    me = await h.call("GET", "/v1/user", token=body["access_token"])
    assert me.json == {"username": "alice"}


@pytest_twisted.ensureDeferred
async def test_login_json_body_with_client_in_body_and_bearer_null_ignored():
    """particle-cli: client_id/secret in the body and a stray 'Bearer null' header."""
    h = Harness()
    await h.user("alice")
    body = dict(LOGIN, client_id="CLI2", client_secret="client_secret_here", username="ALICE")
    r = await h.call(
        "POST", "/oauth/token", json_body=body, headers={"Authorization": "Bearer null"}
    )
    assert r.status == 200, r.body
    assert (await h.store.get_token(r.json["access_token"])).client_id == "CLI2"


@pytest_twisted.ensureDeferred
async def test_login_with_old_token_in_header_and_body_client():
    h = Harness()
    old = await h.user("alice")
    form = dict(LOGIN, client_id="user", client_secret="x")
    r = await h.call("POST", "/oauth/token", form=form, token=old)
    assert r.status == 200 and r.json["access_token"] != old


@pytest.mark.parametrize(
    "extra,expires_in,expires_at",
    [
        ({"expires_in": "3600"}, 3600, Harness.NOW + 3600),
        ({"expires_in": "0"}, None, None),
        ({"expires_at": "null"}, None, None),
        ({"expires_at": "2030-01-01"}, 1893456000 - Harness.NOW, 1893456000.0),
        ({"expires_at": "2030-01-01T12:00:00Z"}, 1893499200 - Harness.NOW, 1893499200.0),
    ],
)
@pytest_twisted.ensureDeferred
async def test_login_expiry_options(extra, expires_in, expires_at):
    h = Harness()
    await h.user("alice")
    r = await h.call("POST", "/oauth/token", basic=SPARK, form=dict(LOGIN, **extra))
    assert r.status == 200, r.body
    assert r.json.get("expires_in") == expires_in
    assert (await h.store.get_token(r.json["access_token"])).expires_at == expires_at


@pytest_twisted.ensureDeferred
async def test_login_json_null_expires_at_never_expires():
    h = Harness()
    await h.user("alice")
    r = await h.call("POST", "/oauth/token", basic=SPARK, json_body=dict(LOGIN, expires_at=None))
    assert "expires_in" not in r.json
    h.clock.advance(10 * 365 * 86400)
    assert (await h.call("GET", "/v1/user", token=r.json["access_token"])).status == 200


@pytest.mark.parametrize(
    "extra",
    [
        {"expires_in": "-5"},
        {"expires_in": "soon"},
        {"expires_at": "yesterday"},
        {"expires_at": "2001-01-01"},
        {"expires_in": "60", "expires_at": "2030-01-01"},
    ],
)
@pytest_twisted.ensureDeferred
async def test_login_bad_expiry_is_400(extra):
    h = Harness()
    await h.user("alice")
    r = await h.call("POST", "/oauth/token", basic=SPARK, form=dict(LOGIN, **extra))
    assert_error(r, 400, "invalid_request")


TEN_YEARS = 10 * 365 * 86400


@pytest.mark.parametrize(
    "raw",
    [
        # urlencoded: always text
        "expires_in=99999999999999999999999",
        f"expires_in={TEN_YEARS + 1}",
        "expires_in=1e400",
        "expires_in=inf",
        "expires_in=nan",
        "expires_in=1.5",
        "expires_in=%2B60",
        "expires_in=1_000",
        "expires_in=%D9%A1%D9%A2",  # Arabic-Indic digits: int() would take them
        "expires_in=" + "9" * 5000,  # beyond int()'s digit limit
        "expires_at=9999-12-31",
        "expires_at=0001-01-01T00:00:00%2B14:00",
        "expires_at=2030-13-01",
    ],
)
@pytest_twisted.ensureDeferred
async def test_absurd_form_lifetimes_are_400(raw):
    h = Harness()
    await h.user("alice")
    before = await h.store.list_tokens("alice")
    form = "&".join(f"{k}={v}" for k, v in LOGIN.items()) + "&" + raw
    r = await h.call("POST", "/oauth/token", basic=SPARK, data=form.encode(),
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert_error(r, 400, "invalid_request")
    assert await h.store.list_tokens("alice") == before


@pytest.mark.parametrize(
    "value",
    ["1e400", "-1e400", "NaN", "99999999999999999999999", str(TEN_YEARS + 1), "-1", "true",
     "[60]", '{"s": 60}', '"60s"'],
)
@pytest_twisted.ensureDeferred
async def test_absurd_json_lifetimes_are_400(value):
    h = Harness()
    await h.user("alice")
    before = await h.store.list_tokens("alice")
    body = json.dumps(dict(LOGIN, client_id="spark"))[:-1] + f', "expires_in": {value}}}'
    r = await h.call("POST", "/oauth/token", data=body.encode(),
                     headers={"Content-Type": "application/json"})
    assert_error(r, 400, "invalid_request")
    assert await h.store.list_tokens("alice") == before


@pytest.mark.parametrize("extra,lifetime", [
    ({"expires_in": TEN_YEARS}, TEN_YEARS),
    ({"expires_in": 3600.0}, 3600),
    ({"expires_in": "  60 "}, 60),
    ({"expires_at": iso8601(Harness.NOW + TEN_YEARS)}, TEN_YEARS),
])
@pytest_twisted.ensureDeferred
async def test_lifetimes_up_to_ten_years_are_fine(extra, lifetime):
    h = Harness()
    await h.user("alice")
    r = await h.call("POST", "/oauth/token", basic=SPARK, json_body=dict(LOGIN, **extra))
    assert r.status == 200, r.body
    assert r.json["expires_in"] == lifetime
    listed = await h.call("GET", "/v1/access_tokens", basic=("alice", PASSWORD))
    [mine] = [t for t in listed.json if t["token"] == r.json["access_token"]]
    assert mine["expires_at"] == iso8601(Harness.NOW + lifetime)


@pytest_twisted.ensureDeferred
async def test_a_stored_token_beyond_the_calendar_still_lists():
    """A token written before lifetimes were bounded must not break the listing."""
    from twisted_spark.models import AccessToken

    h = Harness()
    await h.user("alice", lifetime=None)
    await h.store.add_token(AccessToken("f" * 40, "alice", "old", Harness.NOW, 1e23))
    r = await h.call("GET", "/v1/access_tokens", basic=("alice", PASSWORD))
    assert r.status == 200
    assert {"token": "f" * 40, "expires_at": "9999-12-31T23:59:59.999Z", "client": "old"} in r.json


@pytest.mark.parametrize(
    "form,error",
    [
        (dict(LOGIN, password="wrong password"), "invalid_grant"),
        (dict(LOGIN, username="nobody"), "invalid_grant"),
        (dict(LOGIN, grant_type="client_credentials"), "unsupported_grant_type"),
        ({"username": "alice", "password": PASSWORD}, "invalid_request"),
        ({"grant_type": "password", "username": "alice"}, "invalid_request"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_login_errors(form, error):
    h = Harness()
    await h.user("alice")
    r = await h.call("POST", "/oauth/token", basic=SPARK, form=form)
    body = assert_error(r, 400, error)
    if error == "invalid_grant":
        assert body["error_description"] == "User credentials are invalid"


@pytest_twisted.ensureDeferred
async def test_login_without_client_is_invalid_client():
    h = Harness()
    await h.user("alice")
    r = await h.call("POST", "/oauth/token", form=LOGIN)
    assert_error(r, 400, "invalid_client")


@pytest_twisted.ensureDeferred
async def test_client_allow_list():
    h = Harness(allowed_clients=("particle-api",))
    await h.user("alice")
    refused = await h.call("POST", "/oauth/token", basic=SPARK, form=LOGIN)
    assert_error(refused, 400, "invalid_client")
    allowed = await h.call("POST", "/oauth/token", basic=("particle-api", "x"), form=LOGIN)
    assert allowed.status == 200


@pytest_twisted.ensureDeferred
async def test_failed_logins_are_throttled_per_address_with_the_clock():
    h = Harness(login_failures_per_minute=3)
    await h.user("alice")
    bad = dict(LOGIN, password="nope nope")
    for _ in range(3):
        assert (await h.call("POST", "/oauth/token", basic=SPARK, form=bad)).status == 400
    r = await h.call("POST", "/oauth/token", basic=SPARK, form=LOGIN)  # even the right one
    assert_error(r, 429)
    assert int(r.header(b"retry-after")) > 0
    h.clock.advance(60)
    assert (await h.call("POST", "/oauth/token", basic=SPARK, form=LOGIN)).status == 200


@pytest_twisted.ensureDeferred
async def test_throttle_disabled_with_zero():
    h = Harness(login_failures_per_minute=0)
    await h.user("alice")
    bad = dict(LOGIN, password="nope nope")
    for _ in range(30):
        assert (await h.call("POST", "/oauth/token", basic=SPARK, form=bad)).status == 400


def test_throttle_is_per_address_and_memory_is_bounded():
    from twisted.internet.task import Clock

    clock = Clock()
    throttle = LoginThrottle(clock, per_minute=2, max_addresses=5)
    for n in range(50):
        throttle.failed(f"10.0.0.{n}")
    assert len(throttle._failures) <= 5
    throttle.failed("a")
    throttle.failed("a")
    with pytest.raises(Exception) as info:
        throttle.check("a")
    assert info.value.status == 429
    throttle.check("b")  # another address is not affected


class HeldHashes:
    """``verify_password`` whose answers wait until :meth:`finish` (a slow hash)."""

    def __init__(self):
        from twisted_spark import passwords

        self.verify = passwords.verify_password
        self.pending = []

    def __call__(self, password, encoded):
        from twisted.internet import defer

        d = defer.Deferred()
        self.pending.append((d, password, encoded))
        return d

    def finish(self):
        pending, self.pending = self.pending, []
        for d, password, encoded in pending:
            d.callback(self.verify(password, encoded))


@pytest.mark.parametrize("route", ["oauth", "basic"])
@pytest_twisted.ensureDeferred
async def test_concurrent_wrong_logins_get_at_most_the_limit_of_password_checks(route):
    """Charged before hashing: the attempts beyond the limit are refused at once."""
    h = Harness(login_failures_per_minute=5)
    await h.user("alice")
    hashes = HeldHashes()
    h.api.auth.verify_password = hashes
    bad = dict(LOGIN, password="nope nope")

    def attempt():
        if route == "oauth":
            return h.start("POST", "/oauth/token", basic=SPARK, form=bad)
        return h.start("GET", "/v1/access_tokens", basic=("alice", "nope nope"))

    started = [attempt() for _ in range(200)]
    assert len(hashes.pending) == 5
    refused = [d for d in started if h.answered(d)]
    assert len(refused) == 195  # answered while the 5 hashes still run
    for d in refused:
        r = await h.finish(d)
        assert_error(r, 429)
        assert int(r.header(b"retry-after")) == 60
    hashes.finish()
    waited = [await h.finish(d) for d in started if d not in refused]
    assert [r.status for r in waited] == [400 if route == "oauth" else 401] * 5


@pytest_twisted.ensureDeferred
async def test_a_successful_login_is_not_charged_to_the_throttle():
    h = Harness(login_failures_per_minute=3)
    await h.user("alice")
    bad = dict(LOGIN, password="nope nope")
    for _ in range(2):
        assert (await h.call("POST", "/oauth/token", basic=SPARK, form=bad)).status == 400
    for _ in range(5):  # right passwords cost nothing
        assert (await h.call("POST", "/oauth/token", basic=SPARK, form=LOGIN)).status == 200
        r = await h.call("GET", "/v1/access_tokens", basic=("alice", PASSWORD))
        assert r.status == 200
    assert (await h.call("POST", "/oauth/token", basic=SPARK, form=bad)).status == 400
    assert_error(await h.call("POST", "/oauth/token", basic=SPARK, form=LOGIN), 429)


def test_retry_after_counts_down_to_the_oldest_charge_leaving_the_window():
    from twisted.internet.task import Clock

    clock = Clock()
    throttle = LoginThrottle(clock, per_minute=2)
    throttle.charge("a")
    clock.advance(20)
    throttle.charge("a")
    clock.advance(10.5)
    with pytest.raises(Exception) as info:
        throttle.charge("a")
    assert info.value.status == 429
    assert info.value.headers["Retry-After"] == 30  # the first leaves the window at 60
    clock.advance(29.5)
    throttle.charge("a")  # exactly 60 s after the first: it is out, a slot is free


@pytest_twisted.ensureDeferred
async def test_429_has_its_reason_phrase():
    h = Harness(login_failures_per_minute=1)
    await h.user("alice")
    bad = dict(LOGIN, password="nope nope")
    await h.call("POST", "/oauth/token", basic=SPARK, form=bad)
    d = h.start("POST", "/oauth/token", basic=SPARK, form=bad)
    h.stub.flush()
    response = await d
    assert response.code == 429
    assert response.phrase == b"Too Many Requests"


def test_parse_iso8601_date_and_datetime():
    assert parse_iso8601("2020-01-01") == 1577836800.0
    assert parse_iso8601("2020-01-01T00:00:01.500Z") == 1577836801.5
    assert parse_iso8601("2020-01-01T02:00:00+02:00") == 1577836800.0


# -- /v1/access_tokens ------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_list_access_tokens_with_basic():
    h = Harness()
    live = await h.user("alice", lifetime=1000)
    forever = await h.user("alice", lifetime=None)
    dead = await h.user("alice", lifetime=1)
    await h.user("bob")
    h.clock.advance(2)
    r = await h.call("GET", "/v1/access_tokens", basic=("Alice", PASSWORD))
    assert r.status == 200
    assert r.json == [
        {"token": live, "expires_at": iso8601(Harness.NOW + 1000), "client": "spark"},
        {"token": forever, "expires_at": None, "client": "spark"},
    ]
    assert dead not in r.body.decode()


@pytest_twisted.ensureDeferred
async def test_list_access_tokens_without_basic_is_401_with_errors():
    h = Harness()
    token = await h.user("alice")
    for kwargs in ({}, {"token": token}, {"headers": {"Authorization": "Basic !!!"}}):
        r = await h.call("GET", "/v1/access_tokens", **kwargs)
        body = assert_error(r, 401)
        assert body["errors"] == [
            "Unauthorized. You must send username and password in HTTP Basic Auth "
            "to view your access tokens."
        ]


@pytest.mark.parametrize("user,password", [("alice", "wrong pass"), ("nobody", PASSWORD)])
@pytest_twisted.ensureDeferred
async def test_list_access_tokens_bad_password(user, password):
    h = Harness()
    await h.user("alice")
    r = await h.call("GET", "/v1/access_tokens", basic=(user, password))
    assert assert_error(r, 401)["errors"] == ["Bad password"]


@pytest_twisted.ensureDeferred
async def test_delete_token_with_basic_takes_effect_immediately():
    h = Harness()
    token = await h.user("alice")
    assert (await h.call("GET", "/v1/user", token=token)).status == 200
    seen = []
    h.api.token_revoked_observers.append(seen.append)
    r = await h.call("DELETE", f"/v1/access_tokens/{token}", basic=("alice", PASSWORD))
    assert r.status == 200 and r.json == {"ok": True}
    assert seen == [token]
    r = await h.call("GET", "/v1/user", token=token)
    assert_error(r, 401, "invalid_token", "The access token provided is invalid.")


@pytest_twisted.ensureDeferred
async def test_delete_someone_elses_token_with_basic_is_404():
    h = Harness()
    await h.user("alice")
    bobs = await h.user("bob")
    r = await h.call("DELETE", f"/v1/access_tokens/{bobs}", basic=("alice", PASSWORD))
    assert assert_error(r, 404)["errors"] == ["Token not found"]
    assert await h.store.get_token(bobs) is not None


@pytest_twisted.ensureDeferred
async def test_delete_token_with_bad_basic_is_401():
    h = Harness()
    token = await h.user("alice")
    r = await h.call("DELETE", f"/v1/access_tokens/{token}", basic=("alice", "wrong pass"))
    assert assert_error(r, 401)["errors"] == ["Bad password"]
    assert await h.store.get_token(token) is not None


@pytest_twisted.ensureDeferred
async def test_delete_token_without_credentials_or_with_itself_revokes_it():
    """particle token revoke sends no credentials: holding a token is the right to drop it."""
    h = Harness()
    first = await h.user("alice")
    second = await h.user("alice")
    assert (await h.call("DELETE", f"/v1/access_tokens/{first}")).json == {"ok": True}
    assert (await h.call("DELETE", f"/v1/access_tokens/{second}", token=second)).status == 200
    assert await h.store.get_token(first) is None and await h.store.get_token(second) is None


@pytest_twisted.ensureDeferred
async def test_delete_unknown_token_is_404():
    h = Harness()
    await h.user("alice")
    r = await h.call("DELETE", f"/v1/access_tokens/{'a' * 40}")
    assert assert_error(r, 404)["errors"] == ["Token not found"]


@pytest_twisted.ensureDeferred
async def test_basic_failures_count_towards_the_throttle():
    h = Harness(login_failures_per_minute=2)
    await h.user("alice")
    for _ in range(2):
        r = await h.call("GET", "/v1/access_tokens", basic=("alice", "bad bad bad"))
        assert r.status == 401
    r = await h.call("GET", "/v1/access_tokens", basic=("alice", PASSWORD))
    assert_error(r, 429)


@pytest_twisted.ensureDeferred
async def test_basic_scheme_is_case_insensitive():
    h = Harness()
    await h.user("alice")
    raw = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    r = await h.call("GET", "/v1/access_tokens", headers={"Authorization": f"basic {raw}"})
    assert r.status == 200


@pytest_twisted.ensureDeferred
async def test_current_token_info_and_logout():
    h = Harness()
    token = await h.user("alice", lifetime=100)
    other = await h.user("alice")
    r = await h.call("GET", "/v1/access_tokens/current", token=token)
    assert r.json == {"expires_at": iso8601(Harness.NOW + 100), "client": "spark"}
    assert_error(await h.call("DELETE", "/v1/access_tokens/current"), 401)
    r = await h.call("DELETE", "/v1/access_tokens/current", token=token)
    assert r.status == 200 and r.json == {"ok": True}
    assert_error(await h.call("GET", "/v1/user", token=token), 401, "invalid_token")
    assert (await h.call("GET", "/v1/user", token=other)).status == 200
