"""The room's lanes as pure logic: given publications and a time, what one flush sends."""

from __future__ import annotations

import itertools
from collections import Counter

from liveroom.broker import Publication
from liveroom.room import Lanes, LocalRoom


def item(
    seq: int | None, item_type: str = "danmaku.message", priority: bool = False, by: str = "a"
) -> Publication:
    return Publication("r", seq, 0, item_type, f'{{"seq":{seq},"by":"{by}"}}'.encode(), priority)


async def test_the_cap_samples_fairly_and_priority_always_passes() -> None:
    room = LocalRoom("r", Lanes(normal_per_s=25.0))
    sent: list[Publication] = []
    seq = 0
    for tick in range(200):  # 10 s of 50 ms ticks, 100 normal items a tick from two senders
        for n in range(100):
            seq += 1
            room.put(item(seq, by="heavy" if n < 80 else "light"), 0.0)
        if tick % 10 == 0:
            seq += 1
            room.put(item(seq, "bench.priority", priority=True), 0.0)
        sent += room.take_pending(tick * 0.05)
    normal = [p for p in sent if not p.priority]
    assert 25 * 10 <= len(normal) <= 25 * 10 + 25  # a second's burst, then 25 a second
    assert len([p for p in sent if p.priority]) == 20  # every one of them
    senders = Counter(p.encoded.decode().split('"by":"')[1][:5] for p in normal)
    assert 0.65 < senders["heavy"] / len(normal) < 0.95  # sampled in proportion (80%)
    seqs = [p.seq for p in sent if p.seq is not None]
    assert len(seqs) == len(sent)
    assert seqs == sorted(seqs)  # the sample keeps the order
    assert room.sampled_out == 200 * 100 - len(normal)
    assert room.delivered_seq == seq


async def test_counters_keep_the_latest_value_at_most_twice_a_second() -> None:
    room = LocalRoom("r", Lanes(normal_per_s=0, counter_interval_s=0.5))
    sent: list[Publication] = []
    for tick in range(40):  # 2 s, the counter changing on every tick
        room.put(item(None, "room.online", by=str(tick)), 0.0)
        sent += room.take_pending(tick * 0.05)
    assert 4 <= len(sent) <= 5
    assert room.counters  # the latest value is still waiting for its slot
    room.put(item(1), 0.0)
    assert [p.seq for p in room.take_pending(100.0)] == [1, None]  # then it goes, after the items


async def test_no_cap_passes_everything() -> None:
    room = LocalRoom("r", Lanes(normal_per_s=0))
    for seq in range(1, 1001):
        room.put(item(seq), 0.0)
    assert len(room.take_pending(0.0)) == 1000 and room.sampled_out == 0


async def test_what_the_cap_leaves_out_is_said_as_seq_ranges() -> None:
    room = LocalRoom("r", Lanes(normal_per_s=2.0))
    for seq in range(1, 11):
        room.put(item(seq), 0.0)
    sent = [p.seq for p in room.take_pending(0.0)]  # two tokens at the start
    skipped = room.take_skipped()
    said = {seq for first, last in skipped for seq in range(first, last + 1)}
    assert len(sent) == 2 and said == set(range(1, 11)) - set(sent)
    assert all(a[1] + 1 < b[0] for a, b in itertools.pairwise(skipped))  # ranges, merged
    assert room.take_skipped() == []  # said once
    room.put(item(11, "room.online"), 0.0)  # a counter with a seq is a history item: kept in the lane
    room.put(item(12, priority=True), 0.0)
    assert [p.seq for p in room.take_pending(100.0)] == [11, 12]
