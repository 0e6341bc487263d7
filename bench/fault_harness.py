"""The fault suite's world: `lorebot serve` as a process of its own, a real Valkey that can be
stopped, emptied and restarted, the fake Slack Web API and the fake OpenAI server, signed events
in, and the replies counted per question.

Counting (:meth:`World.count`): a question's replies are the bot's messages in its thread (a
DM's: at the top level of that DM) posted after it and before the next question there. 0
replies is *lost*; every reply past the first is *duplicated*; a reply showing the restricted
source's marker where its asker may not see it (outside the allowed channel, or in it but not
a member) is *leaked*; a native stream never stopped, or a streamed preview never replaced by
the answer, is *unfinished*. A "restarting, ask
again" notice or a clear notice (the channel policy cannot be read) is a reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench.fault_process import REGISTRY_KEY, BotProcess, Template, bot_env, redis_client
from bench.fault_setup import MARKER, SECRET_CHANNEL

PUBLIC_CHANNEL = "C0PUBLIC"
VAULT_Q = "What is the vault door code?"
VPN_Q = "How do I set up the VPN?"


@dataclass
class Question:
    label: str
    step: str
    channel: str
    ts: str
    thread: str | None  # where its reply goes; None: the top level of a DM
    user: str
    allowed: bool  # may its reply show the restricted source?
    deliveries: list[tuple[dict, str]] = field(default_factory=list)  # (event, event id)


class World:
    """One scenario's bot, Redis, Slack and LLM, and the questions asked so far."""

    def __init__(self, root: Path, template: Template, slack, openai) -> None:
        from tests.support.fake_slack import SignedSender

        self.root, self.template, self.slack, self.openai = root, template, slack, openai
        self.data_dir = root / "data"
        shutil.copytree(template.data_dir, self.data_dir)
        self.valkey = None
        self.bot: BotProcess | None = None
        self.bots = 0
        self.questions: list[Question] = []
        self.retries = 0
        self.undelivered = 0
        self.faults_missed = 0  # scripted Slack drops the bot never reached
        self.notes: list[str] = []
        self._sender = SignedSender("unused")
        self._users = 0
        slack.members[SECRET_CHANNEL] = []  # members are added as they ask
        slack.members[PUBLIC_CHANNEL] = []

    # -- Redis ------------------------------------------------------------------------------------

    @property
    def redis_url(self) -> str:
        return f"unix://{self.root / 'valkey' / 'v.sock'}"

    def start_redis(self, *, empty: bool = False) -> None:
        """Start Valkey; ``empty``: its files deleted first (the registry is lost), else a new
        server gets the registry as the operator left it and a restarted one keeps its data."""
        from tests.support.valkey import start_valkey

        directory = self.root / "valkey"
        fresh = not directory.exists()
        if empty:
            shutil.rmtree(directory, ignore_errors=True)
        self.valkey = start_valkey(directory)
        if fresh and not empty:
            redis_client(self.valkey).hset(REGISTRY_KEY, mapping=self.template.registry)

    def stop_redis(self) -> None:
        """Stop Valkey, its data saved first, as a Redis with persistence keeps it (the test
        server writes no file on its own)."""
        if self.valkey is not None:
            with contextlib.suppress(Exception):
                redis_client(self.valkey).save()
            self.valkey.stop()
            self.valkey = None

    def registry_kept(self) -> bool:
        return bool(self.valkey is not None and redis_client(self.valkey).hlen(REGISTRY_KEY))

    # -- the bot ----------------------------------------------------------------------------------

    async def start_bot(self, **settings: str) -> None:
        env = bot_env({
            "LOREBOT_DATA_DIR": str(self.data_dir), "LOREBOT_REDIS__URL": self.redis_url,
            "LOREBOT_SLACK__API_URL": self.slack.api_url,
            "LOREBOT_SLACK__BOT_TOKEN": _fake("BOT_TOKEN"),
            "LOREBOT_SLACK__SIGNING_SECRET": _fake("SIGNING_SECRET"),
            "LOREBOT_LLM__BASE_URL": self.openai.base_url, "LOREBOT_LLM__MODEL": "fake-model",
            "LOREBOT_LLM__API_KEY": "sk-fault-suite",
            # No LLM retries: a retry would meet the fake's clean default answer, not the fault.
            "LOREBOT_LLM__MAX_RETRIES": "0",
            "LOREBOT_LLM__FIRST_TOKEN_S": "4", "LOREBOT_LLM__ANSWER_DEADLINE_S": "8",
            "LOREBOT_SLACK__DRAIN_S": "5",
            **{f"LOREBOT_{k.upper()}": v for k, v in settings.items()},
        })
        self.bots += 1
        self.bot = BotProcess(env, self.root / f"bot-{self.bots}.log", self.root)
        port = await self.bot.start()
        self._sender.url = f"http://127.0.0.1:{port}/slack/events"

    async def stop_bot(self) -> int | None:
        """SIGTERM, as an orchestrator stops it; its exit code."""
        if self.bot is None:
            return None
        self.bot.sigterm()
        code = await self.bot.wait_exit()
        self.bot = None
        return code

    # -- questions --------------------------------------------------------------------------------

    def _user(self, channel: str, member: bool) -> str:
        self._users += 1
        user = f"U0Q{self._users:03d}"
        if member and channel in self.slack.members:
            self.slack.members[channel].append(user)
        return user

    def _question(self, label: str, step: str, channel: str, text: str, *, user: str,
                  thread: str | None = None, direct: bool = False, mention: bool = True,
                  member: bool = True) -> Question:
        from tests.support.fake_slack import BOT_USER_ID

        ts = self.slack._next_ts()  # the fake's clock, so replies sort after their question
        body = f"<@{BOT_USER_ID}> {text}" if mention and not direct else text
        self.slack.add_user_message(channel, ts, body, user, thread_ts=thread)
        event = {"type": "message", "channel": channel, "user": user, "ts": ts, "text": body,
                 "channel_type": "im" if direct else "channel"}
        if thread:
            event["thread_ts"] = thread
        allowed = channel == SECRET_CHANNEL and member
        q = Question(label, step, channel, ts, None if direct else (thread or ts), user, allowed)
        q.deliveries.append((event, f"EvM{ts}"))
        if mention and not direct:  # Slack sends an @mention twice: message and app_mention
            mention_event = {k: v for k, v in event.items() if k != "channel_type"}
            q.deliveries.append(({**mention_event, "type": "app_mention"}, f"EvA{ts}"))
        self.questions.append(q)
        return q

    def round(self, step: str) -> list[Question]:
        """The four places a restricted answer must be told apart, each asked for it, plus a
        public question: a member of the allowed channel (may see it), the public channel, a
        DM, a non-member in the allowed channel (neither may)."""
        return [
            self._question("A member: vault", step, SECRET_CHANNEL, VAULT_Q,
                           user=self._user(SECRET_CHANNEL, True)),
            self._question("B: vault", step, PUBLIC_CHANNEL, VAULT_Q,
                           user=self._user(PUBLIC_CHANNEL, True)),
            self.dm("DM: vault", step, VAULT_Q),
            self._question("A non-member: vault", step, SECRET_CHANNEL, VAULT_Q,
                           user=self._user(SECRET_CHANNEL, False), member=False),
            self._question("B: vpn", step, PUBLIC_CHANNEL, VPN_Q,
                           user=self._user(PUBLIC_CHANNEL, True)),
        ]

    def one(self, label: str, step: str, channel: str = PUBLIC_CHANNEL, text: str = VPN_Q,
            member: bool = True) -> Question:
        return self._question(label, step, channel, text, user=self._user(channel, member),
                              member=member)

    def dm(self, label: str, step: str, text: str = VPN_Q) -> Question:
        user = self._user("", True)
        return self._question(label, step, f"D0DM{user[3:]}", text, user=user, direct=True)

    def followup(self, parent: Question, step: str, text: str = "And who opens it?") -> Question:
        """A message in ``parent``'s thread by its asker, without a mention."""
        return self._question(f"{parent.label}: follow-up", step, parent.channel, text,
                              user=parent.user, thread=parent.thread, mention=False)

    async def send(self, questions: list[Question], retry_num: int | None = None) -> None:
        """Deliver the questions' events, all at once as Slack does; ``retry_num``: send each
        question's last delivery again as Slack's retry number ``retry_num``."""
        jobs = []
        for q in questions:
            deliveries = q.deliveries[-1:] if retry_num else q.deliveries
            jobs += [self._deliver(event, event_id, retry_num) for event, event_id in deliveries]
        self.retries += len(jobs) if retry_num else 0
        await asyncio.gather(*jobs)

    async def _deliver(self, event: dict, event_id: str, retry_num: int | None) -> None:
        try:
            sent = await self._sender.event(event, event_id=event_id, retry_num=retry_num)
            if sent.status != 200:
                self.undelivered += 1
                self.notes.append(f"event {event_id} answered HTTP {sent.status}")
        except (aiohttp.ClientError, OSError) as exc:
            self.undelivered += 1
            self.notes.append(f"event {event_id} not delivered: {type(exc).__name__}")

    async def __aenter__(self) -> World:
        await self._sender.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._sender.__aexit__(*exc)
        if self.bot is not None:
            self.bot.kill()
        self.stop_redis()

    def drop_after(self, method: str) -> None:
        """The next ``method`` call is carried out and its connection dropped."""
        self.slack.drop_after(method, 1)

    def check_drops(self) -> None:
        """A drop still pending was never exercised: the scenario proved nothing about it."""
        for method, left in self.slack._drops.items():
            if left:
                self.faults_missed += left
                self.notes.append(f"{left} scripted drop of {method} never reached")
                self.slack._drops[method] = 0

    # -- counting ---------------------------------------------------------------------------------

    def replies(self, q: Question) -> list:
        """The bot's messages that answer ``q`` (see the module docstring)."""
        later = [float(o.ts) for o in self.questions
                 if o.channel == q.channel and o.thread == q.thread and float(o.ts) > float(q.ts)]
        end = min(later, default=float("inf"))
        return sorted((m for m in self.slack.messages.values()
                       if m.bot_id and m.channel == q.channel and m.thread_ts == q.thread
                       and float(q.ts) < float(m.ts) < end), key=lambda m: float(m.ts))

    def settled(self, questions: list[Question]) -> bool:
        for q in questions:
            found = self.replies(q)
            if not found or any(unfinished(m) for m in found):
                return False
        return True

    async def wait(self, questions: list[Question], timeout: float = 60.0) -> None:
        """Until every question has a finished reply (or ``timeout``), then until Slack has been
        quiet for a second, so late duplicates are counted too."""
        try:
            await self.slack.wait_for(lambda: self.settled(questions), timeout)
        except TimeoutError:
            self.notes.append(f"{sum(not self.settled([q]) for q in questions)} of "
                              f"{len(questions)} questions unsettled after {timeout:.0f} s")
        try:
            await self.slack.settle(1.0, timeout=30)
        except TimeoutError:
            self.notes.append("the bot kept calling Slack")

    def count(self) -> dict:
        rows, totals = [], {"questions": len(self.questions), "replies": 0, "lost": 0,
                            "duplicated": 0, "leaked": 0, "unfinished": 0,
                            "restricted_shown_where_allowed": 0}
        kinds: dict[str, int] = {}
        for q in self.questions:
            found = self.replies(q)
            shows = [MARKER in m.text or MARKER in json.dumps(m.blocks) for m in found]
            leaked = any(shows) and not q.allowed
            row = {"step": q.step, "question": q.label, "channel": q.channel, "ts": q.ts,
                   "replies": len(found), "kinds": [kind(m) for m in found], "leaked": leaked,
                   "unfinished": any(unfinished(m) for m in found)}
            rows.append(row)
            totals["replies"] += len(found)
            totals["lost"] += not found
            totals["duplicated"] += max(0, len(found) - 1)
            totals["leaked"] += leaked
            totals["unfinished"] += row["unfinished"]
            totals["restricted_shown_where_allowed"] += any(shows) and q.allowed
            for k in row["kinds"]:
                kinds[k] = kinds.get(k, 0) + 1
        # Replies only the asker sees count as leaks too when they show the marker elsewhere.
        totals["leaked"] += sum(1 for e in self.slack.ephemeral
                                if MARKER in json.dumps(e) and e.get("channel") != SECRET_CHANNEL)
        return {**totals, "kinds": kinds, "retries_sent": self.retries,
                "faults_missed": self.faults_missed,
                "undelivered_events": self.undelivered, "notes": self.notes, "per_question": rows}


def unfinished(message) -> bool:
    """A native stream never stopped, or an update-mode preview (it ends with the streaming
    cursor) never replaced by the answer."""
    from handlers.texts import STREAMING_CURSOR

    return message.streaming or message.text.endswith(STREAMING_CURSOR)


def kind(message) -> str:
    """What a reply is, for the table: an answer, a fallback answer, or which notice."""
    if unfinished(message):
        return "unfinished"
    text = message.text + json.dumps(message.blocks)
    for needle, name in (("restarting", "restarting notice"), ("source registry", "policy notice"),
                         ("error id", "error notice"), ("relevant passages", "fallback answer")):
        if needle in text:
            return name
    if any(b.get("type") == "actions" for b in message.blocks):
        return "answer"
    return "text"


def _fake(name: str) -> str:
    from tests.support import fake_slack

    return getattr(fake_slack, name)
