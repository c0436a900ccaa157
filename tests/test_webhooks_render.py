"""Webhook templates, the outgoing request and the outcome events (API.md §6), pure."""

from __future__ import annotations

import json
from urllib.parse import parse_qsl, urlsplit

import pytest

from twisted_spark.models import Event, Webhook
from twisted_spark.webhooks import outcome
from twisted_spark.webhooks.outgoing import USER_AGENT, build_request
from twisted_spark.webhooks.templates import TemplateError, event_context, render

CORE = "53ff73065067544816300187"
DATA = json.dumps({"a": {"b": 1}, "list": [{"v": True}, {"v": False}], "n": None, "f": 1.5,
                   "h": "<&'\">", "PARTICLE_EVENT_NAME": "not me"})


def event(name="temp", data=DATA, coreid=CORE):
    return Event(name, data, 60, 1700000000.25, coreid, True, "alice")


def hook(request_type="POST", url="http://10.0.0.5/in", **definition):
    return Webhook("h1", "alice", "temp", url, request_type, definition=definition)


@pytest.mark.parametrize("template, expected", [
    ("{{a.b}}", "1"),
    ("{{list.0.v}}/{{list.1.v}}", "true/false"),
    ("{{#list}}[{{v}}]{{/list}}", "[true][false]"),
    ("{{#list.1.v}}yes{{/list.1.v}}{{^list.1.v}}no{{/list.1.v}}", "no"),
    ("<{{n}}>{{^n}}empty{{/n}}<{{missing}}>", "<>empty<>"),
    ("{{f}}", "1.5"),
    ("{{h}}", "&lt;&amp;&#x27;&quot;&gt;"),
    ("{{{h}}}|{{& h}}", "<&'\">|<&'\">"),
    ("{{PARTICLE_EVENT_NAME}}={{SPARK_EVENT_NAME}}", "temp=temp"),
    ("{{PARTICLE_DEVICE_ID}} {{SPARK_CORE_ID}}", f"{CORE} {CORE}"),
    ("{{PARTICLE_PUBLISHED_AT}}", "2023-11-14T22:13:20.250Z"),
    ("{{> partial}}", ""),
])
def test_templates_follow_the_hosted_rules(template, expected):
    assert render(template, event_context(event())) == expected


def test_event_value_is_empty_without_data_and_non_object_data_adds_nothing():
    assert render("<{{PARTICLE_EVENT_VALUE}}>", event_context(event(data=None))) == "<>"
    context = event_context(event(data="[1,2]"))
    assert render("{{PARTICLE_EVENT_VALUE}}{{0}}", context) == "[1,2]"


def test_default_request_is_a_form_with_the_four_fields():
    request = build_request(hook(), event(data="21.5"))
    assert request.method == "POST"
    assert request.headers == {"User-Agent": USER_AGENT,
                               "Content-Type": "application/x-www-form-urlencoded"}
    assert parse_qsl(request.body.decode(), keep_blank_values=True) == [
        ("event", "temp"), ("data", "21.5"), ("published_at", "2023-11-14T22:13:20.250Z"),
        ("coreid", CORE)]
    assert request.response_topic == "hook-response/temp"
    assert request.error_topic == "hook-error/temp"


def test_form_fields_replace_defaults_and_empty_data_is_empty():
    request = build_request(hook(form={"data": "x{{PARTICLE_EVENT_NAME}}", "k": "v"}),
                            event(data=None))
    assert dict(parse_qsl(request.body.decode(), keep_blank_values=True))["data"] == "xtemp"
    request = build_request(hook(), event(data=None))
    assert dict(parse_qsl(request.body.decode(), keep_blank_values=True))["data"] == ""


def test_get_puts_query_then_defaults_then_form_in_the_url_and_sends_no_body():
    request = build_request(
        hook("GET", url="http://10.0.0.5/p/{{a.b}}?x=1", query={"q": "{{f}}"},
             form={"extra": "e"}), event())
    parts = urlsplit(request.url)
    assert parts.path == "/p/1"
    assert [k for k, _ in parse_qsl(parts.query)] == [
        "x", "q", "event", "data", "published_at", "coreid", "extra"]
    assert request.body is None


def test_json_object_is_merged_over_the_defaults_and_string_must_give_json():
    request = build_request(hook(json={"data": "{{a.b}}", "n": 5, "{{h}}": True}),
                            event())
    body = json.loads(request.body)
    assert body["data"] == "1" and body["n"] == 5 and body["&lt;&amp;&#x27;&quot;&gt;"] is True
    assert body["event"] == "temp" and body["coreid"] == CORE
    assert request.headers["Content-Type"] == "application/json"
    request = build_request(hook(json="[{{a.b}}, {{{list}}}]"), event())
    assert json.loads(request.body) == [1, [{"v": True}, {"v": False}]]
    assert json.loads(build_request(hook(json={}), event(data=None)).body)["data"] is None
    with pytest.raises(TemplateError):
        build_request(hook(json="{{h}} is not json"), event())


def test_body_is_sent_as_is_without_defaults_or_content_type():
    request = build_request(hook(body="v={{{h}}}"), event())
    assert request.body == b"v=<&'\">"
    assert "Content-Type" not in request.headers


def test_headers_auth_and_server_only_headers():
    request = build_request(hook(
        headers={"X-Name": "{{PARTICLE_EVENT_NAME}}", "user-agent": "mine", "Host": "evil",
                 "Content-Length": "1", "Authorization": "Bearer x"},
        auth={"username": "u{{a.b}}", "password": "p"}), event())
    assert request.headers["X-Name"] == "temp"
    assert request.headers["user-agent"] == "mine" and "User-Agent" not in request.headers
    assert "Host" not in request.headers and "Content-Length" not in request.headers
    assert request.headers["Authorization"] == "Basic dTE6cA=="  # u1:p


@pytest.mark.parametrize("headers", [{"X-A": "{{{v}}}"}, {"X-{{{v}}}": "1"}])
def test_a_header_with_a_line_break_fails_the_delivery(headers):
    with pytest.raises(TemplateError):
        build_request(hook(headers=headers), event(data=json.dumps({"v": "a\r\nInjected: 1"})))


def test_no_defaults_without_form_sends_an_empty_body():
    request = build_request(Webhook("h", "alice", "t", "http://10.0.0.5/", no_defaults=True),
                            event())
    assert request.body == b"" and "Content-Type" not in request.headers


def test_custom_topics_are_rendered():
    request = build_request(hook(responseTopic="{{PARTICLE_DEVICE_ID}}/answer",
                                 errorResponseTopic="oops/{{a.b}}"), event())
    assert (request.response_topic, request.error_topic) == (f"{CORE}/answer", "oops/1")
    assert outcome.error_topic(hook(errorResponseTopic="oops/{{a.b}}"), event()) == "oops/1"


def test_parts_are_512_bytes_and_never_split_a_character():
    assert outcome.parts("") == [None]
    assert outcome.parts("x" * 1025) == ["x" * 512, "x" * 512, "x"]
    text = "a" + "é" * 600  # 1201 bytes; byte 512 falls inside an "é"
    chunks = outcome.parts(text)
    assert "".join(chunks) == text
    assert [len(c.encode()) for c in chunks] == [511, 512, 178]


def test_response_template_renders_against_a_json_body_only():
    context = event_context(event())
    assert outcome.response_text(b'{"t": 21}', "T={{t}} {{PARTICLE_EVENT_NAME}}",
                                 context) == "T=21 temp"
    assert outcome.response_text(b'{"t": 21}', {"temp": "{{t}}"}, context) == '{"temp":"21"}'
    assert outcome.response_text(b"not json \xff", "{{t}}", context) == "not json \ufffd"
    assert outcome.response_text(b"plain", None, context) == "plain"


def test_json_nested_too_deeply_is_text_not_variables():
    """Found by fuzz/targets/webhooks.py: a webhook server's answer (or event data)
    nested a few hundred levels made to_context raise RecursionError, which the
    dispatcher logged as an unexpected delivery failure."""
    deep = '{"a":' * 600 + "1" + "}" * 600
    context = event_context(event(data=deep))
    assert render("<{{a}}>", context) == "<>"
    assert context["PARTICLE_EVENT_VALUE"] == deep
    assert outcome.response_text(deep.encode(), "T={{a}}", event_context(event())) == deep
    shallow = '{"a":' * 10 + "1" + "}" * 10
    assert outcome.response_text(shallow.encode(), "{{#a}}x{{/a}}", event_context(event())) == "x"


def test_error_data_is_at_most_255_bytes():
    assert len(outcome.clip("é" * 200).encode()) <= 255
    event_ = outcome.outcome_event("hook-sent/x", None, "alice", 5.0)
    assert (event_.coreid, event_.public, event_.owner, event_.ttl) == (
        "particle-internal", False, "alice", 60)


def test_a_url_that_renders_to_another_host_or_nonsense_is_a_template_error():
    data = json.dumps({"p": "x]y"})
    with pytest.raises(TemplateError):
        build_request(hook(url="http://[::1{{{p}}}/"), event(data=data))
    # rendered values stay in the path and query of the same host
    request = build_request(hook(url="http://10.0.0.5/{{{p}}}?q={{{p}}}#f"), event(data=data))
    assert request.host == "10.0.0.5"


def test_long_templates_render_without_being_cached():
    from twisted_spark.webhooks import templates

    long = "x" * (templates.CACHED_TEMPLATE + 1) + "{{PARTICLE_EVENT_NAME}}"
    before = templates._cached.cache_info().currsize
    assert render(long, event_context(event())).endswith("xtemp")
    assert templates._cached.cache_info().currsize == before
