"""media/admission.py's counts, pure: no peer connection, time passed in."""

from __future__ import annotations

import pytest
from liveroom.media.admission import Admission, Connecting, Counted, TooManySessions


def test_the_cap_is_per_slot_of_a_room() -> None:
    admission = Admission(per_room=2, pending=10)
    held = [Counted("fan", "r", "host", True), Counted("fan", "r", "1", True)]
    admission.check("fan", "r", "2", held)  # a third member of the stage: allowed
    admission.check("fan", "r", "1", held)  # a second session of slot 1: allowed
    with pytest.raises(TooManySessions):
        admission.check("fan", "r", "1", [*held, Counted("fan", "r", "1", True)])
    admission.check("other", "r", "1", [*held, Counted("fan", "r", "1", True)])  # someone else's


def test_connecting_sessions_are_counted_until_reported_or_timed_out() -> None:
    connecting = Connecting(limit=2, timeout_s=10.0)
    first = connecting.admit("fan", 0.0)
    second = connecting.admit("fan", 0.0)
    with pytest.raises(TooManySessions):
        connecting.admit("fan", 0.0)  # two reserved while their offers are answered
    connecting.admit("someone-else", 0.0)
    connecting.opened(first, "0.a", 1.0)
    connecting.failed(second)  # the process refused it: the place is given back
    third = connecting.admit("fan", 1.0)
    connecting.opened(third, "1.b", 1.0)
    with pytest.raises(TooManySessions):
        connecting.admit("fan", 2.0)
    connecting.reported("0.a", 2.0)  # connected
    connecting.opened(connecting.admit("fan", 2.0), "0.c", 2.0)
    with pytest.raises(TooManySessions):
        connecting.admit("fan", 10.5)
    connecting.admit("fan", 11.0)  # "1.b" was never reported: its place lapsed with the timeout


def test_a_report_before_the_answer_and_a_worker_that_exits() -> None:
    connecting = Connecting(limit=1, timeout_s=10.0)
    place = connecting.admit("fan", 0.0)
    connecting.reported("0.a", 0.1)  # connected before the pool had the worker's answer
    connecting.opened(place, "0.a", 0.2)
    connecting.opened(connecting.admit("fan", 0.3), "1.b", 0.3)
    with pytest.raises(TooManySessions):
        connecting.admit("fan", 0.4)
    connecting.settled_all("1.")  # worker 1 exited: its sessions went with it
    assert connecting.count("fan") == 0
