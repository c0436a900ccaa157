"""Webhooks end to end on loopback: the real API and device server, a virtual
device, and a twisted.web receiver on 127.0.0.1 (API.md §6)."""

from __future__ import annotations

import json

import pytest
import pytest_twisted
from loopback import until
from twisted.internet import reactor
from webhook_fixtures import CORE, HookCloud

from twisted_spark.store.sqlite import SQLiteStore

pytestmark = pytest.mark.usefixtures("clean_reactor")


@pytest_twisted.ensureDeferred
async def test_device_event_reaches_the_receiver_and_the_answer_reaches_sse():
    world = await HookCloud().start()
    try:
        world.receiver.on("/in", 200, body=b'{"reply": "' + b"r" * 600 + b'"}')
        await world.create(event="temp", url=world.target + "/in",
                           json={"t": "{{value}}", "who": "{{{PARTICLE_DEVICE_ID}}}"},
                           headers={"X-Token": "s3cret"})
        stream = await world.stream()
        device = await world.device()
        assert await device.subscribe("hook-response/temperature")  # firehose scope
        device.publish("temperature", json.dumps({"value": 21.5}))
        await until(lambda: world.receiver.at("/in"), what="hook request")
        got = world.receiver.at("/in")[0]
        assert got.method == "POST"
        assert got.headers["user-agent"].startswith("ParticleBot/")
        assert got.headers["content-type"] == "application/json"
        assert got.headers["x-token"] == "s3cret"
        body = json.loads(got.body)
        assert body["t"] == "21.5" and body["who"] == CORE and body["event"] == "temperature"
        assert body["coreid"] == CORE and body["data"] == '{"value": 21.5}'
        await until(lambda: ("hook-response/temperature/1", None) in
                    [(n, None) for n, _ in stream.events()], what="response on SSE")
        events = [e for e in stream.events() if e[0].startswith("hook")]
        assert events[0] == ("hook-sent/temperature", None)
        answer = "".join(d for n, d in events[1:])
        assert answer == '{"reply": "' + "r" * 600 + '"}'
        assert [n for n, _ in events[1:]] == ["hook-response/temperature/0",
                                              "hook-response/temperature/1"]
        # the device that asked gets the answer too, as on the hosted cloud
        await until(lambda: len(device.events) == 2, what="answer on the device")
        assert [e[0] for e in device.events] == ["hook-response/temperature/0",
                                                 "hook-response/temperature/1"]
        assert "".join(e[1] for e in device.events) == answer
    finally:
        await world.stop()


@pytest_twisted.ensureDeferred
async def test_api_publish_get_with_query_ownership_and_delete():
    world = await HookCloud().start()
    try:
        hook_id = await world.create(event="door", url=world.target + "/get?x=1",
                                     requestType="get", query={"q": "{{PARTICLE_EVENT_VALUE}}"},
                                     name="front door")
        code, listed = await world.api("GET", "/v1/webhooks")
        assert code == 200 and [h["id"] for h in listed] == [hook_id]
        assert listed[0]["query"] == {"q": "{{PARTICLE_EVENT_VALUE}}"}
        assert listed[0]["name"] == "front door" and listed[0]["requestType"] == "GET"
        # bob neither sees nor deletes it, and cannot tell it exists
        assert await world.api("GET", "/v1/webhooks", "bob") == (200, [])
        for method in ("GET", "DELETE"):
            code, body = await world.api(method, f"/v1/webhooks/{hook_id}", "bob")
            assert (code, body["error"]) == (404, "Webhook not found")
        # bob's API publishes never trigger alice's hook
        await world.api("POST", "/v1/devices/events", "bob", data={"name": "door", "data": "b"})
        await world.api("POST", "/v1/devices/events", data={"name": "door/open", "data": "a b"})
        await until(lambda: world.receiver.at("/get"), what="hook request")
        got = world.receiver.at("/get")
        assert len(got) == 1 and got[0].method == "GET" and got[0].body == b""
        assert got[0].args["x"] == ["1"] and got[0].args["q"] == ["a b"]
        assert got[0].args["coreid"] == ["api"] and got[0].args["event"] == ["door/open"]
        code, body = await world.api("DELETE", f"/v1/webhooks/{hook_id}")
        assert (code, body) == (200, {"ok": True})
        assert await world.api("GET", "/v1/webhooks") == (200, [])
        await world.api("POST", "/v1/devices/events", data={"name": "door", "data": "again"})
        await world.api("GET", "/v1/webhooks")  # a round trip after the publish
        assert len(world.receiver.at("/get")) == 1
    finally:
        await world.stop()


@pytest_twisted.ensureDeferred
async def test_creation_errors_and_device_filter():
    world = await HookCloud().start()
    try:
        code, body = await world.api("POST", "/v1/webhooks", json={"event": "t",
                                     "url": "http://169.254.169.254/latest/meta-data"})
        assert code == 400 and body["ok"] is False and body["error"] == "Invalid webhook"
        assert "does not send webhooks to" in body["error_description"]
        code, body = await world.api("POST", "/v1/webhooks", data={"event": "t"})
        assert (code, body["errors"]) == (400, ["url is required."])
        code, body = await world.api("POST", "/v1/webhooks", "bob", json={
            "event": "t", "url": world.target + "/x", "deviceID": CORE})
        assert code == 403
        code, body = await world.api("POST", "/v1/webhooks", data={
            "event": "t", "url": world.target + "/dev", "deviceid": "kitchen",
            "headers[X-A]": "1"})
        assert code == 200 and body["deviceID"] == CORE and body["ok"] is True
        await world.api("POST", "/v1/devices/events", data={"name": "t"})  # api: no match
        device = await world.device()
        device.publish("t1")
        await until(lambda: world.receiver.at("/dev"), what="hook request")
        assert [r.args["event"] for r in world.receiver.at("/dev")] == [["t1"]]  # one, no api
        assert b"event=t1" in world.receiver.at("/dev")[0].body
        assert world.receiver.at("/dev")[0].headers["x-a"] == "1"
    finally:
        await world.stop()


@pytest_twisted.ensureDeferred
async def test_500s_are_retried_then_a_hook_error_and_a_slow_target_times_out_alone():
    world = await HookCloud(webhook_timeout=1.0).start()
    world.cloud.webhooks.uniform = lambda a, b: 0.05  # waits of 0.05 s and 0.1 s
    try:
        world.receiver.on("/broken", 500, 500, 200)
        world.receiver.on("/down", 503)
        world.receiver.on("/slow", 200, delay=5.0)
        await world.create(event="a", url=world.target + "/broken")
        await world.create(event="a", url=world.target + "/down")
        await world.create(event="a", url=world.target + "/slow")
        await world.create(event="a", url=world.target + "/fast")
        stream = await world.stream()
        published = reactor.seconds()
        await world.api("POST", "/v1/devices/events", data={"name": "a"})
        await until(lambda: world.receiver.at("/fast"), what="fast hook")
        assert world.receiver.at("/fast")[0].at - published < 0.5
        await until(lambda: len([e for e in stream.events() if e[0].startswith("hook-error")])
                    == 2, what="two errors")
        errors = [d for n, d in stream.events() if n == "hook-error/a/0"]
        assert sorted(errors) == sorted([
            "error status 503 from 127.0.0.1", "timed out after 1 s (127.0.0.1)"])
        assert len(world.receiver.at("/broken")) == 3  # third attempt succeeded
        assert len(world.receiver.at("/down")) == 3
        assert len(world.receiver.at("/slow")) == 1  # a timeout is not retried
    finally:
        await world.stop()


@pytest_twisted.ensureDeferred
async def test_loopback_target_by_name_is_refused_at_delivery_without_allow():
    world = await HookCloud(webhook_allow=()).start()
    try:
        port = world.target_port.getHost().port
        await world.create(event="x", url=f"http://localhost:{port}/in")
        stream = await world.stream()
        await world.api("POST", "/v1/devices/events", data={"name": "x"})
        await until(lambda: [e for e in stream.events() if e[0] == "hook-error/x/0"])
        assert ("hook-error/x/0", "address not allowed (localhost)") in stream.events()
        assert world.receiver.received == []
    finally:
        await world.stop()


async def open_store(engine, tmp_path, request):
    if engine == "sqlite":
        return await SQLiteStore.open(tmp_path / "spark.sqlite", reactor=reactor)
    from twisted_spark.store.postgres import PostgresStore

    return await PostgresStore.open(request.getfixturevalue("postgres_url"), reactor)


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
@pytest_twisted.ensureDeferred
async def test_hooks_survive_a_restart_and_deliver(engine, tmp_path, request):
    world = await HookCloud(store=await open_store(engine, tmp_path, request)).start()
    try:
        hook_id = await world.create(event="r", url=world.target + "/kept")
        target = world.target
    finally:
        await world.stop()  # closes the store
    world = HookCloud(store=await open_store(engine, tmp_path, request))
    await world.start(with_users=False)
    try:
        assert [h["id"] for h in (await world.api("GET", "/v1/webhooks"))[1]] == [hook_id]
        # The receiver of this run listens elsewhere: a hook to it, and the old
        # one (loaded at start) failing to reach the old port, both deliver attempts.
        await world.create(event="r", url=world.target + "/new")
        stream = await world.stream()
        await world.api("POST", "/v1/devices/events", data={"name": "r"})
        await until(lambda: world.receiver.at("/new"), what="new hook")
        await until(lambda: [e for e in stream.events() if e[0] == "hook-sent/r"][1:],
                    what="the stored hook attempted")
        assert target != world.target
    finally:
        await world.stop()


@pytest_twisted.ensureDeferred
async def test_body_form_auth_templates_and_response_template_over_http():
    world = await HookCloud().start()
    try:
        world.receiver.on("/body", 200, body=b'{"temp": {"c": 21}}')
        world.receiver.on("/form", 201, body=b"")
        await world.create(event="t", url=world.target + "/body?id={{PARTICLE_DEVICE_ID}}",
                           requestType="PUT", body="{{{a}}} & {{a}}",
                           headers={"Content-Type": "text/plain",
                                    "X-Ev": "{{PARTICLE_EVENT_NAME}}"},
                           auth={"username": "u{{n}}", "password": "p"},
                           responseTemplate="C={{temp.c}}", responseTopic="answer/{{n}}")
        await world.create(event="t", url=world.target + "/form", noDefaults=True,
                           form={"n": "{{n}}", "flag": "{{flag}}"})
        stream = await world.stream()
        await world.api("POST", "/v1/devices/events",
                        data={"name": "t", "data": json.dumps({"a": "<b>", "n": 7, "flag": True})})
        await until(lambda: world.receiver.at("/body") and world.receiver.at("/form"))
        body = world.receiver.at("/body")[0]
        assert body.method == "PUT" and body.args == {"id": ["api"]}
        assert body.body == b"<b> & &lt;b&gt;"
        assert body.headers["content-type"] == "text/plain" and body.headers["x-ev"] == "t"
        assert body.headers["authorization"] == "Basic dTc6cA=="  # u7:p
        form = world.receiver.at("/form")[0]
        assert form.body == b"n=7&flag=true"
        assert form.headers["content-type"] == "application/x-www-form-urlencoded"
        await until(lambda: ("answer/7/0", "C=21") in stream.events()
                    and ("hook-response/t/0", None) in stream.events(), what="responses")
    finally:
        await world.stop()


@pytest_twisted.ensureDeferred
async def test_a_failing_hook_sleeps_after_max_errors_and_others_keep_going():
    world = await HookCloud(webhook_max_errors=2, webhook_sleep=30).start()
    try:
        world.receiver.on("/bad", 404)
        await world.create(event="s", url=world.target + "/bad")
        await world.create(event="s", url=world.target + "/good")
        stream = await world.stream()
        def errors():
            return [d for name, d in stream.events() if name == "hook-error/s/0"]

        for n in range(1, 4):
            await world.api("POST", "/v1/devices/events", data={"name": "s", "data": str(n)})
            await until(lambda n=n: len(world.receiver.at("/good")) == n, what="good hook")
            await until(lambda n=n: len(errors()) == n, what="an error")
        assert errors() == ["error status 404 from 127.0.0.1"] * 2 + [
            "Sleeping, too many errors, please wait and try again"]
        assert len(world.receiver.at("/bad")) == 2
    finally:
        await world.stop()


def self_signed_pem():
    """A throwaway EC key and self-signed certificate for 127.0.0.1 (PEM)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    return (key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
            + cert.public_bytes(serialization.Encoding.PEM))


@pytest_twisted.ensureDeferred
async def test_https_certificates_are_checked_unless_reject_unauthorized_is_false(tmp_path):
    from twisted.internet import ssl
    from twisted.internet.endpoints import SSL4ServerEndpoint
    from twisted.web.server import Site

    world = await HookCloud().start()
    world.cloud.webhooks.uniform = lambda a, b: 0.05
    pem = tmp_path / "target.pem"
    pem.write_bytes(self_signed_pem())
    context = ssl.DefaultOpenSSLContextFactory(str(pem), str(pem))
    tls_port = await SSL4ServerEndpoint(reactor, 0, context,
                                        interface="127.0.0.1").listen(Site(world.receiver))
    try:
        target = f"https://127.0.0.1:{tls_port.getHost().port}"
        await world.create(event="open", url=target + "/unchecked", rejectUnauthorized=False)
        await world.create(event="sealed", url=target + "/checked")
        stream = await world.stream()
        # First a delivery without checking, which leaves an idle connection behind...
        await world.api("POST", "/v1/devices/events", data={"name": "open", "data": "x"})
        await until(lambda: ("hook-response/open/0", "ok") in stream.events(), what="answer")
        # ...that the hook checking certificates must not use.
        await world.api("POST", "/v1/devices/events", data={"name": "sealed", "data": "x"})
        await until(lambda: [e for e in stream.events() if e[0] == "hook-error/sealed/0"],
                    what="the checked hook's error")
        [error] = [d for n, d in stream.events() if n == "hook-error/sealed/0"]
        assert error.startswith("connection failed (127.0.0.1): ")
        assert world.receiver.at("/checked") == []
    finally:
        await tls_port.stopListening()
        await world.stop()


@pytest_twisted.ensureDeferred
async def test_limit_per_user_admin_reads_and_deletes_by_id_and_no_integrations_route():
    from webhook_fixtures import TOKENS

    from twisted_spark.models import AccessToken, User

    world = await HookCloud(webhook_max_per_user=2).start()
    TOKENS["root"] = "c" * 40
    try:
        await world.store.add_user(User("root", "x", is_admin=True))
        await world.store.add_token(AccessToken(TOKENS["root"], "root", "spark", 0.0))
        first = await world.create(event="a", url=world.target + "/a")
        await world.create(event="b", url=world.target + "/b", name="second")
        code, body = await world.api("POST", "/v1/webhooks", json={
            "event": "c", "url": world.target + "/c"})
        assert (code, body["error"]) == (400, "Too many webhooks")
        assert await world.api("GET", "/v1/webhooks", "root") == (200, [])  # only their own
        code, item = await world.api("GET", f"/v1/webhooks/{first.upper()}", "root")
        assert code == 200 and item["id"] == first and item["url"] == world.target + "/a"
        assert (await world.api("DELETE", f"/v1/webhooks/{first}", "root")) == (
            200, {"ok": True})
        code, listed = await world.api("GET", "/v1/webhooks")
        assert [h["name"] for h in listed] == ["second"]
        code, body = await world.api("GET", "/v1/integrations")
        assert code == 404 and body["ok"] is False
    finally:
        del TOKENS["root"]
        await world.stop()


@pytest_twisted.ensureDeferred
async def test_at_most_100000_bytes_of_an_answer_are_read_and_published_in_parts():
    world = await HookCloud().start()
    try:
        world.receiver.on("/big", 200, body=b"z" * 150_000)
        await world.create(event="big", url=world.target + "/big")
        stream = await world.stream()
        await world.api("POST", "/v1/devices/events", data={"name": "big"})
        last = f"hook-response/big/{100_000 // 512}"
        await until(lambda: any(name == last for name, _ in stream.events()), what="last part")
        parts = [d for n, d in stream.events() if n.startswith("hook-response/big/")]
        assert len(parts) == 196 and "".join(parts) == "z" * 100_000
    finally:
        await world.stop()


class AnswersResolver:
    """A name resolver (``IHostnameResolver``) giving fixed answers, in order."""

    def __init__(self, *hosts):
        self.hosts = hosts
        self.asked = []

    def resolveHostName(self, receiver, hostName, portNumber=0, addressTypes=None,
                        transportSemantics="TCP"):
        from twisted.internet.address import IPv4Address

        self.asked.append(hostName)
        receiver.resolutionBegan(None)
        for host in self.hosts:
            receiver.addressResolved(IPv4Address("TCP", host, portNumber))
        receiver.resolutionComplete()


class WithResolver:
    """The global reactor with another ``nameResolver``."""

    def __init__(self, resolver):
        self.nameResolver = resolver

    def __getattr__(self, name):
        return getattr(reactor, name)


@pytest_twisted.ensureDeferred
async def test_a_name_is_resolved_once_denied_answers_skipped_and_the_next_address_tried():
    from twisted_spark.models import Event, Webhook
    from twisted_spark.webhooks.outgoing import build_request
    from twisted_spark.webhooks.policy import NetworkPolicy
    from twisted_spark.webhooks.sender import AddressNotAllowed, HttpSender

    world = await HookCloud().start()
    # 169.254.169.254 is denied (never tried); nothing listens on 127.0.0.2 (refused).
    resolver = AnswersResolver("169.254.169.254", "127.0.0.2", "127.0.0.1")
    sender = HttpSender(WithResolver(resolver), NetworkPolicy(["loopback"]), timeout=10)
    port = world.target_port.getHost().port
    event = Event("e", "1", 60, 0.0, "api", False, "alice")
    try:
        answer = await sender.send(build_request(
            Webhook("h", "alice", "e", f"http://target.example:{port}/named"), event))
        assert answer.status == 200 and resolver.asked == ["target.example"]
        assert world.receiver.at("/named")[0].headers["host"] == f"target.example:{port}"
        only_denied = HttpSender(WithResolver(AnswersResolver("169.254.169.254")),
                                 NetworkPolicy(["loopback"]))
        with pytest.raises(AddressNotAllowed):
            await only_denied.send(build_request(
                Webhook("h", "alice", "e", "http://metadata.example/"), event))
        await only_denied.close()
    finally:
        await sender.close()
        await world.stop()
