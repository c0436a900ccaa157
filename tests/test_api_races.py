"""Two requests racing for one device (API.md §4): claim, release, provisioning
and rename are compare-and-set writes, so exactly one of two racers wins.

A :class:`ReadGate` around the store holds device reads until both requests
have read: the worst interleaving (both read, then both write) happens every
time instead of by luck.  The last tests do the same over real HTTP on
loopback against the real SQLite store, and against two API nodes sharing
one PostgreSQL database (the store-level races across nodes, with many
more racers, are in ``test_store_postgres.py``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_twisted
import treq
from api_fakes import FakeRegistry, Harness, assert_error, device_id
from twisted.internet import defer
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.web.client import HTTPConnectionPool

from twisted_spark.api import SparkAPI
from twisted_spark.config import Settings
from twisted_spark.crypto.keys import load_device_public_key, public_key_der
from twisted_spark.models import AccessToken, DeviceRecord, User
from twisted_spark.store.sqlite import SQLiteStore

KEYS = Path(__file__).parent / "keys"
D1 = device_id(1)


def pem(n):
    return (KEYS / f"device-{n}.pub.pem").read_text()


def der(n):
    return public_key_der(load_device_public_key(pem(n)))


class ReadGate:
    """A store whose device reads (``get_device``, ``list_devices``,
    ``list_devices_named``) wait.

    With ``parties=n`` the held reads are let go together as soon as ``n``
    are waiting, so ``n`` racing requests move in lockstep: every one has
    read before any writes.  Without, they wait for :meth:`release_one` or
    :meth:`open`.  Writes and everything else go straight to the store.
    """

    def __init__(self, store, parties=None):
        self._store = store
        self.parties = parties
        self.held: list[tuple[defer.Deferred, defer.Deferred]] = []
        self.closed = True

    def __getattr__(self, name):
        return getattr(self._store, name)

    def _hold(self, answer):
        if not self.closed:
            return answer
        waiting = defer.Deferred()
        self.held.append((answer, waiting))
        if self.parties is not None and len(self.held) >= self.parties:
            self._let_go(len(self.held))
        return waiting

    def get_device(self, device_id):
        return self._hold(self._store.get_device(device_id))

    def list_devices(self, owner=None):
        return self._hold(self._store.list_devices(owner))

    def list_devices_named(self, name, owner=None):
        return self._hold(self._store.list_devices_named(name, owner))

    def _let_go(self, count):
        go, self.held = self.held[:count], self.held[count:]
        for answer, waiting in go:
            answer.chainDeferred(waiting)

    def release_one(self):
        self._let_go(1)

    def open(self):
        self.closed = False
        self._let_go(len(self.held))


async def race(h, first, second):
    """Run both requests in lockstep (both read, then both write); their Results."""
    h.api.store = ReadGate(h.store, parties=2)
    started = [h.start(*first[:2], **first[2]), h.start(*second[:2], **second[2])]
    try:
        return [await h.finish(d) for d in started]
    finally:
        h.api.store = h.store


async def harness():
    h = Harness()
    tokens = {name: await h.user(name) for name in ("alice", "bob")}
    return h, tokens


@pytest_twisted.ensureDeferred
async def test_two_users_claiming_one_device_exactly_one_wins():
    h, t = await harness()
    await h.store.put_device(DeviceRecord(D1, public_key=der(1)))
    results = await race(
        h,
        ("POST", "/v1/devices", {"token": t["alice"], "form": {"id": D1}}),
        ("POST", "/v1/devices", {"token": t["bob"], "form": {"id": D1}}),
    )
    assert sorted(r.status for r in results) == [200, 403]
    winner = next(r for r in results if r.status == 200).json["user_id"]
    loser = next(r for r in results if r.status == 403)
    assert assert_error(loser, 403)["errors"] == ["That belongs to someone else"]
    assert (await h.store.get_device(D1)).owner == winner


@pytest_twisted.ensureDeferred
async def test_one_user_claiming_twice_at_once_gets_two_200s():
    h, t = await harness()
    await h.store.put_device(DeviceRecord(D1, public_key=der(1)))
    claim = ("POST", "/v1/devices", {"token": t["alice"], "form": {"id": D1}})
    results = await race(h, claim, claim)
    assert [r.status for r in results] == [200, 200]


@pytest_twisted.ensureDeferred
async def test_a_stale_release_does_not_undo_someone_elses_claim():
    """alice releases; bob claims; alice's second release (read before bob's
    claim landed) must not set the owner back to none."""
    h, t = await harness()
    await h.store.put_device(DeviceRecord(D1, owner="alice", public_key=der(1)))
    gate = ReadGate(h.store)
    h.api.store = gate
    first = h.start("DELETE", f"/v1/devices/{D1}", token=t["alice"])
    stale = h.start("DELETE", f"/v1/devices/{D1}", token=t["alice"])
    assert len(gate.held) == 2
    gate.release_one()  # the first release runs to the end
    assert (await h.finish(first)).status == 200
    gate.closed = False
    assert (await h.call("POST", "/v1/devices", token=t["bob"], form={"id": D1})).status == 200
    gate.open()  # now the second release, which saw alice as the owner, writes
    assert_error(await h.finish(stale), 403)
    assert (await h.store.get_device(D1)).owner == "bob"


@pytest_twisted.ensureDeferred
async def test_two_users_registering_a_new_id_exactly_one_wins():
    h, t = await harness()
    results = await race(
        h,
        ("POST", f"/v1/provisioning/{D1}", {"token": t["alice"], "form": {"publicKey": pem(1)}}),
        ("POST", f"/v1/provisioning/{D1}", {"token": t["bob"], "form": {"publicKey": pem(2)}}),
    )
    assert sorted(r.status for r in results) == [200, 403]
    record = await h.store.get_device(D1)
    winner = ("alice", "bob")[[r.status for r in results].index(200)]
    assert record.owner == winner
    assert record.public_key == der(1 if winner == "alice" else 2)


@pytest_twisted.ensureDeferred
async def test_a_key_replacement_racing_a_claim_cannot_take_the_device():
    """bob replaces the key of an unowned device while alice claims it: the
    write that reads "unowned, key K" must fail once the other landed."""
    h, t = await harness()
    await h.store.put_device(DeviceRecord(D1, public_key=der(1)))
    results = await race(
        h,
        ("POST", "/v1/devices", {"token": t["alice"], "form": {"id": D1}}),
        ("POST", f"/v1/provisioning/{D1}", {"token": t["bob"], "form": {"publicKey": pem(2)}}),
    )
    assert [r.status for r in results] == [200, 403]
    assert await h.store.get_device(D1) == DeviceRecord(D1, owner="alice", public_key=der(1))


@pytest_twisted.ensureDeferred
async def test_two_devices_renamed_to_one_name_at_once_one_gets_400():
    h, t = await harness()
    await h.device(1, owner="alice", name="one", online=False)
    await h.device(2, owner="alice", name="two", online=False)
    results = await race(
        h,
        ("PUT", f"/v1/devices/{device_id(1)}", {"token": t["alice"], "form": {"name": "same"}}),
        ("PUT", f"/v1/devices/{device_id(2)}", {"token": t["alice"], "form": {"name": "same"}}),
    )
    assert sorted(r.status for r in results) == [200, 400]
    loser = next(r for r in results if r.status == 400)
    assert assert_error(loser, 400)["error_description"] == "name already in use"
    names = [d.name for d in await h.store.list_devices("alice")]
    assert sorted(names) in (["one", "same"], ["same", "two"])
    r = await h.call("GET", "/v1/devices/same", token=t["alice"])
    assert r.status == 200


# -- provisioning rules (API.md §4) -------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_plain_user_cannot_replace_the_key_of_an_unowned_device():
    h, t = await harness()
    await h.store.put_device(DeviceRecord(D1, public_key=der(1)))
    r = await h.call("POST", f"/v1/provisioning/{D1}", token=t["bob"],
                     form={"publicKey": pem(2)})
    body = assert_error(r, 403)
    assert "owner or an administrator" in body["error_description"]
    assert await h.store.get_device(D1) == DeviceRecord(D1, public_key=der(1))
    # ... so the real device still connects and can still be claimed by its user.
    assert (await h.call("POST", "/v1/devices", token=t["alice"], form={"id": D1})).status == 200


@pytest_twisted.ensureDeferred
async def test_owner_and_admin_may_replace_a_key_admin_does_not_take_ownership():
    h, t = await harness()
    root = await h.user("root", admin=True)
    await h.store.put_device(DeviceRecord(D1, owner="alice", public_key=der(1)))
    r = await h.call("POST", f"/v1/provisioning/{D1}", token=t["alice"],
                     form={"publicKey": pem(2)})
    assert r.status == 200
    assert (await h.store.get_device(D1)).public_key == der(2)
    unowned = device_id(2)
    await h.store.put_device(DeviceRecord(unowned, public_key=der(1)))
    r = await h.call("POST", f"/v1/provisioning/{unowned}", token=root,
                     form={"publicKey": pem(3)})
    assert r.status == 200
    assert await h.store.get_device(unowned) == DeviceRecord(unowned, public_key=der(3))


@pytest_twisted.ensureDeferred
async def test_a_key_for_a_stored_keyless_device_is_its_owners_to_give():
    h, t = await harness()
    await h.store.put_device(DeviceRecord(D1, owner="alice"))  # seen online, never keyed
    r = await h.call("POST", f"/v1/provisioning/{D1}", token=t["bob"], form={"publicKey": pem(1)})
    assert_error(r, 403)
    r = await h.call("POST", f"/v1/provisioning/{D1}", token=t["alice"],
                     form={"publicKey": pem(1)})
    assert r.status == 200
    assert await h.store.get_device(D1) == DeviceRecord(D1, owner="alice", public_key=der(1))


# -- claims and names --------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_claiming_a_device_named_like_one_of_mine_drops_its_name():
    h, t = await harness()
    await h.device(1, owner="alice", name="kitchen", online=False)
    await h.device(2, owner=None, name="kitchen", online=False)
    r = await h.call("POST", "/v1/devices", token=t["alice"], form={"id": device_id(2)})
    assert r.status == 200
    record = await h.store.get_device(device_id(2))
    assert record.owner == "alice" and record.name is None
    r = await h.call("GET", "/v1/devices/kitchen", token=t["alice"])
    assert r.json["id"] == device_id(1)


# -- the same race over HTTP on the real SQLite store ----------------------------------------


@pytest.mark.usefixtures("clean_reactor")
@pytest_twisted.ensureDeferred
async def test_racing_claims_over_loopback_on_sqlite(tmp_path, reactor):
    store = await SQLiteStore.open(tmp_path / "spark.sqlite", reactor=reactor)
    pool = HTTPConnectionPool(reactor, persistent=False)
    port = None
    try:
        tokens = {}
        for n, name in enumerate(("alice", "bob")):
            await store.add_user(User(name, "tokens only: no password"))
            tokens[name] = f"{n:040x}"
            await store.add_token(AccessToken(tokens[name], name, "spark", reactor.seconds()))
        devices = [device_id(n) for n in range(1, 6)]
        for did in devices:
            await store.put_device(DeviceRecord(did, public_key=der(1)))
        gate = ReadGate(store, parties=2 * len(devices))
        api = SparkAPI(gate, FakeRegistry(), Settings(), clock=reactor)
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(api.site())
        base = f"http://127.0.0.1:{port.getHost().port}"

        def claim(user, did):
            d = treq.post(f"{base}/v1/devices", data={"id": did}, pool=pool,
                          headers={"Authorization": f"Bearer {tokens[user]}"})
            return d.addCallback(lambda response: response.code)

        pending = [claim(user, did) for did in devices for user in ("alice", "bob")]
        codes = await defer.gatherResults(pending)
        for index, did in enumerate(devices):
            pair = codes[2 * index : 2 * index + 2]
            assert sorted(pair) == [200, 403], (did, pair)
            owner = (await store.get_device(did)).owner
            assert owner == ("alice", "bob")[pair.index(200)]
    finally:
        if port is not None:
            await port.stopListening()
        await pool.closeCachedConnections()
        await store.close()



@pytest.mark.usefixtures("clean_reactor")
@pytest_twisted.ensureDeferred
async def test_racing_claims_on_two_nodes_sharing_postgresql(postgres_url, reactor):
    """Two API nodes, each with its own PostgresStore on one database: alice claims
    through one and bob through the other, both having read "unowned" first."""
    from twisted_spark.store.postgres import PostgresStore

    stores = [await PostgresStore.open(postgres_url, reactor) for _ in range(2)]
    pool = HTTPConnectionPool(reactor, persistent=False)
    ports = []
    try:
        tokens = {}
        for n, name in enumerate(("alice", "bob")):
            await stores[0].add_user(User(name, "tokens only: no password"))
            tokens[name] = f"{n:040x}"
            await stores[0].add_token(AccessToken(tokens[name], name, "spark", reactor.seconds()))
        devices = [device_id(n) for n in range(1, 6)]
        for did in devices:
            await stores[0].put_device(DeviceRecord(did, public_key=der(1)))
        bases = {}
        for user, store in zip(("alice", "bob"), stores, strict=True):
            # Each node lets its reads go once it has read every device.
            api = SparkAPI(ReadGate(store, parties=len(devices)), FakeRegistry(), Settings(),
                           clock=reactor)
            port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(api.site())
            ports.append(port)
            bases[user] = f"http://127.0.0.1:{port.getHost().port}"

        def claim(user, did):
            d = treq.post(f"{bases[user]}/v1/devices", data={"id": did}, pool=pool,
                          headers={"Authorization": f"Bearer {tokens[user]}"})
            return d.addCallback(lambda response: response.code)

        codes = await defer.gatherResults(
            [claim(user, did) for did in devices for user in ("alice", "bob")])
        for index, did in enumerate(devices):
            pair = codes[2 * index : 2 * index + 2]
            assert sorted(pair) == [200, 403], (did, pair)
            owner = (await stores[1].get_device(did)).owner
            assert owner == ("alice", "bob")[pair.index(200)]
    finally:
        for port in ports:
            await port.stopListening()
        await pool.closeCachedConnections()
        await defer.gatherResults([store.close() for store in stores])
