"""Asking a publisher again for lost packets (media/nacks.py): pure, on a fake clock."""

from __future__ import annotations

from types import SimpleNamespace

from liveroom.media.nacks import KEPT_BY_SENDER, REASK_S, ReaskingNacks

from liveroom.testing import FakeClock


def packet(sequence: int) -> SimpleNamespace:
    return SimpleNamespace(sequence_number=sequence & 0xFFFF)


def test_a_lost_packet_is_asked_for_again_until_it_comes() -> None:
    clock = FakeClock()
    nacks = ReaskingNacks(clock.monotonic)
    assert not nacks.add(packet(100)) and not nacks.add(packet(101))
    assert nacks.add(packet(103)) and nacks.missing == {102}  # the gap shows: asked at once
    clock.advance(REASK_S / 2)
    assert not nacks.add(packet(104))  # too soon to ask again
    clock.advance(REASK_S)
    assert nacks.add(packet(105)) and nacks.missing == {102}  # its retransmission was lost too
    assert not nacks.add(packet(102))  # it came
    clock.advance(REASK_S)
    assert not nacks.add(packet(106))


def test_holes_the_sender_no_longer_keeps_are_forgotten_across_the_wrap() -> None:
    clock = FakeClock()
    nacks = ReaskingNacks(clock.monotonic)
    nacks.add(packet(0xFFF0))
    assert nacks.add(packet(0xFFF2)) and nacks.missing == {0xFFF1}
    clock.advance(REASK_S * 1.01)
    assert nacks.add(packet(5)) and nacks.missing == {0xFFF1, *range(0xFFF3, 0x10000), *range(5)}
    for sequence in range(6, 6 + KEPT_BY_SENDER):  # none lost since, and the sender moved on
        nacks.add(packet(sequence))
    clock.advance(REASK_S * 1.01)
    assert not nacks.add(packet(6 + KEPT_BY_SENDER))  # the old holes cannot be filled: not asked
