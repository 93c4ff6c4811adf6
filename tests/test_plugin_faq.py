"""The FAQ bot: its rules without a loop, on the harness, then over HTTP and Socket.IO."""

# ruff: noqa: RUF001 (full-width letters and punctuation are what the normalising is for)

from __future__ import annotations

from pathlib import Path
from typing import Any

from liveroom.plugins.faq_rules import FaqIndex, Unanswered, is_question, normalize
from plugin_support import api, room_name
from support import ServerProcess, Viewer

from liveroom.testing import HarnessConnection, NodeHarness

SHIP_ZH = "什么时候发货？"
SHIP_EN = "When will my order ship?"
ANSWER_ZH = "付款后48小时内发货"
ANSWER_EN = "Within 48 hours of payment."


def index() -> FaqIndex:
    faq = FaqIndex(threshold=70, repeat_interval_ms=60_000)
    faq.apply({"op": "set", "id": "ship", "questions": [SHIP_ZH, SHIP_EN], "answer": ANSWER_EN})
    faq.apply({"op": "set", "id": "coupon", "questions": ["怎么使用优惠券"], "answer": "下单时选择"})
    return faq


def test_normalising_folds_width_case_and_punctuation_and_splits_chinese() -> None:
    assert normalize("ＷＨＥＮ  will my order ship？！") == "when will my order ship"
    assert normalize("请问，什么时候发货呀？") == "什 么 时 候 发 货"
    assert normalize("Is there a CODE?!") == "is there code"
    assert is_question("运费多少") and is_question("how much") and is_question("price?")
    assert not is_question("主播好漂亮") and not is_question("I love it")


def test_paraphrases_match_in_chinese_and_english_and_unrelated_text_does_not() -> None:
    faq = index()
    for text in ("请问什么时候发货呀", "ＷＨＥＮ does my order ship？", "when will the order be shipped"):
        found = faq.match(text)
        assert found is not None and found[0].id == "ship", text
    assert (faq.match("优惠券怎么用") or (None,))[0].id == "coupon"  # type: ignore[union-attr]
    for text in ("主播好漂亮", "hello everyone", "what is the price?", "发货", "I love this dress"):
        assert faq.match(text) is None, text


def test_an_entry_answers_once_per_interval() -> None:
    faq = index()
    assert faq.answer("什么时候发货", 0) is not None
    assert faq.answer("When will my order ship", 30_000) is None  # the same entry, too soon
    assert faq.answer("怎么使用优惠券", 30_000) is not None  # another entry
    assert faq.answer("什么时候发货", 60_000) is not None
    faq.apply({"op": "remove", "id": "ship"})
    assert faq.match("什么时候发货") is None


def test_unanswered_questions_are_grouped_counted_and_surfaced() -> None:
    asked = Unanswered(window_ms=300_000, threshold=70, surface_after=3, surface_every_ms=30_000, limit=2)
    assert asked.add("有没有直播回放？", 0) is None
    assert asked.add("有直播回放吗", 1_000) is None
    surfaced = asked.add("有没有 直播回放", 2_000)
    assert surfaced is not None and surfaced["count"] == 3
    assert surfaced["summary"] == "asked 3 times in 5 min" and surfaced["question"] == "有没有直播回放？"
    assert asked.add("有没有直播回放?", 3_000) is None  # surfaced 1 s ago
    again = asked.add("有没有直播回放?", 40_000)
    assert again is not None and again["count"] == 5
    assert asked.top(40_000)[0]["count"] == 5
    assert asked.top(400_000) == []  # the window passed
    asked.add("what time is the draw?", 400_000)
    asked.add("is it waterproof?", 400_001)
    asked.add("does it come in red?", 400_002)  # a third question: the least recent dropped
    assert len(asked._asked) == 2


FAQ = {"faq": {"repeat_interval_s": 60.0}, "danmaku": {"rate_per_s": 100.0, "burst": 100}}


def answers(conn: HarnessConnection) -> list[dict[str, Any]]:
    return [m["data"] for m in conn.of_type("danmaku.message") if m["data"]["user"]["id"] == "bot:faq"]


async def test_the_bot_answers_a_paraphrase_once_per_interval_and_entries_survive_a_restart() -> None:
    async with NodeHarness(plugins=FAQ) as h:
        host, fan = await h.connect("h1", role="host"), await h.connect("u1")
        await host.join("r1")
        await fan.join("r1")
        pair = {"room": "r1", "questions": [SHIP_ZH, SHIP_EN], "answer": ANSWER_ZH, "request_id": "f1"}
        assert (await fan.command("faq.set", pair))["error"]["code"] == "forbidden"
        made = await host.command("faq.set", pair)
        assert made["ok"] and await host.command("faq.set", pair) == made  # idempotent
        assert host.of_type("faq.entries")
        sent = await fan.command("danmaku.send", {"room": "r1", "text": "请问什么时候发货呀"})
        await h.tick()
        assert [(a["text"], a["reply_to"], a["user"]["name"]) for a in answers(fan)] == [
            (ANSWER_ZH, sent["id"], "FAQ")
        ]
        await fan.command("danmaku.send", {"room": "r1", "text": "when does my order ship?"})
        await h.advance(1)
        assert len(answers(fan)) == 1  # within the interval
        await h.advance(60)
        await fan.command("danmaku.send", {"room": "r1", "text": "ＷＨＥＮ will my order ship"})
        await h.tick()
        assert len(answers(fan)) == 2
        await h.restart()
        host, fan = await h.connect("h1", role="host"), await h.connect("u1")
        state = (await host.join("r1"))["state"]["faq"]
        assert [e["id"] for e in state["entries"]] == [made["id"]]
        await fan.join("r1")
        await fan.command("danmaku.send", {"room": "r1", "text": "什么时候发货"})
        await h.tick()
        assert len(answers(fan)) == 1
        assert (await host.command("faq.remove", {"room": "r1", "id": made["id"]}))["ok"]
        assert (await host.command("faq.list", {"room": "r1"}))["entries"] == []


async def test_repeated_unanswered_questions_reach_the_host() -> None:
    async with NodeHarness(plugins=FAQ) as h:
        host = await h.connect("h1", role="host")
        await host.join("r1")
        for n, text in enumerate(("有没有直播回放？", "有直播回放吗", "有没有直播回放呀", "nice show")):
            fan = await h.connect(f"u{n}")
            await fan.join("r1")
            assert (await fan.command("danmaku.send", {"room": "r1", "text": text}))["ok"]
        surfaced = [item["data"] for item in host.of_type("faq.unanswered")]
        assert [(s["question"], s["count"], s["summary"]) for s in surfaced] == [
            ("有没有直播回放？", 3, "asked 3 times in 5 min")
        ]
        assert (await host.command("faq.list", {"room": "r1"}))["unanswered"][0]["count"] == 3
        answer = {"room": "r1", "questions": ["有没有直播回放"], "answer": "有，直播结束后在主页"}
        assert (await host.command("faq.set", answer))["ok"]
        assert (await host.command("faq.list", {"room": "r1"}))["unanswered"] == []  # answered now


async def test_limits_are_refused_with_codes() -> None:
    async with NodeHarness(plugins={"faq": {"max_entries": 1, "answer_max_length": 10}}) as h:
        host = await h.connect("h1", role="host")
        await host.join("r1")
        long = await host.command("faq.set", {"room": "r1", "questions": ["q"], "answer": "x" * 11})
        assert long["error"]["code"] == "too_long"
        assert (await host.command("faq.set", {"room": "r1", "questions": ["q"], "answer": "a"}))["ok"]
        full = await host.command("faq.set", {"room": "r1", "questions": ["p"], "answer": "b"})
        assert full["error"]["code"] == "faq_full"
        bad = await host.command("faq.set", {"room": "r1", "questions": [], "answer": "b"})
        assert bad["error"]["code"] == "bad_request"
        missing = await host.command("faq.remove", {"room": "r1", "id": "nope"})
        assert missing["error"]["code"] == "not_found"


async def test_end_to_end_pairs_over_http_answers_over_socketio(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, env={"LIVEROOM_PLUGINS_FAQ_ENABLED": "true"}).start()
    viewers: list[Viewer] = []
    try:
        room = room_name()
        for questions, answer in (([SHIP_ZH], ANSWER_ZH), ([SHIP_EN], ANSWER_EN)):
            status, body = api(
                server,
                "POST",
                f"/api/rooms/{room}/commands/faq.set",
                {"questions": questions, "answer": answer},
            )
            assert status == 200 and body["ok"], body
        status, body = api(server, "GET", f"/api/rooms/{room}/faq")
        assert status == 200 and len(body["entries"]) == 2, body
        fan = Viewer(server.url, "fan1")
        viewers.append(fan)
        await fan.connect()
        await fan.join(room)

        def bot(item: dict[str, Any]) -> bool:
            return item["type"] == "danmaku.message" and item["data"]["user"].get("bot") is True

        for n, text in enumerate(("请问什么时候发货呀", "when does my order ship?"), start=1):
            assert (await fan.call("danmaku.send", {"room": room, "text": text}))["ok"]
            await fan.wait_for(bot, count=n)
        assert [item["data"]["text"] for item in fan.items if bot(item)] == [ANSWER_ZH, ANSWER_EN]
        for text in ("什么时候发货", "marker"):  # asked again: not answered twice
            await fan.call("danmaku.send", {"room": room, "text": text})
        # An answer is published in its message's command, so before the marker's.
        await fan.wait_for(lambda item: item["data"].get("text") == "marker")
        assert len([item for item in fan.items if bot(item)]) == 2
    finally:
        for viewer in viewers:
            await viewer.close()
        server.stop()
