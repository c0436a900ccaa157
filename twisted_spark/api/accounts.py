# -*- test-case-name: tests.test_api_auth,tests.test_api_users -*-
"""Routes for people: OAuth tokens, access-token management, users (API.md §2–3)."""

from __future__ import annotations

from twisted.internet import defer
from twisted.logger import Logger

from twisted_spark.api.auth import basic_credentials
from twisted_spark.api.context import Reply
from twisted_spark.api.errors import ApiError, bad_request
from twisted_spark.api.tokens import make_token, token_expiry, token_response
from twisted_spark.models import User, iso8601
from twisted_spark.text import is_utf8_text
from twisted_spark.usernames import username_problem

log = Logger()


def basic_missing() -> ApiError:
    return ApiError(
        401,
        "invalid_request",
        "HTTP Basic authentication with your username and password is required.",
        errors=[
            "Unauthorized. You must send username and password in HTTP Basic Auth "
            "to view your access tokens."
        ],
        headers={"WWW-Authenticate": 'Basic realm="Spark"'},
    )


def bad_password() -> ApiError:
    return ApiError(401, "invalid_grant", "User credentials are invalid", errors=["Bad password"])


def token_not_found() -> ApiError:
    return ApiError(404, "Not Found", "Token not found", errors=["Token not found"])


MIN_PASSWORD = 8


def register(api):
    route = api.route
    # Serialise user creation so two first sign-ups cannot both become admin.
    user_lock = defer.DeferredLock()

    @route("/oauth/token", ["POST"], auth=None)
    async def issue_token(call):
        """Password grant; a Bearer header is ignored here (particle-cli sends one)."""
        await defer.maybeDeferred(api.throttle.check, call.remote_address)
        body = call.body
        client_id = client_of(call)
        grant = body.text("grant_type")
        if not grant:
            raise bad_request("Invalid or missing grant_type parameter")
        if grant != "password":
            raise ApiError(400, "unsupported_grant_type", "The grant type is not supported.")
        username, password = body.text("username"), body.text("password")
        if not username or password is None:
            raise bad_request('Missing parameters. "username" and "password" are required')
        now = api.clock.seconds()
        expires_at = token_expiry(body, now, api.settings.token_lifetime)
        user = await checked_password(call, username, password)
        if user is None:
            raise ApiError(400, "invalid_grant", "User credentials are invalid")
        token = await api.store.add_token(make_token(user.username, client_id, now, expires_at))
        return Reply(token_response(token, now), headers={"Pragma": "no-cache"})

    @route("/v1/access_tokens", ["GET"], auth=None)
    async def list_tokens(call):
        user = await basic_user(call)
        now = api.clock.seconds()
        tokens = await api.store.list_tokens(user.username)
        return [
            {"token": t.token, "expires_at": iso8601(t.expires_at), "client": t.client_id}
            for t in tokens
            if not t.expired(now)
        ]

    @route("/v1/access_tokens/current", ["GET"])
    async def current_token(call):
        """The token used for this request (hosted API; particle-cli uses it)."""
        token = call.caller.token
        return {"expires_at": iso8601(token.expires_at), "client": token.client_id}

    @route("/v1/access_tokens/current", ["DELETE"], body_limit=api.small_body_limit)
    async def delete_current_token(call):
        """Log out: revoke the token used for this request (particle-cli logout)."""
        await api.store.delete_token(call.caller.token.token)
        api.token_revoked(call.caller.token.token)
        return {"ok": True}

    @route("/v1/access_tokens/<token>", ["DELETE"], auth=None)
    async def delete_token(call, token):
        """Basic: only the user's own tokens.  Otherwise holding a token lets you drop it."""
        record = await api.store.get_token(token)
        if basic_credentials(call.request) is not None:
            user = await basic_user(call)
            if record is None or record.username != user.username:
                raise token_not_found()
        elif record is None:
            raise token_not_found()
        await api.store.delete_token(token)
        api.token_revoked(token)
        return {"ok": True}

    @route("/v1/user", ["GET"])
    async def whoami(call):
        return {"username": call.caller.username}

    @route("/v1/users", ["GET"])
    async def list_users(call):
        """Administrators only: every account and whether it administers (the console)."""
        if not call.caller.is_admin:
            sentence = "Only an administrator can list users."
            raise ApiError(403, "Forbidden", sentence, errors=[sentence])
        users = await api.store.list_users()
        return [{"username": u.username, "admin": u.is_admin} for u in users]

    @route("/v1/users", ["POST"], auth="optional")
    async def create_user(call):
        username = (call.body.text("username") or "").strip().lower()
        password = call.body.text("password") or ""
        if not username or not password:
            raise user_error("username and password required")
        problem = username_problem(username)
        if problem is not None:
            raise user_error(problem)
        if len(password) < MIN_PASSWORD:
            raise user_error(f"The password must be at least {MIN_PASSWORD} characters.")
        if not is_utf8_text(password):
            raise user_error("The password must not contain unpaired surrogates (no UTF-8 form).")
        await may_create(call)  # before the costly hash
        password_hash = await api.auth.hash_password(password)
        return await user_lock.run(add_user, call, username, password_hash)

    async def may_create(call):
        """Raise 401/403 unless this caller may create a user; True for the first user."""
        first = await api.store.count_users() == 0
        caller_admin = call.caller is not None and call.caller.is_admin
        if not (first or caller_admin or api.settings.allow_signup):
            if call.caller is None:
                raise ApiError(401, "invalid_request", "The access token was not found")
            raise ApiError(
                403,
                "Forbidden",
                "Only an administrator can create users on this server.",
                errors=["Only an administrator can create users on this server."],
            )
        return first

    async def add_user(call, username, password_hash):
        first = await may_create(call)  # again, under the lock
        caller_admin = call.caller is not None and call.caller.is_admin
        make_admin = first or (caller_admin and truthy(call.body.text("admin")))
        await api.store.add_user(
            User(username, password_hash, is_admin=make_admin, created_at=api.clock.seconds())
        )
        return {"ok": True}

    async def basic_user(call):
        credentials = basic_credentials(call.request)
        if credentials is None:
            raise basic_missing()
        user = await checked_password(call, *credentials)
        if user is None:
            raise bad_password()
        return user

    async def checked_password(call, username, password):
        """The user if the password is right; the attempt is charged to the
        caller's address first (429 when it has none left), refunded on success."""
        address = call.remote_address
        charge = await defer.maybeDeferred(api.throttle.charge, address)
        user = await api.auth.check_password(username, password)
        if user is not None:
            refunded = defer.maybeDeferred(api.throttle.refund, address, charge)
            refunded.addErrback(lambda f: log.failure("Could not refund a login charge", f))
        return user

    def client_of(call):
        """The OAuth client id, from Basic or the body; any id unless configured."""
        credentials = basic_credentials(call.request)
        client_id = credentials[0] if credentials else call.body.text("client_id")
        if not client_id:
            raise ApiError(400, "invalid_client", "Invalid or missing client_id parameter")
        allowed = api.settings.allowed_clients
        if allowed and client_id not in allowed:
            raise ApiError(400, "invalid_client", "The client is not allowed on this server.")
        return client_id


def user_error(sentence) -> ApiError:
    return bad_request(sentence, errors=[sentence])


def truthy(value) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")
