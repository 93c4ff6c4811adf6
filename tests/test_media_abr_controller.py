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
    assert controller.update(LinkReport(900_000), clock.monotonic()).name == "360p"
    assert controller.update(LinkReport(100_000), clock.monotonic()).name == "180p"  # nothing fits


def test_stepping_up_waits_for_room_to_spare_held_for_a_while() -> None:
    controller, clock = RungController(LADDER, AbrPolicy(up_hold_s=4.0), start=3), FakeClock()
    seen = run(controller, clock, LinkReport(1_000_000), 10)  # 360p needs <= 800 kbps at 0.8
    assert seen[:8] == ["180p"] * 8 and seen[-1] == "360p" and "480p" not in seen
    # 1.2 Mbps fits at 0.95 of 1.3 Mbps but not within 0.8: stay (no oscillation at the edge)
    assert set(run(controller, clock, LinkReport(1_300_000), 20)) == {"360p"}
    assert run(controller, clock, LinkReport(10_000_000), 20)[-1] == "720p"  # one rung per hold


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
