# -*- test-case-name: tests.test_device_eager_write -*-
"""An answer to a device sent on its socket at once when nothing is queued before it.

Twisted's TCP transport queues every ``write`` and sends it on a later
reactor pass, once epoll reports the socket writable: per frame one
``epoll_ctl`` to watch for writability, a second dispatch through the
reactor to send, and another ``epoll_ctl`` to stop watching.  For a fleet of
idle devices the answer to each keep-alive ping is most of the server's
work, and those steps were a third of it.

Only answers go this way (:meth:`DeviceProtocol.send_answer`): a call,
an event or a Describe request written through ``transport.write`` joins
whatever else the same reactor pass writes to that device, one send for
all of them; sending those at once cost more than it saved (16 API clients:
p99 5 -> 14 ms).

:func:`write_now` sends straight away when the transport is a plain TCP
connection with nothing queued, which keeps the order of the bytes.
Everything else goes through ``transport.write`` as before: queued data, the
rest of a partial send, a send error (reported by Twisted's own write path),
a closing connection, TLS, or a wrapping transport.
"""

from __future__ import annotations

from twisted.internet import tcp


def write_now(transport, data: bytes) -> None:
    """Write ``data`` to ``transport``, sending it at once when that keeps order."""
    if (
        isinstance(transport, tcp.Connection)
        and transport.connected
        and not transport.disconnecting
        and not transport.TLS
        and not transport.dataBuffer
        and not getattr(transport, "_tempDataBuffer", True)
    ):
        sent = transport.writeSomeData(data)
        if type(sent) is int:
            if sent == len(data):
                return
            data = data[sent:]
        # An error instead of a count: the queued write below meets it
        # again and reports it through the transport's own path.
    transport.write(data)
