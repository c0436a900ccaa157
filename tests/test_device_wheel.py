"""TimerWheel: the device keep-alive deadlines behind one reactor timer."""

from __future__ import annotations

from twisted.internet.task import Clock

from twisted_spark.device.wheel import TimerWheel


def wheel(resolution=0.5):
    clock = Clock()
    return clock, TimerWheel(clock, resolution)


def test_many_deadlines_one_reactor_timer_each_fires_at_the_end_of_its_slot():
    clock, w = wheel()
    fired = []
    for n in range(100):
        w.call_later(10 + n * 0.01, lambda n=n: fired.append((n, clock.seconds())))
    assert len(clock.getDelayedCalls()) == 1 and len(w) == 100
    clock.advance(9.99)
    assert fired == []
    clock.advance(0.01)  # 10.0: the deadlines of the slot (9.5, 10.0]
    assert [n for n, _ in fired] == [0]
    clock.advance(0.5)  # 10.5: the slot (10.0, 10.5]
    assert len(fired) == 51 and all(at - 0.5 <= 10 + n * 0.01 <= at for n, at in fired)
    clock.advance(0.5)
    assert len(fired) == 100 and len(w) == 0
    assert clock.getDelayedCalls() == []


def test_reset_postpones_and_reuses_the_entry():
    clock, w = wheel()
    fired = []
    entry = w.call_later(15, lambda: fired.append(clock.seconds()))
    for _ in range(5):
        clock.advance(14)
        entry.reset(15)
    assert fired == [] and entry.active() and entry.getTime() == clock.seconds() + 15
    clock.advance(15)
    assert fired == [clock.seconds()] and not entry.active()
    entry.reset(1)  # re-armed after firing
    clock.advance(1)
    assert len(fired) == 2


def test_cancel_leaves_no_reactor_timer():
    clock, w = wheel()
    a = w.call_later(5, lambda: 1 / 0)
    b = w.call_later(7, lambda: 1 / 0)
    a.cancel()
    b.cancel()
    assert not a.active() and clock.getDelayedCalls() == []
    clock.advance(10)


def test_an_earlier_deadline_added_later_is_not_missed():
    clock, w = wheel()
    fired = []
    w.call_later(30, lambda: fired.append("late"))
    w.call_later(2, lambda: fired.append("early"))
    clock.advance(2)
    assert fired == ["early"]
    clock.advance(28)
    assert fired == ["early", "late"]


def test_a_callback_may_re_arm_itself_and_cancel_another():
    clock, w = wheel()
    fired = []
    other = None

    def first():
        fired.append("first")
        other.cancel()
        me.reset(3)

    me = w.call_later(1, first)
    other = w.call_later(1, lambda: fired.append("other"))
    clock.advance(1)
    assert fired == ["first"]
    clock.advance(3)
    assert fired == ["first", "first"]


def test_a_full_slot_runs_in_batches_with_the_reactor_in_between():
    """Hundreds of deadlines in one slot do not hold the reactor for all of them."""
    clock = Clock()
    w = TimerWheel(clock, 0.5, batch=32)
    fired = []

    def entry(n):
        fired.append(n)
        if n == 0:  # something else the reactor has to do, scheduled meanwhile
            clock.callLater(0, fired.append, "reactor")

    for n in range(100):
        w.call_later(10, lambda n=n: entry(n))
    clock.advance(10)
    assert fired.index("reactor") == 32
    assert [n for n in fired if n != "reactor"] == list(range(100))
    assert len(w) == 0 and clock.getDelayedCalls() == []
