"""CPU of the message hook's machinery and of the FAQ bot's matching, in process.

    python -m liveroom.loadtest.hook_bench [--messages 50000]

`chain`: `MessageHooks.run` over 0, 1 and 4 hooks that pass and 1 that rewrites (the
budget's deadline, the verdict checks), the event loop turning between messages as a
server's does. `faq`: one message matched against a room of 100 entries of 2 phrasings
(Chinese and English), and one unanswered question counted among 200. Pin it to a core of
its own (`taskset -c 1`) on a quiet machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from liveroom.plugins.faq_rules import FaqIndex, Unanswered  # type: ignore[import-not-found,unused-ignore]

from liveroom.auth import Identity
from liveroom.message_hook import Hook, Message, MessageHooks, Rewrite, Verdict

__all__ = ["main"]


async def _passing(message: Message) -> Verdict:
    return None


async def _rewriting(message: Message) -> Verdict:
    return Rewrite(message.text.upper())


async def chain(messages: int) -> dict[str, float]:
    message = Message("r1", "m1", Identity("u1", "U", "viewer"), "hello there, nice show", 0.0)
    setups: dict[str, list[tuple[str, Hook]]] = {
        "0 hooks": [],
        "1 passing": [("a", _passing)],
        "4 passing": [(str(n), _passing) for n in range(4)],
        "1 rewriting": [("a", _rewriting)],
    }
    result = {}
    for label, hooks in setups.items():
        hooked = MessageHooks(hooks, 0.2, "pass", 200, 500)
        began = time.process_time()
        for _ in range(messages):
            await hooked.run(message)
            await asyncio.sleep(0)  # the loop turns between commands, as in a server
        result[label] = round(1e6 * (time.process_time() - began) / messages, 2)
    return result


def faq(messages: int) -> dict[str, float]:
    index = FaqIndex(70, 60_000)
    for n in range(100):
        questions = [f"第{n}号商品什么时候发货", f"when will item {n} ship?"]
        index.apply({"op": "set", "id": f"e{n}", "questions": questions, "answer": "soon"})
    texts = ["请问什么时候发货呀", "主播好漂亮", "when does my order ship", "I love this dress so much"]
    began = time.process_time()
    for n in range(messages):
        index.match(texts[n % 4])
    matched = 1e6 * (time.process_time() - began) / messages
    asked = Unanswered(300_000, 70, 3, 30_000, 200)
    for n in range(200):
        asked.add(f"question number {n} about something?", n)
    began = time.process_time()
    for n in range(messages):
        asked.add(texts[n % 4], 1000 + n)
    counted = 1e6 * (time.process_time() - began) / messages
    return {"match_100_entries_us": round(matched, 1), "unanswered_200_us": round(counted, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m liveroom.loadtest.hook_bench")
    parser.add_argument("--messages", type=int, default=50_000)
    args = parser.parse_args(argv)
    result: dict[str, Any] = {
        "chain_us_per_message": asyncio.run(chain(args.messages)),
        "faq": faq(args.messages // 5),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
