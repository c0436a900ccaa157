"""Child process for ``test_store_durability``: write, acknowledge, wait to be killed.

Usage: ``python store_crash_child.py DB ROUNDS [stop]``, DB a SQLite file path
or a ``postgresql://`` URL.  Each round adds a
user, a token for them and a device they own; after each write's Deferred
fires the child prints ``ACK <n> <kind> <key>`` (flushed), exactly as a
server would answer a client.  With ROUNDS 0 it writes until killed; else it
prints ``IDLE`` after the last round and keeps the reactor running -- or,
given ``stop``, starts one more write (user ``late``) and stops the reactor
without closing the store, while a "before shutdown" trigger (as a service's
stopService would) writes user ``goodbye``: both must commit and the process
must exit.
"""

import sys

from twisted.internet import defer, task

from twisted_spark.models import AccessToken, DeviceRecord, User


def open_store(reactor, target):
    """The store the tests name: PostgreSQL for a URL, else SQLite at that path."""
    if str(target).startswith("postgresql://"):
        from twisted_spark.store.postgres import PostgresStore

        return PostgresStore.open(str(target), reactor)
    from twisted_spark.store.sqlite import SQLiteStore

    return SQLiteStore.open(target, reactor=reactor)


def ack(count, kind, key):
    print(f"ACK {count} {kind} {key}", flush=True)


async def main(reactor, path, rounds, mode="idle"):
    store = await open_store(reactor, path)
    count = 0
    index = 0
    while rounds == 0 or index < rounds:
        username = f"user{index:05d}"
        await store.add_user(User(username, f"hash-{index}", created_at=float(index)))
        count += 1
        ack(count, "user", username)
        token = f"token{index:05d}"
        await store.add_token(AccessToken(token, username, "cli", float(index)))
        count += 1
        ack(count, "token", token)
        device_id = f"{index:024x}"
        await store.put_device(
            DeviceRecord(
                device_id,
                owner=username,
                name=f"dev{index}",
                functions=("f",),
                variables={"v": "int32"},
            )
        )
        count += 1
        ack(count, "device", device_id)
        index += 1
    if mode == "stop":

        async def like_stop_service():
            # A service still writing during shutdown, one loop turn later.
            await task.deferLater(reactor, 0, lambda: None)
            await store.add_user(User("goodbye", "hash-goodbye"))

        reactor.addSystemEventTrigger(
            "before", "shutdown", lambda: defer.ensureDeferred(like_stop_service())
        )
        store.add_user(User("late", "hash-late"))  # in flight when the reactor stops
        reactor.stop()
        return
    print("IDLE", flush=True)
    await defer.Deferred()  # keep running until SIGKILL


if __name__ == "__main__":
    task.react(
        lambda reactor: defer.ensureDeferred(
            main(reactor, sys.argv[1], int(sys.argv[2]), *sys.argv[3:])
        )
    )
