"""Memory bounds on the device port: early data, the reassembly buffer, the RSA queue.

PROTOCOL.md §3: before the server's 384-byte answer a device sends exactly
its 256-byte identity blob and then waits (its Hello is encrypted with the
session key inside that answer), so anything more is not a device.
"""

from __future__ import annotations

import pytest
from device_fixtures import CORE_ID, Server
from test_device_protocol import Wire
from twisted.internet import defer
from twisted.logger import formatEvent, globalLogPublisher

from twisted_spark.coap import messages
from twisted_spark.config import Settings
from twisted_spark.device.protocol import CLOSED, READY
from twisted_spark.executors import SynchronousExecutor


@pytest.fixture
def logs():
    lines = []

    def observer(event):
        lines.append(formatEvent(event))

    globalLogPublisher.addObserver(observer)
    yield lines
    globalLogPublisher.removeObserver(observer)


class GatedPool:
    """An RSA pool whose jobs wait until the test opens the gate (work "in progress")."""

    def __init__(self):
        self.jobs = []

    @property
    def pending(self):
        return sum(1 for _, _, d in self.jobs if not d.called)

    def run(self, func, *args):
        d = defer.Deferred()
        self.jobs.append((func, args, d))
        return d

    def release(self):
        for func, args, d in list(self.jobs):
            if not d.called:
                d.callback(None)
                d.addCallback(lambda _, f=func, a=args: f(*a))


def gated_server(**settings):
    s = Server(Settings(**settings))
    s.register(CORE_ID)
    s.factory.rsa_pool = GatedPool()
    return s


def test_bytes_beyond_the_identity_blob_drop_the_connection(logs):
    """The blob and more in one read: no device does that (it needs our answer first)."""
    s = Server()
    s.register(CORE_ID)
    w = Wire(s)
    w.feed(w.identity() + b"\0" * 18)
    assert w.tr.disconnecting and w.proto.state == CLOSED
    assert w.tr.value() == b""  # no session blob was sent
    assert s.registry.get(CORE_ID) is None
    closing = [line for line in logs if "Closing connection" in line]
    assert len(closing) == 1
    assert "274 bytes before the server answered" in closing[0]
    assert "192.168.1.1" in closing[0]  # StringTransport's peer address
    assert s.factory.handshakes_failed == 1


def test_data_while_the_rsa_work_runs_is_not_buffered(logs):
    """20 MiB streamed behind the blob while its decryption waits in the queue."""
    s = gated_server()
    w = Wire(s)
    w.feed(w.identity())
    assert len(s.factory.rsa_pool.jobs) == 1 and not w.tr.disconnecting
    junk = b"\xaa" * 65536
    for _ in range(320):
        w.feed(junk)
        if w.tr.disconnecting:
            break
    assert w.tr.disconnecting and w.proto.state == CLOSED
    assert not w.proto._buffer
    assert sum(1 for line in logs if "Closing connection" in line) == 1
    # The queued job finishes later and is ignored.
    s.factory.rsa_pool.release()
    assert w.tr.value() == b""


def test_identity_split_across_reads_still_works():
    s = Server()
    s.register(CORE_ID)
    w = Wire(s)
    identity = w.identity()
    cuts = [0, 1, 40, 200, 255, 256]
    for start, stop in zip(cuts, cuts[1:], strict=False):
        w.feed(identity[start:stop])
    w.open_blob(w.take())
    w.feed(w.hello())
    assert w.proto.state == READY


def test_hello_and_following_frames_coalesced_after_the_answer():
    """After the 384-byte answer, frames may arrive joined in any way."""
    s = Server()
    s.register(CORE_ID)
    w = Wire(s)
    w.feed(w.identity())
    w.open_blob(w.take())
    data = w.hello() + w.frame(messages.ping(w.next_mid())) + w.frame(messages.ping(w.next_mid()))
    w.feed(data[:5])
    w.feed(data[5:])
    assert w.proto.state == READY
    kinds = [(m.type, m.code) for m in w.received()]
    assert len(kinds) == 3  # server Hello, then two ping ACKs


def test_reassembly_buffer_holds_at_most_one_frame():
    s = Server(Settings(max_frame_size=256))
    s.register(CORE_ID)
    w = Wire(s)
    w.handshake()
    w.feed((256).to_bytes(2, "big"))
    for _ in range(255):
        w.feed(b"\0")
    assert w.proto._reader.buffered == 2 + 255 and not w.tr.disconnecting
    w.feed(b"\0" + (272).to_bytes(2, "big"))  # completes garbage, then an oversized header
    assert w.tr.disconnecting


# -- the RSA queue bound -----------------------------------------------------------------


def test_connection_refused_at_accept_when_the_rsa_queue_is_full(logs):
    s = gated_server(max_pending_handshakes=2)
    for _ in range(2):
        w = Wire(s)
        w.feed(w.identity())
    assert s.factory.rsa_pool.pending == 2
    assert s.factory.buildProtocol(FakeAddress("10.9.9.9")) is None
    assert s.factory.refused == {"handshake_queue_full": 1}
    line = next(line for line in logs if "Refusing" in line)
    assert "10.9.9.9" in line and "holds 2 handshake jobs" in line
    assert "--max-pending-handshakes 2" in line
    s.factory.rsa_pool.release()
    assert s.factory.rsa_pool.pending == 0
    assert s.factory.buildProtocol(FakeAddress("10.9.9.9")) is not None


def test_identity_refused_when_the_queue_filled_after_accept(logs):
    """Connections accepted while the queue had room do not all queue later."""
    s = gated_server(max_pending_handshakes=1)
    first, second = Wire(s), Wire(s)
    first.feed(first.identity())
    second.feed(second.identity())
    assert len(s.factory.rsa_pool.jobs) == 1
    assert second.tr.disconnecting and not first.tr.disconnecting
    assert s.factory.refused == {"handshake_queue_full": 1}
    assert any("Closing connection" in line and "RSA" in line for line in logs)


def test_synchronous_pool_never_fills():
    s = Server(Settings(max_pending_handshakes=1))
    s.register(CORE_ID)
    assert isinstance(s.factory.rsa_pool, SynchronousExecutor)
    for _ in range(3):
        Wire(s).handshake()
    assert s.factory.handshakes_completed == 3


def test_max_pending_handshakes_option():
    from twisted_spark.tap import Options

    options = Options()
    options.parseOptions(["--max-pending-handshakes", "7"])
    assert options.settings.max_pending_handshakes == 7
    assert Settings().max_pending_handshakes == 200
    with pytest.raises(Exception, match="greater than 0"):
        Options().parseOptions(["--max-pending-handshakes", "0"])


class FakeAddress:
    def __init__(self, host):
        self.host = host
        self.port = 40000

