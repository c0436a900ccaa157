"""Webhook definitions (POST /v1/webhooks bodies) and the target network policy."""

from __future__ import annotations

import pytest

from twisted_spark.webhooks.definition import InvalidWebhook, parse_definition
from twisted_spark.webhooks.policy import NetworkPolicy, parse_networks

POLICY = NetworkPolicy()

# particle-cli's hook.json template: nulls, a "_" comment, and mydevices.
CLI_TEMPLATE = {
    "_": "comment", "event": "temp", "url": "https://example.com/in", "deviceID": None,
    "requestType": "post", "mydevices": True, "json": None, "form": None, "query": None,
    "headers": None, "auth": None, "responseTemplate": None, "noDefaults": None,
    "rejectUnauthorized": "false",
}


def test_particle_cli_template_nulls_count_as_absent():
    draft = parse_definition(CLI_TEMPLATE, POLICY)
    assert (draft.event, draft.url, draft.request_type) == ("temp", "https://example.com/in",
                                                            "POST")
    assert draft.definition == {} and draft.device is None
    assert (draft.no_defaults, draft.reject_unauthorized) == (False, False)


def test_form_objects_come_as_json_text_or_brackets():
    draft = parse_definition({
        "eventName": "t", "url": "http://h/", "headers": '{"X-A": 1}', "query[q]": "{{x}}",
        "auth[user]": "u", "auth[pass]": "p", "json": "not an object {{x}}",
        "deviceid": "kitchen"}, POLICY, form=True)
    assert draft.definition == {
        "headers": {"X-A": "1"}, "query": {"q": "{{x}}"},
        "auth": {"username": "u", "password": "p"}, "json": "not an object {{x}}"}
    assert draft.device == "kitchen"


def test_scalars_become_text_and_request_type_is_upper_case():
    draft = parse_definition({"event": "t", "url": "http://h/", "requestType": "get",
                              "form": {"n": 1.5, "b": False, "s": "x"}, "noDefaults": 1},
                             POLICY)
    assert draft.request_type == "GET" and draft.no_defaults is True
    assert draft.definition["form"] == {"n": "1.5", "b": "false", "s": "x"}


@pytest.mark.parametrize("fields, problem", [
    ({"url": "http://h/"}, "event is required."),
    ({"event": "t"}, "url is required."),
    ({"event": "x" * 64, "url": "http://h/"}, "event must be at most 63"),
    ({"event": "t", "url": "ftp://h/"}, "absolute http:// or https://"),
    ({"event": "t", "url": "/relative"}, "absolute http:// or https://"),
    ({"event": "t", "url": "http://{{host}}/"}, "template in its host"),
    ({"event": "t", "url": "http://h:{{port}}/"}, "template in its host"),
    ({"event": "t", "url": "http://h/" + "x" * 2048}, "at most 2048"),
    ({"event": "t", "url": "http://u:p@h/"}, "credentials"),
    ({"event": "t", "url": "http://169.254.169.254/latest"}, "does not send webhooks to"),
    ({"event": "t", "url": "http://127.0.0.1:8080/"}, "does not send webhooks to"),
    ({"event": "t", "url": "http://[::ffff:169.254.1.1]/"}, "does not send webhooks to"),
    ({"event": "t", "url": "http://h/", "requestType": "PATCH"}, "requestType"),
    ({"event": "t", "url": "http://h/", "json": {}, "form": {"a": "b"}}, "Only one of"),
    ({"event": "t", "url": "http://h/", "headers": "x"}, "headers must be an object"),
    ({"event": "t", "url": "http://h/", "headers": {"a": {"b": 1}}}, "headers.a must be"),
    ({"event": "t", "url": "http://h/", "auth": {"password": "p"}}, "auth needs a username"),
    ({"event": "t", "url": "http://h/", "json": [1]}, "json must be an object or a string"),
    ({"event": "t", "url": "http://h/", "noDefaults": "maybe"}, "noDefaults must be"),
    ({"event": "t", "url": "http://h/", "name": "n" * 256}, "name must be at most 255"),
])
def test_invalid_definitions_say_what_is_wrong(fields, problem):
    with pytest.raises(InvalidWebhook) as caught:
        parse_definition(fields, POLICY)
    assert any(problem in sentence for sentence in caught.value.errors), caught.value.errors
    assert str(caught.value) == caught.value.errors[0]


@pytest.mark.parametrize("address, allowed", [
    ("8.8.8.8", True), ("10.1.2.3", True), ("192.168.1.10", True), ("172.16.0.1", True),
    ("100.64.0.1", True), ("fd00::1", True), ("2001:db8::1", True),
    ("127.0.0.1", False), ("127.8.9.10", False), ("::1", False),
    ("169.254.169.254", False), ("fe80::1", False), ("::ffff:127.0.0.1", False),
    ("64:ff9b::a9fe:a9fe", False), ("0.0.0.0", False), ("::", False), ("224.0.0.1", False),
    ("ff02::1", False), ("255.255.255.255", False), ("not an address", False),
])
def test_default_policy(address, allowed):
    assert NetworkPolicy().allows(address) is allowed


def test_allow_lifts_default_denials_and_wins_over_deny():
    policy = NetworkPolicy(allow=["loopback", "192.168.1.10/32"], deny=["private"])
    assert policy.allows("127.0.0.1") and policy.allows("::1")
    assert policy.allows("192.168.1.10") and not policy.allows("192.168.1.11")
    assert not policy.allows("10.0.0.1") and not policy.allows("169.254.169.254")
    assert NetworkPolicy(allow=["link-local"]).allows("169.254.169.254")
    assert not NetworkPolicy(allow=["0.0.0.0/0"]).allows("0.0.0.0")  # always denied


def test_bad_policy_entries_are_named():
    with pytest.raises(ValueError, match="'private' is neither"):
        parse_networks(["private"], {"loopback": ()})
