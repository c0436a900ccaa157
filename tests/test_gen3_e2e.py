"""A simulated Gen3 device and the whole server over real loopback sockets.

The device (:class:`~twisted_spark.sim.gen3.Gen3VirtualDevice`) handshakes
over UDP/DTLS, says Hello, describes itself block-wise; the user works
through the HTTP API with treq: function calls, variable reads, signal,
ping, events both ways (the SSE stream included), subscriptions, and an
OTA v3 update through the same flash route as a Photon's.
"""

from __future__ import annotations

import json

import pytest
import pytest_twisted
import treq
from gen3_loopback import DEVICE_EC, GEN3_ID, TOKEN, Gen3Cloud
from loopback import until
from twisted.internet import defer, reactor, tcp
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import Protocol
from twisted.web.server import Site
from webhook_fixtures import Receiver

from twisted_spark.config import Settings
from twisted_spark.crypto.ec_keys import ec_public_key_der, load_server_ec_private_key
from twisted_spark.firmware.v3 import FlasherV3
from twisted_spark.models import AccessToken, DeviceRecord, User
from twisted_spark.service import SparkService
from twisted_spark.sim.gen3 import Gen3VirtualDevice

pytestmark = pytest.mark.usefixtures("clean_reactor")

MANY_VARIABLES = {f"reading_{i:02d}": ("int32", i) for i in range(40)}


class Collector(Protocol):
    def __init__(self):
        self.chunks = []
        self.done = defer.Deferred()

    @property
    def data(self):
        return b"".join(self.chunks)

    def dataReceived(self, data):
        self.chunks.append(data)

    def connectionLost(self, reason=None):
        if not self.done.called:
            self.done.callback(None)


@pytest_twisted.ensureDeferred
async def test_functions_variables_signal_and_ping_through_the_api():
    cloud = await Gen3Cloud().start()
    try:
        variables = {"temperature": ("int32", -5), "message": ("string", "hi"), **MANY_VARIABLES}
        device = await cloud.attach(variables=variables)  # a describe of several blocks
        code, body = await cloud.request("POST", f"/v1/devices/{GEN3_ID}/brew",
                                         data={"arg": "coffee"})
        assert (code, body.get("return_value")) == (200, 6), body
        assert device.calls == [("brew", b"coffee")]
        code, body = await cloud.request("GET", f"/v1/devices/{GEN3_ID}/temperature")
        assert (code, body["result"]) == (200, -5)
        code, body = await cloud.request("GET", f"/v1/devices/{GEN3_ID}/reading_39")
        assert (code, body["result"]) == (200, 39)
        code, body = await cloud.request("PUT", f"/v1/devices/{GEN3_ID}", data={"signal": "1"})
        assert code == 200 and device.signalling
        code, body = await cloud.request("PUT", f"/v1/devices/{GEN3_ID}/ping")
        assert (code, body["online"]) == (200, True)
        code, body = await cloud.request("GET", f"/v1/devices/{GEN3_ID}")
        assert body["connected"] is True and "brew" in body["functions"]
        assert body["variables"]["message"] == "string"
    finally:
        await cloud.stop()


@pytest_twisted.ensureDeferred
async def test_a_device_that_does_not_describe_itself_is_asked_block_by_block():
    cloud = await Gen3Cloud().start()
    try:
        device = await cloud.attach(wait_describe=False, describe_on_connect=False,
                                    variables=MANY_VARIABLES)
        assert cloud.registry.local(GEN3_ID).functions == ()
        code, body = await cloud.request("GET", f"/v1/devices/{GEN3_ID}/reading_07")
        assert (code, body.get("result")) == (200, 7), body
        assert len(device.application_describe()) > 512  # so it came in Block2 blocks
        assert cloud.registry.local(GEN3_ID).functions == ("brew", "negate")
    finally:
        await cloud.stop()


@pytest_twisted.ensureDeferred
async def test_events_both_ways_with_the_sse_stream_and_subscriptions():
    cloud = await Gen3Cloud().start()
    try:
        device = await cloud.attach()
        response = await treq.get(f"{cloud.base}/v1/devices/events/weather",
                                  headers={"Authorization": f"Bearer {TOKEN}"},
                                  unbuffered=True, pool=cloud.pool)
        stream = Collector()
        response.deliverBody(stream)
        assert await device.subscribe("orders")
        await device.publish("weather/now", "rain", ttl=120)
        await until(lambda: b"weather/now" in stream.data, what="the event on the SSE stream")
        line = next(x for x in stream.data.split(b"\n") if x.startswith(b"data:"))
        event = json.loads(line[5:])
        assert (event["data"], int(event["ttl"]), event["coreid"]) == ("rain", 120, GEN3_ID)
        code, _ = await cloud.request("POST", "/v1/devices/events",
                                      data={"name": "orders/new", "data": "42", "private": "true"})
        assert code == 200
        await until(lambda: device.events, what="the event at the device")
        assert device.events == [("orders/new", "42", 60)]
        assert await device.request_time() > 1_700_000_000
        stream.transport.stopProducing()
        await stream.done
    finally:
        await cloud.stop()


@pytest_twisted.ensureDeferred
async def test_goodbye_sleep_and_resume_without_a_handshake():
    cloud = await Gen3Cloud().start()
    try:
        device = await cloud.attach()
        assert await device.subscribe("orders")
        await device.goodbye(sleep_seconds=60)
        device.sleep()
        await until(lambda: cloud.registry.local(GEN3_ID) is None, what="device offline")
        assert await device.wake()
        await until(lambda: cloud.registry.local(GEN3_ID) is not None, what="online again")
        session = cloud.registry.local(GEN3_ID)
        assert session.transport.channel.resumed
        assert session.subscriptions == [("orders", True, None)]
        code, body = await cloud.request("POST", f"/v1/devices/{GEN3_ID}/negate", data={"arg": "7"})
        assert (code, body["return_value"]) == (200, -7)
    finally:
        await cloud.stop()
@pytest_twisted.ensureDeferred
async def test_ota_v3_through_the_flash_route_with_lost_chunks():
    cloud = await Gen3Cloud(request_timeout=10).start()
    try:
        device = await cloud.attach()
        device.ota_faults.drop_first = {2, 5, 9}
        image = bytes(range(256)) * 40 + b"tail"  # 10244 bytes: 21 chunks of 512
        busy = []

        async def flash():
            return await treq.put(f"{cloud.base}/v1/devices/{GEN3_ID}",
                                  headers={"Authorization": f"Bearer {TOKEN}"},
                                  files={"file": ("firmware.bin", image)}, pool=cloud.pool)

        flashing = defer.ensureDeferred(flash())
        await until(lambda: cloud.registry.local(GEN3_ID).busy, what="the transfer running")
        code, body = await cloud.request("PUT", f"/v1/devices/{GEN3_ID}",
                                         files={"file": ("again.bin", image)})
        busy.append(code)
        response = await flashing
        body = await response.json()
        assert response.code == 200, body
        assert busy == [409]
        assert await device.ota_done == image
        assert device.ota_stats["chunks"] >= 21
        summary = cloud.cloud.firmware.last_summary
        assert summary["mode"] == "v3" and summary["resent"] >= 3
    finally:
        await cloud.stop()




@pytest_twisted.ensureDeferred
async def test_the_device_carries_on_after_a_server_restart(data_dir):
    """SparkService on SQLite stops and starts again; the device, which never noticed,
    keeps its DTLS session, subscription and describe: no handshake, no new describe."""
    service = await start_service(data_dir)
    device_socket = None
    try:
        store = service.store
        await store.add_user(User("alice", "x"))
        await store.add_token(AccessToken(TOKEN, "alice", "test", 0.0))
        await store.put_device(DeviceRecord(GEN3_ID, owner="alice",
                                            public_key=ec_public_key_der(DEVICE_EC)))
        server_key = load_server_ec_private_key((data_dir / "server_key_ec.pem").read_bytes())
        address = ("127.0.0.1", service.udp_port.getHost().port)
        device = Gen3VirtualDevice(GEN3_ID, DEVICE_EC, server_key.public_key(), address, reactor)
        device_socket = reactor.listenUDP(0, device, interface="127.0.0.1")
        await device.connect()
        assert await device.subscribe("orders")
        session = await until(lambda: service.cloud.registry.local(GEN3_ID), what="online")
        await until(lambda: session.functions and session.transport.channel.application
                    and session.transport.channel.application["s"], what="state kept")

        await service.stopService()
        service = await start_service(data_dir)
        device.server_address = ("127.0.0.1", service.udp_port.getHost().port)
        assert await device.ping()
        session = await until(lambda: service.cloud.registry.local(GEN3_ID), what="online again")
        assert session.transport.channel.resumed
        assert session.subscriptions == [("orders", True, None)]
        base = f"http://127.0.0.1:{service.api_port.getHost().port}"
        response = await treq.post(f"{base}/v1/devices/{GEN3_ID}/brew", data={"arg": "tea"},
                                   headers={"Authorization": f"Bearer {TOKEN}"},
                                   persistent=False)
        assert (await response.json())["return_value"] == 3
        response = await treq.post(f"{base}/v1/devices/events", persistent=False,
                                   data={"name": "orders/1", "data": "x", "private": "true"},
                                   headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.code == 200
        await response.content()
        await until(lambda: device.events, what="the event after the restart")
    finally:
        if device_socket is not None:
            await device_socket.stopListening()
        await service.stopService()


async def start_service(data_dir):
    settings = Settings(data_dir=data_dir, api_endpoint="tcp:0:interface=127.0.0.1",
                        device_endpoint="tcp:0:interface=127.0.0.1", udp_device="127.0.0.1:0")
    service = SparkService(settings, reactor)
    service.startService()
    await service.ready
    return service


@pytest_twisted.ensureDeferred
async def test_ota_v3_corrupted_on_the_device_fails_with_the_devices_reason():
    cloud = await Gen3Cloud().start()
    try:
        device = await cloud.attach()
        device.ota_faults.corrupt = {3}
        code, body = await cloud.request("PUT", f"/v1/devices/{GEN3_ID}",
                                         files={"file": ("firmware.bin", b"\x01" * 3000)})
        assert code == 500, body
        assert body["error_description"] == "The device refused the update finish (4.00)."
        assert device.firmware is None
        assert not cloud.registry.local(GEN3_ID).busy  # the lock is released
    finally:
        await cloud.stop()


@pytest_twisted.ensureDeferred
async def test_ota_v3_to_a_device_that_stops_acknowledging_times_out(monkeypatch):
    monkeypatch.setattr(FlasherV3, "max_quiet_rounds", 1)  # resend everything once, then give up
    cloud = await Gen3Cloud().start()
    try:
        device = await cloud.attach()
        device.ota_faults.silent = True
        cloud.cloud.firmware.options.transfer_timeout = 60.0
        code, body = await cloud.request("PUT", f"/v1/devices/{GEN3_ID}",
                                         files={"file": ("firmware.bin", b"\x02" * 4000)})
        assert code == 408, body
        assert "stopped acknowledging" in body["error_description"]
    finally:
        await cloud.stop()


@pytest_twisted.ensureDeferred
async def test_a_gen3_event_fires_a_webhook_whose_answer_reaches_the_device():
    cloud = await Gen3Cloud(webhook_allow=("loopback",)).start()
    receiver = Receiver()
    target = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(Site(receiver))
    try:
        receiver.on("/in", 200, body=b"noted")
        url = f"http://127.0.0.1:{target.getHost().port}/in"
        code, body = await cloud.request("POST", "/v1/webhooks",
                                         json={"event": "temp", "url": url})
        assert code == 200, body
        device = await cloud.attach()
        assert await device.subscribe("hook-response/temp")
        await device.publish("temp", "21.5")
        await until(lambda: receiver.at("/in"), what="the webhook request")
        sent = receiver.at("/in")[0]
        assert b"21.5" in sent.body and GEN3_ID.encode() in sent.body
        await until(lambda: device.events, what="the hook response at the device")
        assert device.events == [("hook-response/temp/0", "noted", 60)]
    finally:
        receiver.cancel_pending()
        await target.stopListening()
        await cloud.stop()
        # the webhook sender's connection closes a moment after its last response
        await until(lambda: not [s for s in reactor.getReaders() + reactor.getWriters()
                                 if isinstance(s, (tcp.Client, tcp.Server))],
                    what="connections closed")
