"""Property tests (hypothesis) of the visibility rules (``events/visibility.py``).

The rules are small predicates; these check the laws the module docstring
states for every event and every caller, not just the examples of
``test_events_visibility.py``.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from twisted_spark.events.visibility import (
    API_COREID,
    device_rule,
    device_subscription_accepts,
    firehose_rule,
    is_system,
    my_devices_rule,
)
from twisted_spark.models import Event

settings.register_profile("suite", deadline=None, max_examples=200)
settings.load_profile("suite")

USERS = ("alice", "bob", "carol")
DEVICES = ("d1", "d2", "d3")
users = st.sampled_from(USERS)
owners = st.one_of(st.none(), users)
names = st.one_of(st.sampled_from(["temp", "spark/status", "SPARK-x", "sparky", "t/x"]),
                  st.text(max_size=10))


@st.composite
def events(draw):
    return Event(
        name=draw(names),
        data=None,
        ttl=60,
        published_at=0.0,
        coreid=draw(st.sampled_from((*DEVICES, API_COREID))),
        public=draw(st.booleans()),
        owner=draw(owners),
    )


@given(events(), users)
def test_administrators_see_everything_on_the_user_streams(event, user):
    assert firehose_rule(user, is_admin=True)(event)
    assert my_devices_rule(user, is_admin=True)(event)


@given(events(), users, st.sampled_from(DEVICES))
def test_an_administrators_device_stream_is_exactly_that_device(event, user, device):
    assert device_rule(device, user, is_admin=True)(event) == (event.coreid == device)


@given(events(), users)
def test_my_devices_is_a_part_of_the_firehose(event, user):
    if my_devices_rule(user)(event):
        assert firehose_rule(user)(event)


@given(events(), users, st.sampled_from(DEVICES))
def test_a_device_stream_is_the_firehose_filtered_by_device(event, user, device):
    assert device_rule(device, user)(event) == (
        event.coreid == device and firehose_rule(user)(event))


@given(events(), users)
def test_no_user_sees_an_unowned_event_or_another_users_private_one(event, user):
    visible = firehose_rule(user)(event) or my_devices_rule(user)(event) or any(
        device_rule(device, user)(event) for device in DEVICES)
    if event.owner is None or (not event.public and event.owner != user):
        assert not visible


@given(events(), st.sampled_from(DEVICES), owners, st.booleans(),
       st.one_of(st.none(), st.sampled_from(DEVICES)))
def test_device_subscriptions_never_get_system_events(event, subscriber, owner, mine, only):
    if is_system(event.name):
        assert not device_subscription_accepts(event, subscriber, owner, mine, only)


@given(events(), st.sampled_from(DEVICES), owners, st.booleans(),
       st.one_of(st.none(), st.sampled_from(DEVICES)))
def test_a_device_subscription_sees_its_own_events_or_what_its_owner_may(
        event, subscriber, owner, mine, only):
    accepted = device_subscription_accepts(event, subscriber, owner, mine, only)
    if not accepted:
        return
    assert only is None or event.coreid == only
    own = event.coreid == subscriber
    same_owner = owner is not None and event.owner == owner
    assert own or (event.owner is not None and (event.public or same_owner))
    if mine:
        assert own or same_owner


@given(events(), st.sampled_from(DEVICES), owners)
def test_a_device_always_sees_its_own_non_system_events(event, subscriber, owner):
    event = Event(event.name, None, 60, 0.0, subscriber, event.public, event.owner)
    if not is_system(event.name):
        assert device_subscription_accepts(event, subscriber, owner)
        assert device_subscription_accepts(event, subscriber, owner, my_devices=True)
        assert device_subscription_accepts(event, subscriber, owner, device_id=subscriber)


@given(st.text(max_size=12))
def test_system_names_are_the_spark_prefix_in_any_case(name):
    assert is_system(name) == name.lower().startswith("spark")
