"""Password hashing: format, verification, failure modes, and the async wrappers."""

import base64

import pytest
import pytest_twisted

from twisted_spark import passwords
from twisted_spark.executors import ThreadExecutor


@pytest.fixture
def fast(monkeypatch):
    """Cut the work factor so tests that hash many times stay quick."""
    monkeypatch.setattr(passwords, "ITERATIONS", 1000)


def test_production_default_is_slow_and_verifies():
    assert passwords.ITERATIONS >= 200_000
    encoded = passwords.hash_password("correct horse")
    assert encoded.split("$")[:2] == ["pbkdf2_sha256", str(passwords.ITERATIONS)]
    assert passwords.verify_password("correct horse", encoded)


def test_format(fast):
    algorithm, iterations, salt, digest = passwords.hash_password("pw").split("$")
    assert algorithm == "pbkdf2_sha256"
    assert iterations == "1000"
    assert len(base64.b64decode(salt, validate=True)) == 16
    assert len(base64.b64decode(digest, validate=True)) == 32


def test_known_vector():
    """A hash made elsewhere (hashlib directly) verifies: the format is stable."""
    import hashlib

    salt = b"0123456789abcdef"
    digest = hashlib.pbkdf2_hmac("sha256", "pässword".encode(), salt, 1234)
    salt_text = base64.b64encode(salt).decode()
    digest_text = base64.b64encode(digest).decode()
    encoded = f"pbkdf2_sha256$1234${salt_text}${digest_text}"
    assert passwords.verify_password("pässword", encoded)
    assert not passwords.verify_password("password", encoded)


def test_wrong_password_fails(fast):
    encoded = passwords.hash_password("secret")
    assert not passwords.verify_password("Secret", encoded)
    assert not passwords.verify_password("", encoded)
    assert not passwords.verify_password("secret ", encoded)


def test_salted(fast):
    assert passwords.hash_password("same") != passwords.hash_password("same")


def test_old_work_factor_still_verifies(fast, monkeypatch):
    encoded = passwords.hash_password("pw")
    monkeypatch.setattr(passwords, "ITERATIONS", 2000)
    assert passwords.verify_password("pw", encoded)


@pytest.mark.parametrize(
    "encoded",
    [
        "",
        "plaintext",
        "md5$1000$c2FsdA==$aGFzaA==",
        "pbkdf2_sha256$1000$c2FsdA==",
        "pbkdf2_sha256$1000$c2FsdA==$aGFzaA==$extra",
        "pbkdf2_sha256$abc$c2FsdA==$aGFzaA==",
        "pbkdf2_sha256$-5$c2FsdA==$aGFzaA==",
        "pbkdf2_sha256$0$c2FsdA==$aGFzaA==",
        "pbkdf2_sha256$\u0661\u0662$c2FsdA==$aGFzaA==",
        "pbkdf2_sha256$99999999999$c2FsdA==$aGFzaA==",
        "pbkdf2_sha256$1000$not base64!$aGFzaA==",
        "pbkdf2_sha256$1000$c2FsdA==$",
        None,
    ],
)
def test_malformed_hash_never_matches(encoded):
    assert passwords.verify_password("pw", encoded) is False


@pytest_twisted.ensureDeferred
async def test_async_round_trip(fast, reactor):
    executor = ThreadExecutor(reactor, "passwords", 1)
    try:
        encoded = await passwords.hash_password_async("pw", executor)
        assert await passwords.verify_password_async("pw", encoded, executor) is True
        assert await passwords.verify_password_async("no", encoded, executor) is False
    finally:
        executor.stop()


@pytest_twisted.ensureDeferred
async def test_async_runs_off_the_reactor_thread(monkeypatch, reactor):
    import threading

    seen = []

    def spy(password):
        seen.append(threading.current_thread())
        return "h"

    monkeypatch.setattr(passwords, "hash_password", spy)
    executor = ThreadExecutor(reactor, "passwords", 1)
    try:
        assert await passwords.hash_password_async("pw", executor) == "h"
    finally:
        executor.stop()
    assert seen and seen[0] is not threading.main_thread()
