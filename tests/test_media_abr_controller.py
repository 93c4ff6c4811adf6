"""The per-viewer rung controller, driven by a fake clock: no network, no sleeps."""

from __future__ import annotations

import pytest
from liveroom.media.abr import AbrPolicy, LinkReport, RungController, parse_ladder

from liveroom.config import MediaConfig
from liveroom.testing import FakeClock

LADDER = parse_ladder(MediaConfig().abr_ladder)


def run(controller: RungController, clock: FakeClock, report: LinkReport, seconds: float) -> list[str]:
    seen = []
    for _ in range(int(seconds / 0.5)):
        seen.append(controller.update(report, clock.monotonic()).name)
        clock.advance(0.5)
    return seen


def test_the_default_ladder() -> None:
    assert [(r.name, r.height, r.bitrate_bps) for r in LADDER] == [
        ("720p", 720, 2_500_000),
        ("480p", 480, 1_200_000),
        ("360p", 360, 700_000),
        ("180p", 180, 250_000),
    ]
    with pytest.raises(ValueError):
        parse_ladder(("720:fast",))


def test_a_narrow_link_steps_down_at_once_to_the_rung_that_fits() -> None:
    controller, clock = RungController(LADDER, AbrPolicy()), FakeClock()
    # a low estimate that is still climbing (after a switch up) is no congestion...
    assert controller.update(LinkReport(900_000, sent_bps=2_400_000), clock.monotonic()).name == "720p"
    # ...a drop to below what we send is: down to the rung it affords
    assert controller.update(LinkReport(850_000, sent_bps=2_400_000), clock.monotonic()).name == "360p"
    clock.advance(1.0)
    assert controller.update(LinkReport(100_000, sent_bps=650_000), clock.monotonic()).name == "180p"
    # the receiver's first fall lands at about what we send (85 % of a throughput that a
    # keyframe can put above our average): congestion already, before its queue is full
    controller = RungController(LADDER, AbrPolicy())
    controller.update(LinkReport(3_000_000, sent_bps=2_300_000), clock.monotonic())
    assert controller.update(LinkReport(2_400_000, sent_bps=2_300_000), clock.monotonic()).name == "480p"
    # a drop that still covers what we send is no congestion, whatever the rung's nominal bitrate
    controller = RungController(LADDER, AbrPolicy())
    controller.update(LinkReport(400_000, sent_bps=250_000), clock.monotonic())
    assert controller.update(LinkReport(300_000, sent_bps=250_000), clock.monotonic()).name == "720p"
    # without send figures the estimate is taken as the capacity
    assert controller.update(LinkReport(900_000), clock.monotonic()).name == "360p"


def test_stepping_up_is_a_trial_kept_only_if_the_link_stays_clean() -> None:
    policy = AbrPolicy(up_hold_s=4.0, trial_s=3.0, max_backoff_s=16.0)
    controller, clock = RungController(LADDER, policy, start=3), FakeClock()
    clean = LinkReport(380_000, sent_bps=250_000)  # aiortc's estimate: ~1.5x what it receives
    seen = run(controller, clock, clean, 4.5)
    assert seen[:8] == ["180p"] * 8 and seen[-1] == "360p" and controller.trying
    seen = run(controller, clock, LinkReport(700_000, sent_bps=650_000), 3.5)  # clean trial: kept
    assert set(seen) == {"360p"} and not controller.trying and controller.backoff_s == 4.0
    seen = run(controller, clock, LinkReport(1_000_000, sent_bps=650_000), 4.5)
    assert seen[-1] == "480p" and controller.trying
    # the link cannot carry 480p: its estimate drops below what we send -> back, wait twice as long
    congested = LinkReport(800_000, sent_bps=1_100_000)  # from 1 Mbps: a drop
    assert controller.update(congested, clock.monotonic()).name == "360p" and controller.backoff_s == 8.0
    seen = run(controller, clock, LinkReport(1_000_000, sent_bps=650_000), 8.5)
    assert seen[:16] == ["360p"] * 16 and seen[-1] == "480p"
    assert controller.update(congested, clock.monotonic()).name == "360p" and controller.backoff_s == 16.0
    # the limit is lifted: the next trial (after the backoff) sticks, and the wait resets
    seen = run(controller, clock, LinkReport(1_600_000, sent_bps=1_100_000), 20)
    assert "480p" in seen and controller.backoff_s == 4.0
    assert run(controller, clock, LinkReport(3_000_000, sent_bps=2_300_000), 20)[-1] == "720p"


def test_loss_and_round_trip_time_step_down_one_rung_per_interval() -> None:
    controller, clock = RungController(LADDER, AbrPolicy(down_every_s=1.0)), FakeClock()
    seen = run(controller, clock, LinkReport(10_000_000, loss=0.2), 2)
    assert seen == ["480p", "480p", "360p", "360p"]
    controller2 = RungController(LADDER, AbrPolicy())
    assert controller2.update(LinkReport(None, rtt_s=0.8), clock.monotonic()).name == "480p"
    # a lossy link does not climb back
    assert "720p" not in run(controller, clock, LinkReport(10_000_000, loss=0.05), 20)


def test_a_pinned_rung_is_kept_whatever_the_link() -> None:
    controller, clock = RungController(LADDER, AbrPolicy()), FakeClock()
    controller.pin("480p")
    assert set(run(controller, clock, LinkReport(100_000, loss=0.5), 5)) == {"480p"}
    controller.pin(None)
    assert controller.update(LinkReport(100_000), clock.monotonic()).name == "180p"
    with pytest.raises(ValueError):
        controller.pin("4k")


def test_a_fall_of_the_estimate_just_after_a_move_is_the_moves_own_keyframe() -> None:
    controller, clock = RungController(LADDER, AbrPolicy(settle_s=0.5), start=1), FakeClock()
    controller.update(LinkReport(2_000_000, sent_bps=1_100_000), clock.monotonic())
    controller.moved(clock.monotonic())  # the rung's keyframe went out: a burst
    fell = LinkReport(1_000_000, sent_bps=1_100_000)
    assert controller.update(fell, clock.monotonic() + 0.2).name == "480p"  # the burst's own
    assert controller.update(LinkReport(1_000_000, loss=0.2), clock.monotonic() + 0.3).name == "360p"
    controller = RungController(LADDER, AbrPolicy(settle_s=0.5), start=1)
    controller.update(LinkReport(2_000_000, sent_bps=1_100_000), clock.monotonic())
    controller.moved(clock.monotonic())
    clock.advance(0.6)  # settled: a fall now is the link's
    assert controller.update(fell, clock.monotonic()).name == "360p"
