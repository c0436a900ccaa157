# -*- test-case-name: tests.test_udp_port -*-
"""Gen3 and later devices on the UDP device port: DTLS sessions under Twisted.

:mod:`twisted_spark.dtls` is the sans-IO DTLS layer; this package puts it on
a socket.  Modules: :mod:`~twisted_spark.udp.interfaces` (the seams to the
CoAP session, which plugs in after the architecture refactor),
:mod:`~twisted_spark.udp.address` (``--udp-device``),
:mod:`~twisted_spark.udp.persistence` (sessions in an
:class:`~twisted_spark.interfaces.IDtlsSessionStore`, loaded on demand),
:mod:`~twisted_spark.udp.hello` (the CoAP Hello names the device; its key
is checked before anything else is accepted),
:mod:`~twisted_spark.udp.protocol` (the ``DatagramProtocol``),
:mod:`~twisted_spark.udp.channel` (what a CoAP session is given),
:mod:`~twisted_spark.udp.port` (assembly, for the composition root) and
:mod:`~twisted_spark.udp.probe` (a stand-in CoAP session that acknowledges
and logs what a device sends, until the real one lands).
"""
