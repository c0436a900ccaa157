"""URL matching with remembered answers (twisted_spark.api.routing)."""

import pytest
from api_fakes import Harness
from klein import Klein
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import RequestRedirect, Rule

from twisted_spark.api.routing import MatchCache, use_match_cache


def make(size=16):
    cache = MatchCache(size=size)
    cache.add(Rule("/v1/devices/<device>/<name>", endpoint="call", methods=["POST"]))
    cache.add(Rule("/v1/devices/", endpoint="list", methods=["GET"]))
    return cache


def match(cache, path, method="POST"):
    return cache.bind("localhost", path_info=path, default_method=method).match(return_rule=True)


def test_answers_like_werkzeug_and_remembers():
    cache = make()
    rule, args = match(cache, "/v1/devices/abc/brew")
    assert (rule.endpoint, args) == ("call", {"device": "abc", "name": "brew"})
    args["device"] = "changed by the caller"
    assert list(cache.answers.values())[0][1]["device"] == "abc"
    again, args = match(cache, "/v1/devices/abc/brew")
    assert again is rule and args == {"device": "abc", "name": "brew"}
    assert len(cache.answers) == 1
    endpoint, _ = cache.bind("localhost", path_info="/v1/devices/abc/brew",
                             default_method="POST").match()
    assert endpoint == "call"


def test_method_and_path_are_part_of_the_key():
    cache = make()
    assert match(cache, "/v1/devices/a/b")[1]["device"] == "a"
    assert match(cache, "/v1/devices/x/b")[1]["device"] == "x"
    with pytest.raises(MethodNotAllowed):
        match(cache, "/v1/devices/a/b", "GET")


def test_failures_are_not_remembered():
    cache = make()
    for _ in range(2):
        with pytest.raises(NotFound):
            match(cache, "/nowhere")
        with pytest.raises(RequestRedirect):
            match(cache, "/v1/devices", "GET")
    assert cache.answers == {}


def test_bounded_and_emptied_by_a_new_rule():
    cache = make(size=3)
    for n in range(3):
        match(cache, f"/v1/devices/d{n}/f")
    assert len(cache.answers) == 3
    match(cache, "/v1/devices/d9/f")
    assert len(cache.answers) == 1
    cache.add(Rule("/v1/other", endpoint="other"))
    assert cache.answers == {}
    assert match(cache, "/v1/other", "GET")[0].endpoint == "other"


def test_explicit_arguments_bypass_the_cache():
    cache = make()
    adapter = cache.bind("localhost", path_info="/v1/devices/a/b", default_method="POST")
    assert adapter.match("/v1/devices/", "GET")[0] == "list"
    assert cache.answers == {}
    assert adapter.build("list") == "/v1/devices/"  # the rest is the wrapped adapter


def test_use_match_cache_only_before_routes():
    app = Klein()
    use_match_cache(app)
    assert isinstance(app.url_map, MatchCache)
    late = Klein()
    late.route("/x")(lambda request: b"")
    with pytest.raises(ValueError, match="before adding routes"):
        use_match_cache(late)


def test_policy_of_a_route_added_later_is_found():
    api = Harness().api
    assert api.policy_for(b"POST", b"/v1/late?x=1") is None

    def register(api):
        @api.route("/v1/late", methods=["POST"], body_limit=123)
        async def late(call):
            return {}

    api.add_routes(register)
    assert api.policy_for(b"POST", b"/v1/late?y=2").limit == 123
