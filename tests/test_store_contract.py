"""The IStore contract, run against every implementation.

Each test gets a fresh, empty store: ``MemoryStore``, ``SQLiteStore`` in a
temporary directory, or ``PostgresStore`` on a database of its own
(``postgres_url``: skipped, saying why, where no PostgreSQL runs), the first
two also behind the ``CachingStore`` the server puts in front of every store.
Anything one store does that another does not is a bug, so all must pass
every test.
"""

from dataclasses import replace

import pytest
import pytest_twisted
from twisted.internet import defer
from zope.interface.verify import verifyObject

from twisted_spark.errors import DuplicateUser
from twisted_spark.interfaces import IDtlsSessionStore, IStore
from twisted_spark.models import AccessToken, DeviceRecord, DtlsSessionRecord, User
from twisted_spark.store import (
    ConstraintError,
    DeviceChanged,
    MemoryStore,
    NameTaken,
    adopt_device_key,
)
from twisted_spark.store.cache import CachingStore
from twisted_spark.store.sqlite import SQLiteStore

ALICE = User("alice", "pbkdf2_sha256$1$c2FsdA==$aGFzaA==", is_admin=True, created_at=100.5)
BOB = User("bob", "pbkdf2_sha256$1$c2FsdA==$Ym9i", created_at=200.0)
CORE = "53ff6f065067544840311387"
PHOTON = "2a0034000447343337373738"


def full_device(device_id=CORE, owner="alice", **overrides):
    """A record with every field set to something distinctive."""
    values = dict(
        device_id=device_id,
        owner=owner,
        name="kitchen",
        public_key=b"\x30\x81\x9f\x00binary\xff",
        product_id=6,
        platform_id=6,
        firmware_version=101,
        last_heard=1700000000.25,
        last_ip="192.0.2.7",
        last_app="tinker",
        functions=("digitalread", "digitalwrite"),
        variables={"temp": "double", "count": "int32"},
        created_at=1600000000.0,
    )
    values.update(overrides)
    return DeviceRecord(**values)


@pytest_twisted.async_yield_fixture(
    params=["memory", "sqlite", "postgresql", "cached-memory", "cached-sqlite",
            "cached-postgresql"]
)
async def store(request, tmp_path, reactor):
    if request.param.endswith("memory"):
        opened = MemoryStore()
    elif request.param.endswith("sqlite"):
        opened = await SQLiteStore.open(tmp_path / "spark.sqlite", reactor=reactor)
    else:
        from twisted_spark.store.postgres import PostgresStore

        opened = await PostgresStore.open(request.getfixturevalue("postgres_url"), reactor)
    if request.param.startswith("cached"):  # what build_cloud hands every part
        opened = CachingStore(opened, reactor)
    yield opened
    await opened.close()


async def with_users(store, *users):
    for user in users or (ALICE, BOB):
        await store.add_user(user)
    return store


def test_provides_istore_memory():
    assert verifyObject(IStore, MemoryStore())


@pytest_twisted.ensureDeferred
async def test_provides_istore(store):
    assert verifyObject(IStore, store)


# -- users ---------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_add_and_get_user(store):
    assert await store.add_user(ALICE) == ALICE
    got = await store.get_user("alice")
    assert got == ALICE
    assert got.is_admin is True
    assert (await store.add_user(BOB)) == BOB
    assert (await store.get_user("bob")).is_admin is False


@pytest_twisted.ensureDeferred
async def test_missing_user_is_none(store):
    assert await store.get_user("nobody") is None


@pytest_twisted.ensureDeferred
async def test_duplicate_user_fails(store):
    await store.add_user(ALICE)
    with pytest.raises(DuplicateUser):
        await store.add_user(replace(ALICE, password_hash="other"))
    assert await store.get_user("alice") == ALICE  # the first one stays
    assert await store.count_users() == 1


@pytest_twisted.ensureDeferred
async def test_user_names_are_case_sensitive(store):
    await store.add_user(ALICE)
    await store.add_user(replace(ALICE, username="Alice"))
    assert await store.count_users() == 2


@pytest_twisted.ensureDeferred
async def test_list_and_count_users(store):
    assert await store.list_users() == []
    assert await store.count_users() == 0
    carol = User("carol", "h", created_at=1.0)
    for user in (carol, ALICE, BOB):
        await store.add_user(user)
    assert await store.list_users() == [ALICE, BOB, carol]
    assert await store.count_users() == 3


# -- tokens --------------------------------------------------------------------


def token(name, username="alice", created_at=1000.0, expires_at=None, client_id="particle"):
    return AccessToken(name, username, client_id, created_at, expires_at)


@pytest_twisted.ensureDeferred
async def test_add_and_get_token(store):
    await with_users(store)
    forever = token("a" * 40)
    expiring = token("b" * 40, username="bob", client_id="cli", expires_at=5000.5)
    assert await store.add_token(forever) == forever
    assert await store.add_token(expiring) == expiring
    assert await store.get_token("a" * 40) == forever
    assert await store.get_token("b" * 40) == expiring
    assert await store.get_token("c" * 40) is None


@pytest_twisted.ensureDeferred
async def test_expired_token_is_still_returned(store):
    await with_users(store)
    old = token("t1", expires_at=10.0)
    await store.add_token(old)
    assert await store.get_token("t1") == old


@pytest_twisted.ensureDeferred
async def test_duplicate_token_fails(store):
    await with_users(store)
    await store.add_token(token("t1"))
    with pytest.raises(ConstraintError):
        await store.add_token(token("t1", username="bob"))
    assert (await store.get_token("t1")).username == "alice"


@pytest_twisted.ensureDeferred
async def test_token_for_unknown_user_fails(store):
    with pytest.raises(ConstraintError):
        await store.add_token(token("t1", username="ghost"))
    assert await store.get_token("t1") is None


@pytest_twisted.ensureDeferred
async def test_list_tokens_oldest_first(store):
    await with_users(store)
    # Added out of order, with a tie that insertion order must break.
    made = [
        token("t3", created_at=30.0),
        token("t1", created_at=10.0),
        token("t2a", created_at=20.0),
        token("t2b", created_at=20.0),
        token("tb", username="bob", created_at=5.0),
    ]
    for each in made:
        await store.add_token(each)
    listed = await store.list_tokens("alice")
    assert [t.token for t in listed] == ["t1", "t2a", "t2b", "t3"]
    assert listed[0] == made[1]
    assert await store.list_tokens("bob") == [made[4]]
    assert await store.list_tokens("nobody") == []


@pytest_twisted.ensureDeferred
async def test_delete_token(store):
    await with_users(store)
    await store.add_token(token("t1"))
    await store.add_token(token("t2"))
    assert await store.delete_token("t1") is True
    assert await store.delete_token("t1") is False
    assert await store.delete_token("never") is False
    assert await store.get_token("t1") is None
    assert [t.token for t in await store.list_tokens("alice")] == ["t2"]


@pytest_twisted.ensureDeferred
async def test_delete_expired(store):
    await with_users(store)
    kept = [token("forever"), token("later", expires_at=101.0)]
    for each in kept + [token("past", expires_at=50.0), token("now", expires_at=100.0)]:
        await store.add_token(each)
    # Same rule as AccessToken.expired(now): a token is dead at expires_at.
    assert await store.delete_expired(100.0) == 2
    assert await store.list_tokens("alice") == kept
    assert await store.delete_expired(100.0) == 0
    assert await store.delete_expired(1e12) == 1
    assert await store.list_tokens("alice") == kept[:1]


# -- devices -------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_put_and_get_device_round_trips_every_field(store):
    await with_users(store)
    record = full_device()
    assert await store.put_device(record) == record
    got = await store.get_device(CORE)
    assert got == record
    assert isinstance(got.functions, tuple)
    assert isinstance(got.public_key, bytes)
    assert got.variables == {"temp": "double", "count": "int32"}


@pytest_twisted.ensureDeferred
async def test_minimal_device_round_trips(store):
    record = DeviceRecord(PHOTON)
    assert await store.put_device(record) == record
    assert await store.get_device(PHOTON) == record


@pytest_twisted.ensureDeferred
async def test_missing_device_is_none(store):
    assert await store.get_device(CORE) is None


@pytest_twisted.ensureDeferred
async def test_put_device_replaces_whole_record(store):
    await with_users(store)
    await store.put_device(full_device())
    replacement = DeviceRecord(CORE, owner="bob", functions=("f",))
    await store.put_device(replacement)
    assert await store.get_device(CORE) == replacement


@pytest_twisted.ensureDeferred
async def test_put_device_accepts_lists_and_returns_tuples(store):
    await store.put_device(DeviceRecord(CORE, functions=["a", "b"]))
    assert (await store.get_device(CORE)).functions == ("a", "b")


@pytest_twisted.ensureDeferred
async def test_returned_records_are_not_live(store):
    variables = {"v": "int32"}
    stored = await store.put_device(DeviceRecord(CORE, variables=variables))
    variables["sneaky"] = "string"
    stored.variables["sneakier"] = "string"
    (await store.get_device(CORE)).variables["sneakiest"] = "string"
    assert (await store.get_device(CORE)).variables == {"v": "int32"}


@pytest_twisted.ensureDeferred
async def test_device_owner_must_exist(store):
    with pytest.raises(ConstraintError):
        await store.put_device(DeviceRecord(CORE, owner="ghost"))
    with pytest.raises(ConstraintError):
        await store.update_device(CORE, owner="ghost")
    assert await store.get_device(CORE) is None


@pytest_twisted.ensureDeferred
async def test_list_devices_all_and_by_owner(store):
    await with_users(store)
    third = "0123456789abcdef01234567"
    await store.put_device(full_device(PHOTON, owner="bob"))
    await store.put_device(full_device(CORE, owner="alice"))
    await store.put_device(DeviceRecord(third))
    everything = await store.list_devices()
    assert [d.device_id for d in everything] == sorted([CORE, PHOTON, third])
    assert await store.list_devices("alice") == [full_device(CORE, owner="alice")]
    assert await store.list_devices(owner="bob") == [full_device(PHOTON, owner="bob")]
    assert await store.list_devices("nobody") == []


@pytest_twisted.ensureDeferred
async def test_list_devices_named_matches_exactly_within_an_owner_or_all(store):
    await with_users(store)
    third, fourth = "0123456789abcdef01234567", "f" * 24
    await store.put_device(full_device(PHOTON, owner="bob", name="kitchen"))
    await store.put_device(full_device(CORE, owner="alice", name="kitchen"))
    await store.put_device(DeviceRecord(third, name="kitchen"))  # unowned
    await store.put_device(DeviceRecord(fourth, owner="alice", name="Kitchen"))
    assert await store.list_devices_named("kitchen", "alice") == [
        full_device(CORE, owner="alice", name="kitchen")
    ]
    assert [d.device_id for d in await store.list_devices_named("Kitchen", owner="alice")] == [
        fourth
    ]
    everyone = await store.list_devices_named("kitchen")
    assert [d.device_id for d in everyone] == sorted([CORE, PHOTON, third])
    assert await store.list_devices_named("KITCHEN") == []  # case counts
    assert await store.list_devices_named("kitchen", "nobody") == []


@pytest_twisted.ensureDeferred
async def test_update_device_creates_missing_record(store):
    await with_users(store)
    got = await store.update_device(CORE, owner="alice", last_ip="198.51.100.1")
    assert got == DeviceRecord(CORE, owner="alice", last_ip="198.51.100.1")
    assert await store.get_device(CORE) == got


@pytest_twisted.ensureDeferred
async def test_update_device_changes_only_named_fields(store):
    await with_users(store)
    await store.put_device(full_device())
    got = await store.update_device(
        CORE, name="garage", functions=["x"], variables={"a": "string"}, last_heard=None
    )
    expected = replace(
        full_device(), name="garage", functions=("x",), variables={"a": "string"}, last_heard=None
    )
    assert got == expected
    assert await store.get_device(CORE) == expected


@pytest_twisted.ensureDeferred
async def test_update_device_with_no_changes(store):
    assert await store.update_device(CORE) == DeviceRecord(CORE)
    assert await store.get_device(CORE) == DeviceRecord(CORE)


@pytest_twisted.ensureDeferred
async def test_update_device_rejects_unknown_fields(store):
    await with_users(store)
    await store.put_device(full_device())
    with pytest.raises(TypeError, match="colour"):
        await store.update_device(CORE, name="x", colour="red")
    with pytest.raises(TypeError, match="device_id"):
        await store.update_device(CORE, device_id=PHOTON)
    with pytest.raises(TypeError):
        await store.update_device(PHOTON, nope=1)
    assert await store.get_device(CORE) == full_device()  # nothing half-applied
    assert await store.get_device(PHOTON) is None  # and nothing created


@pytest_twisted.ensureDeferred
async def test_delete_device(store):
    await with_users(store)
    await store.put_device(full_device())
    await store.put_device(DeviceRecord(PHOTON))
    assert await store.delete_device(CORE) is True
    assert await store.delete_device(CORE) is False
    assert await store.get_device(CORE) is None
    assert await store.list_devices("alice") == []
    assert [d.device_id for d in await store.list_devices()] == [PHOTON]


@pytest_twisted.ensureDeferred
async def test_deleting_a_device_keeps_its_owner_and_tokens(store):
    await with_users(store)
    await store.add_token(token("t1"))
    await store.put_device(full_device())
    await store.delete_device(CORE)
    assert await store.get_user("alice") == ALICE
    assert await store.get_token("t1") == token("t1")


# -- names are unique per owner ----------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_an_owner_cannot_have_two_devices_of_one_name(store):
    await with_users(store)
    await store.put_device(DeviceRecord(CORE, owner="alice", name="kitchen"))
    with pytest.raises(NameTaken) as info:
        await store.put_device(DeviceRecord(PHOTON, owner="alice", name="kitchen"))
    assert isinstance(info.value, ConstraintError)
    assert info.value.name == "kitchen" and info.value.owner == "alice"
    await store.put_device(DeviceRecord(PHOTON, owner="alice", name="garage"))
    with pytest.raises(NameTaken):
        await store.update_device(PHOTON, name="kitchen")
    assert (await store.get_device(PHOTON)).name == "garage"  # nothing half-applied


@pytest_twisted.ensureDeferred
async def test_names_are_per_owner_exact_and_free_for_unowned_devices(store):
    await with_users(store)
    third = "0123456789abcdef01234567"
    await store.put_device(DeviceRecord(CORE, owner="alice", name="kitchen"))
    await store.put_device(DeviceRecord(PHOTON, owner="bob", name="kitchen"))  # another owner
    await store.put_device(DeviceRecord(third, name="kitchen"))  # unowned: no rule
    await store.put_device(DeviceRecord("f" * 24, name="kitchen"))
    await store.update_device(CORE, name="kitchen")  # its own name again
    await store.put_device(DeviceRecord("e" * 24, owner="alice", name="Kitchen"))  # case counts
    # Taking an unowned device whose name the new owner already uses is refused too.
    with pytest.raises(NameTaken):
        await store.update_device(third, owner="alice")
    assert (await store.get_device(third)).owner is None


@pytest_twisted.ensureDeferred
async def test_two_racing_renames_to_one_name_one_wins(store):
    await with_users(store)
    await store.put_device(DeviceRecord(CORE, owner="alice", name="a"))
    await store.put_device(DeviceRecord(PHOTON, owner="alice", name="b"))
    results = await defer.DeferredList(
        [store.update_device(CORE, name="same"), store.update_device(PHOTON, name="same")],
        consumeErrors=True,
    )
    outcomes = sorted(ok for ok, _ in results)
    assert outcomes == [False, True]
    assert [f.type for ok, f in results if not ok] == [NameTaken]
    names = sorted(d.name for d in await store.list_devices("alice"))
    assert names.count("same") == 1


# -- compare-and-set -----------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_update_device_if_applies_when_the_fields_still_match(store):
    await with_users(store)
    await store.put_device(full_device(owner=None))
    got = await store.update_device_if(CORE, {"owner": None}, owner="alice", last_app="x")
    assert got == full_device(owner="alice", last_app="x")
    assert await store.get_device(CORE) == got


@pytest_twisted.ensureDeferred
async def test_update_device_if_refuses_when_a_field_changed(store):
    await with_users(store)
    await store.put_device(full_device(owner="bob"))
    with pytest.raises(DeviceChanged) as info:
        await store.update_device_if(CORE, {"owner": None}, owner="alice")
    assert info.value.current == full_device(owner="bob")
    with pytest.raises(DeviceChanged):
        await store.update_device_if(
            CORE, {"owner": "bob", "public_key": None}, public_key=b"new key"
        )
    assert await store.get_device(CORE) == full_device(owner="bob")


@pytest_twisted.ensureDeferred
async def test_update_device_if_sees_a_missing_device_as_a_blank_record(store):
    await with_users(store)
    with pytest.raises(DeviceChanged) as info:
        await store.update_device_if(CORE, {"owner": "alice"}, owner=None)
    assert info.value.current is None
    assert await store.get_device(CORE) is None  # nothing created
    got = await store.update_device_if(CORE, {"owner": None, "public_key": None},
                                       owner="bob", public_key=b"k")
    assert got == DeviceRecord(CORE, owner="bob", public_key=b"k")
    assert await store.get_device(CORE) == got


@pytest_twisted.ensureDeferred
async def test_adopt_device_key_keeps_the_first_key_of_two_racing(store):
    """--accept-unknown-devices: of two first keys written at once, one wins for both."""
    first, second = adopt_device_key(store, CORE, b"key one"), adopt_device_key(
        store, CORE, b"key two")
    got = await defer.gatherResults([defer.ensureDeferred(first), defer.ensureDeferred(second)])
    # Which one wins is not promised (PostgreSQL runs them on two connections).
    winner = got[0].public_key
    assert winner in (b"key one", b"key two") and got[1].public_key == winner
    assert (await store.get_device(CORE)).public_key == winner
    again = await adopt_device_key(store, CORE, b"key two" if winner == b"key one" else b"key one")
    assert again.public_key == winner


@pytest_twisted.ensureDeferred
async def test_update_device_if_with_nothing_expected_is_update_device(store):
    await with_users(store)
    assert await store.update_device_if(CORE, {}, name="n") == DeviceRecord(CORE, name="n")


@pytest_twisted.ensureDeferred
async def test_update_device_if_checks_names_and_owners(store):
    await with_users(store)
    await store.put_device(DeviceRecord(CORE, owner="alice", name="kitchen"))
    await store.put_device(DeviceRecord(PHOTON, name="kitchen"))
    with pytest.raises(NameTaken):
        await store.update_device_if(PHOTON, {"owner": None}, owner="alice")
    with pytest.raises(ConstraintError):
        await store.update_device_if(PHOTON, {"owner": None}, owner="ghost")
    with pytest.raises(TypeError, match="colour"):
        await store.update_device_if(PHOTON, {"colour": None}, owner="bob")
    with pytest.raises(TypeError, match="colour"):
        await store.update_device_if(PHOTON, {}, colour="red")
    assert await store.get_device(PHOTON) == DeviceRecord(PHOTON, name="kitchen")


@pytest_twisted.ensureDeferred
async def test_two_racing_claims_exactly_one_wins(store):
    """Both callers read "unowned" and then write at once: only one may win."""
    await with_users(store)
    await store.put_device(DeviceRecord(CORE, public_key=b"k"))
    seen = await store.get_device(CORE)
    results = await defer.DeferredList(
        [
            store.update_device_if(CORE, {"owner": seen.owner}, owner=user)
            for user in ("alice", "bob")
        ],
        consumeErrors=True,
    )
    winners = [record.owner for ok, record in results if ok]
    losers = [failure for ok, failure in results if not ok]
    assert len(winners) == 1 and len(losers) == 1
    assert losers[0].type is DeviceChanged
    assert losers[0].value.current.owner == winners[0]
    assert (await store.get_device(CORE)).owner == winners[0]


@pytest_twisted.ensureDeferred
async def test_two_racing_registrations_of_a_new_id_exactly_one_wins(store):
    await with_users(store)
    results = await defer.DeferredList(
        [
            store.update_device_if(CORE, {"owner": None, "public_key": None},
                                   owner=user, public_key=user.encode())
            for user in ("alice", "bob")
        ],
        consumeErrors=True,
    )
    assert sorted(ok for ok, _ in results) == [False, True]
    stored = await store.get_device(CORE)
    assert stored.public_key == stored.owner.encode()


# -- DTLS sessions -------------------------------------------------------------


def dtls_session(cid=b"\x01\x02\x03\x04\x05\x06\x07\x08", **overrides):
    values = dict(cid=cid, state='{"cid": "0102030405060708", "epoch": 1}',
                  expires_at=2000.5, device_id=PHOTON, updated_at=1000.25)
    values.update(overrides)
    return DtlsSessionRecord(**values)


@pytest_twisted.ensureDeferred
async def test_provides_idtlssessionstore(store):
    assert verifyObject(IDtlsSessionStore, store)


@pytest_twisted.ensureDeferred
async def test_dtls_session_round_trips_and_is_replaced(store):
    record = dtls_session()
    assert await store.save_dtls_session(record) == record
    assert await store.get_dtls_session(record.cid, 1500.0) == record
    newer = replace(record, state='{"epoch": 1, "write_sequence": 9}', expires_at=3000.0,
                    updated_at=1600.0)
    await store.save_dtls_session(newer)
    assert await store.get_dtls_session(record.cid, 1500.0) == newer
    unbound = dtls_session(b"\xff" * 8, device_id=None)
    await store.save_dtls_session(unbound)
    assert await store.get_dtls_session(b"\xff" * 8, 0.0) == unbound


@pytest_twisted.ensureDeferred
async def test_dtls_session_expires(store):
    record = dtls_session(expires_at=2000.0)
    await store.save_dtls_session(record)
    assert await store.get_dtls_session(record.cid, 1999.9) == record
    assert await store.get_dtls_session(record.cid, 2000.0) is None  # expired: never returned
    assert await store.get_dtls_session(b"\x00" * 8, 0.0) is None


@pytest_twisted.ensureDeferred
async def test_dtls_sessions_deleted_one_by_one_or_when_expired(store):
    old, fresh = dtls_session(b"old-cid!", expires_at=100.0), dtls_session(b"new-cid!")
    await store.save_dtls_session(old)
    await store.save_dtls_session(fresh)
    assert await store.delete_expired_dtls_sessions(100.0) == 1
    assert await store.delete_expired_dtls_sessions(100.0) == 0
    assert await store.get_dtls_session(b"new-cid!", 0.0) == fresh
    assert await store.delete_dtls_session(b"new-cid!") is True
    assert await store.delete_dtls_session(b"new-cid!") is False
    assert await store.get_dtls_session(b"new-cid!", 0.0) is None


@pytest_twisted.ensureDeferred
async def test_close_twice(store):
    await store.close()
    await store.close()
