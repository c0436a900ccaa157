"""POST /v1/users (API.md §3)."""

from __future__ import annotations

import pytest
import pytest_twisted
from api_fakes import PASSWORD, Harness, assert_error

from twisted_spark import passwords


@pytest_twisted.ensureDeferred
async def test_first_user_becomes_admin_then_signup_is_closed():
    h = Harness()
    r = await h.call(
        "POST", "/v1/users", form={"username": "Root@Example.com", "password": PASSWORD}
    )
    assert r.status == 200 and r.json == {"ok": True}
    root = await h.store.get_user("root@example.com")
    assert root.is_admin and passwords.verify_password(PASSWORD, root.password_hash)
    r = await h.call("POST", "/v1/users", form={"username": "eve", "password": PASSWORD})
    assert_error(r, 401, "invalid_request")
    assert await h.store.get_user("eve") is None


@pytest_twisted.ensureDeferred
async def test_admin_token_creates_users_plain_token_does_not():
    h = Harness()
    admin = await h.user("root", admin=True)
    plain = await h.user("alice")
    r = await h.call(
        "POST", "/v1/users", token=plain, form={"username": "eve", "password": PASSWORD}
    )
    assert assert_error(r, 403)["errors"]
    r = await h.call(
        "POST", "/v1/users", token=admin, json_body={"username": "bob", "password": PASSWORD}
    )
    assert r.status == 200
    assert (await h.store.get_user("bob")).is_admin is False
    r = await h.call(
        "POST",
        "/v1/users",
        token=admin,
        form={"username": "carol", "password": PASSWORD, "admin": "true"},
    )
    assert r.status == 200 and (await h.store.get_user("carol")).is_admin


@pytest_twisted.ensureDeferred
async def test_signup_option_opens_registration_without_admin_rights():
    h = Harness(allow_signup=True)
    await h.user("root", admin=True)
    r = await h.call(
        "POST", "/v1/users", form={"username": "eve", "password": PASSWORD, "admin": "1"}
    )
    assert r.status == 200
    assert (await h.store.get_user("eve")).is_admin is False


@pytest_twisted.ensureDeferred
async def test_duplicate_username_is_400_with_errors():
    h = Harness(allow_signup=True)
    await h.user("alice")
    r = await h.call("POST", "/v1/users", form={"username": "ALICE", "password": PASSWORD})
    assert assert_error(r, 400)["errors"] == ["That username is already taken"]


@pytest.mark.parametrize(
    "form",
    [
        {"username": "alice"},
        {"password": PASSWORD},
        {"username": "alice", "password": "short"},
        {"username": "a" * 255, "password": PASSWORD},
        {"username": "with space", "password": PASSWORD},
    ],
)
@pytest_twisted.ensureDeferred
async def test_invalid_user_fields_are_400(form):
    h = Harness()
    r = await h.call("POST", "/v1/users", form=form)
    body = assert_error(r, 400)
    assert body["errors"] and isinstance(body["errors"][0], str)
    assert await h.store.count_users() == 0


@pytest_twisted.ensureDeferred
async def test_concurrent_first_signups_make_one_admin():
    h = Harness(allow_signup=True)
    gate = []

    def slow_hash(pw):
        from twisted.internet import defer

        d = defer.Deferred()
        gate.append((d, pw))
        return d

    h.api.auth.hash_password = slow_hash
    d1 = h.start("POST", "/v1/users", form={"username": "a1", "password": PASSWORD})
    d2 = h.start("POST", "/v1/users", form={"username": "a2", "password": PASSWORD})
    assert len(gate) == 2  # both passed the "first user" check before hashing
    for d, _pw in gate:
        d.callback("pbkdf2_sha256$1$AAAA$AAAA")
    assert (await h.finish(d1)).status == 200
    assert (await h.finish(d2)).status == 200
    admins = [u for u in await h.store.list_users() if u.is_admin]
    assert len(admins) == 1


@pytest_twisted.ensureDeferred
async def test_invalid_token_on_users_is_401_even_when_open():
    h = Harness(allow_signup=True)
    r = await h.call(
        "POST", "/v1/users", token="0" * 40, form={"username": "eve", "password": PASSWORD}
    )
    assert_error(r, 401, "invalid_token")


@pytest_twisted.ensureDeferred
async def test_whoami():
    h = Harness()
    token = await h.user("alice")
    assert (await h.call("GET", "/v1/user", token=token)).json == {"username": "alice"}
    assert_error(await h.call("GET", "/v1/user"), 401)


@pytest_twisted.ensureDeferred
async def test_admin_lists_users_with_their_admin_flag():
    h = Harness()
    root = await h.user("root", admin=True)
    await h.user("alice")
    r = await h.call("GET", "/v1/users", token=root)
    assert r.status == 200
    assert r.json == [{"username": "alice", "admin": False}, {"username": "root", "admin": True}]


@pytest_twisted.ensureDeferred
async def test_plain_user_may_not_list_users():
    h = Harness()
    await h.user("root", admin=True)
    alice = await h.user("alice")
    body = assert_error(await h.call("GET", "/v1/users", token=alice), 403)
    assert body["errors"] == ["Only an administrator can list users."]
    assert_error(await h.call("GET", "/v1/users"), 401, "invalid_request")


# -- names that HTTP Basic (or UTF-8) cannot carry -------------------------------------


def json_request(**fields):
    """A JSON body written by hand, so ``\\ud800`` escapes reach the server as such."""
    text = ", ".join(f'"{k}": "{v}"' for k, v in fields.items())
    return {"data": ("{" + text + "}").encode(), "headers": {"Content-Type": "application/json"}}


@pytest.mark.parametrize(
    "username",
    [
        "a:b",  # Basic auth splits user:password at the first colon
        ":",
        "a\\ud800b",  # lone surrogate: no UTF-8 spelling, so no Basic header either
        "\\udfff",
        "a\\u0000b",  # control characters
        "a\\u0007b",
        "a\\u007fb",
        "a\\u200bb",  # zero-width space (format character): invisible twin of "ab"
        "a\\u202eb",  # right-to-left override
        "a\\u00a0b",  # no-break space
        "a\\u2028b",  # line separator
    ],
)
@pytest_twisted.ensureDeferred
async def test_usernames_basic_auth_cannot_carry_are_400(username):
    h = Harness()
    r = await h.call("POST", "/v1/users", **json_request(username=username, password=PASSWORD))
    body = assert_error(r, 400)
    assert body["errors"] == [body["error_description"]]
    assert await h.store.count_users() == 0


@pytest_twisted.ensureDeferred
async def test_usernames_beyond_ascii_are_fine():
    h = Harness()
    r = await h.call("POST", "/v1/users", form={"username": "Jörg@пример.рф", "password": PASSWORD})
    assert r.status == 200
    r = await h.call("GET", "/v1/access_tokens", basic=("jörg@пример.рф", PASSWORD))
    assert r.status == 200


@pytest_twisted.ensureDeferred
async def test_lone_surrogate_password_is_400():
    h = Harness()
    request = json_request(username="alice", password="pass\\ud800word")
    r = await h.call("POST", "/v1/users", **request)
    assert_error(r, 400)
    assert await h.store.count_users() == 0


@pytest.mark.parametrize(
    "username,password",
    [("al\\ud800ice", PASSWORD), ("alice", "correct\\udc00horse")],
)
@pytest_twisted.ensureDeferred
async def test_logins_with_lone_surrogates_are_wrong_credentials_on_sqlite(
    username, password, tmp_path, reactor
):
    from api_fakes import fast_hash

    from twisted_spark.models import User
    from twisted_spark.store.sqlite import SQLiteStore

    h = Harness(login_failures_per_minute=2)
    store = await SQLiteStore.open(tmp_path / "spark.sqlite", reactor=reactor)
    try:
        h.api.store = h.api.auth.store = store
        await store.add_user(User("alice", fast_hash(PASSWORD)))
        request = json_request(grant_type="password", username=username, password=password,
                               client_id="spark")
        r = await h.call("POST", "/oauth/token", **request)
        assert_error(r, 400, "invalid_grant")
        await h.call("POST", "/oauth/token", **request)
        # ... and charged to the throttle like any wrong password
        assert_error(await h.call("POST", "/oauth/token", **request), 429)
    finally:
        await store.close()
