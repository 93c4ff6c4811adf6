"""The message hook: plugins see a danmaku before it is published, and decide what happens.

A plugin that overrides `Plugin.on_message(ctx, message)` is asked about every message
that passed danmaku's own checks (length, rate, mute and ban, slow mode, banned words), on
the node that holds the room. It returns a verdict:

| verdict | what happens | the chain |
|---|---|---|
| `None` / `Pass()` | nothing | goes on |
| `Rewrite(text)` | the message is published with `text` instead (a mask) | goes on with `text` |
| `Answer(text, bot)` | a reply is published as `bot` right after the message | goes on |
| `Reject(code, message)` | the sender's ack is `{ok: false, error: {code, message}}` | stops |
| `Hold(reason)` | the message waits in the room's review queue (staff approve or drop it) | stops |

Order: by the plugin's `message_priority` (lower first, default 0), then load order. Each
hook has a time budget (`[plugins.danmaku] hook_timeout_ms`); a hook that raises, runs past
it or returns something invalid is logged and, per `hook_failure`, skipped (`pass`: the
message goes on down the chain) or the message is held for review (`hold`, reason
`hook_failed`). Either way the message is never lost silently.

Pure of I/O apart from awaiting the hooks: `run` takes the hooks and returns an `Outcome`.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Coroutine, Generator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from liveroom.auth import Identity

__all__ = [
    "Answer",
    "Bot",
    "Hold",
    "Hook",
    "Message",
    "MessageHooks",
    "Outcome",
    "Pass",
    "Reject",
    "Rewrite",
    "Verdict",
]

log = logging.getLogger(__name__)
CODE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
BOT_ID = re.compile(r"^bot:[A-Za-z0-9_.-]{1,60}$")
FailurePolicy = Literal["pass", "hold"]


@dataclass(frozen=True, slots=True)
class Bot:
    """A named bot identity an answer is published as: `id` is `bot:<word>` (never a user's)."""

    id: str
    name: str

    def __post_init__(self) -> None:
        if not BOT_ID.match(self.id) or not 1 <= len(self.name) <= 64:
            raise ValueError(f"a bot is 'bot:<word>' with a name of 1..64 characters, not {self.id!r}")


@dataclass(frozen=True, slots=True)
class Message:
    """A danmaku about to be published (`text` as the hooks before this one left it)."""

    room: str
    id: str
    user: Identity
    text: str
    now_ms: float


@dataclass(frozen=True, slots=True)
class Pass:
    pass


@dataclass(frozen=True, slots=True)
class Rewrite:
    text: str


@dataclass(frozen=True, slots=True)
class Reject:
    code: str  # snake_case, e.g. "off_topic"
    message: str


@dataclass(frozen=True, slots=True)
class Hold:
    reason: str


@dataclass(frozen=True, slots=True)
class Answer:
    text: str
    bot: Bot


Verdict = Pass | Rewrite | Reject | Hold | Answer | None
Hook = Callable[[Message], Coroutine[Any, Any, Verdict]]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the chain decided. `by`: the plugin that rejected or held (or whose failure held)."""

    status: Literal["publish", "reject", "hold"]
    text: str
    answers: tuple[Answer, ...] = ()
    code: str = ""
    reason: str = ""
    by: str = ""
    failed: tuple[str, ...] = ()  # plugins whose hook failed on this message


class HookFailed(Exception):
    pass


class MessageHooks:
    """The hooks of the plugins that have one, in order, with their budget and failure policy."""

    def __init__(
        self,
        hooks: Sequence[tuple[str, Hook]],
        timeout_s: float,
        on_failure: FailurePolicy,
        max_length: int,
        answer_max_length: int,
    ) -> None:
        self.hooks = tuple(hooks)
        self._timeout_s = timeout_s
        self._on_failure = on_failure
        self._max_length = max_length
        self._answer_max = answer_max_length

    async def run(self, message: Message) -> Outcome:
        text = message.text
        answers: list[Answer] = []
        failed: list[str] = []
        for name, hook in self.hooks:
            try:
                verdict = await self._ask(name, hook, _with_text(message, text))
            except HookFailed as failure:
                log.warning("message hook of %s failed in room %s: %s", name, message.room, failure)
                failed.append(name)
                if self._on_failure == "hold":
                    return Outcome("hold", text, tuple(answers), "", "hook_failed", name, tuple(failed))
                continue
            if isinstance(verdict, Rewrite):
                text = verdict.text.strip()
            elif isinstance(verdict, Answer):
                answers.append(verdict)
            elif isinstance(verdict, Reject):
                return Outcome("reject", text, (), verdict.code, verdict.message, name, tuple(failed))
            elif isinstance(verdict, Hold):
                return Outcome("hold", text, tuple(answers), "", verdict.reason, name, tuple(failed))
        return Outcome("publish", text, tuple(answers), failed=tuple(failed))

    async def _ask(self, name: str, hook: Hook, message: Message) -> Verdict:
        try:
            verdict = await self._within(hook(message))
        except TimeoutError:
            raise HookFailed(f"ran past its {self._timeout_s * 1000:g} ms budget") from None
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.exception("message hook of %s raised", name)
            raise HookFailed(f"raised {type(error).__name__}: {error}") from None
        problem = self._invalid(verdict)
        if problem:
            raise HookFailed(problem)
        return verdict

    async def _within(self, work: Coroutine[Any, Any, Verdict]) -> Verdict:
        """Run a hook's coroutine within the budget. Why not just `asyncio.timeout`: arming
        and cancelling its timer costs more than most hooks (a mask, a lookup) that never
        wait at all. So the hook runs at once, in this task, and only one that waits (a call
        to a moderation service) finishes under a deadline."""
        try:
            waiting = work.send(None)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        async with asyncio.timeout(self._timeout_s):
            return await _Resumed(work, waiting)

    def _invalid(self, verdict: object) -> str:
        """Why a verdict cannot be applied ("" if it can)."""
        if verdict is None or isinstance(verdict, Pass | Hold):
            return ""
        if isinstance(verdict, Rewrite):
            size = len(verdict.text.strip())
            return "" if 0 < size <= self._max_length else f"rewrote to {size} characters"
        if isinstance(verdict, Reject):
            return "" if CODE.match(verdict.code) else f"rejected with a bad code {verdict.code[:64]!r}"
        if isinstance(verdict, Answer):
            size = len(verdict.text.strip())
            return "" if 0 < size <= self._answer_max else f"answered with {size} characters"
        return f"returned {type(verdict).__name__}, not a verdict"


class _Resumed:
    """`await` on a coroutine already started: what it waits on goes up to the task, and what
    the task sends or throws back (a result, a cancellation) goes down to it, as `await
    coroutine` does after its first step."""

    def __init__(self, work: Coroutine[Any, Any, Verdict], waiting: Any) -> None:
        self._work = work
        self._waiting = waiting

    def __await__(self) -> Generator[Any, Any, Verdict]:
        waiting = self._waiting
        while True:
            try:
                sent = yield waiting
            except BaseException as error:  # a cancellation (the deadline), thrown in by the task
                try:
                    waiting = self._work.throw(error)
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]
            else:
                try:
                    waiting = self._work.send(sent)
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]


def _with_text(message: Message, text: str) -> Message:
    if text == message.text:
        return message
    return Message(message.room, message.id, message.user, text, message.now_ms)
