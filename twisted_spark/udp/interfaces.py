# -*- test-case-name: tests.test_udp_port -*-
"""The seams between the UDP device port and the CoAP session above it.

The port owns sockets, DTLS, persistence and the device's identity (the
CoAP Hello and the key check); a CoAP-over-UDP session owns everything else
(retransmission, duplicates, describe, events, calls).  They meet here, so
the session written after the architecture refactor plugs in without
touching the transport.  One DTLS record carries one CoAP message, both ways.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface


class IDatagramChannel(Interface):
    """What a session may do with its device's DTLS connection."""

    device_id = Attribute("24 lowercase hex characters, from the accepted Hello")
    address = Attribute("(host, port) the device was last heard from; it may move")
    max_message_size = Attribute(
        "largest CoAP message the device accepts in one record (its Hello says; "
        "960 bytes on devices, 1152 on Device OS's Linux build)"
    )
    resumed = Attribute("True if the session was resumed without a handshake")
    application = Attribute(
        "dict | None: what :meth:`remember` last kept with this DTLS session (after a "
        "server restart too: it is persisted with the session)"
    )

    def send(message):
        """Send one CoAP message (bytes) in one record.

        Raises ValueError if it is longer than ``max_message_size``, and
        :class:`twisted_spark.dtls.StateError` if the connection is closed.
        """

    def hello_known(hello):
        """The device's Hello (a :class:`~twisted_spark.coap.gen3.Gen3Hello`, or None):
        its ``max_message_size`` bounds what :meth:`send` takes from now on.

        A resumed session has none of its own: its session gives the one it
        kept with the DTLS session, so the device's limits survive a sleep or
        a server restart.
        """

    def close(reason):
        """End the DTLS session (close_notify) and forget it; the device will handshake again.

        ``connection_lost`` is not called back for a close the session asked for.
        """

    def remember(data):
        """Keep ``data`` (a small JSON-safe dict) with the DTLS session, persisted with it.

        A device resuming its session does not repeat what it told the server
        before (describe, subscriptions): the session keeps that here.
        """

    def detach(reason):
        """End the CoAP session but keep the DTLS session, for the device to resume.

        A device gone quiet (asleep, or out of reach) or one that said
        goodbye keeps its session: its next record starts a new CoAP
        session through :meth:`IDatagramSessionFactory.session_started`
        (``hello`` None unless it sends one).  ``connection_lost`` is not
        called back.
        """


class IDatagramSession(Interface):
    """One device's CoAP session on top of its DTLS connection."""

    def message_received(message):
        """One CoAP message (bytes) arrived from the device, decrypted and authentic.

        It may be a duplicate (UDP): detecting those is the session's job.
        """

    def address_changed(address):
        """The device now talks from ``address`` (NAT rebinding, or it woke up elsewhere)."""

    def connection_lost(reason):
        """The DTLS session is over (closed by the device, expired, or replaced)."""


class IDatagramSessionFactory(Interface):
    """Makes the CoAP session for a device once the port knows who it is."""

    def session_started(channel, hello, first_message):
        """A device's DTLS connection is ready for CoAP.

        :param channel: its :class:`IDatagramChannel`.
        :param hello: the parsed :class:`twisted_spark.coap.gen3.Gen3Hello`,
            or None for a resumed session whose first message is not a Hello.
        :param first_message: the first CoAP message (the Hello itself, or
            what a resumed device sent first: usually a ping); the session
            handles it like any other, acknowledging it.
        :rtype: :class:`IDatagramSession`
        """

    def close_all(reason):
        """The server is stopping: end every CoAP session (their DTLS sessions stay saved)."""
