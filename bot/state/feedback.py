"""Answers and the feedback people give on them, kept for evaluation and fine-tuning.

When the bot answers, it remembers an :class:`AnswerRecord` (question, answer, sources, who and
where) in Redis for ``answer_ttl_s``. A click on a feedback button carries only the answer's id,
so the feedback is joined with that record and stored whole, twice: appended to a Redis stream
(``<prefix>feedback``; the embedded Valkey persists it) and to ``feedback.jsonl`` under the data
dir, a file that evaluation and fine-tuning read directly and that survives losing Redis.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from bot.state.redis import RedisGuard

logger = logging.getLogger(__name__)

Rating = Literal["helpful", "not_helpful", "wrong_source"]
RATINGS: tuple[Rating, ...] = ("helpful", "not_helpful", "wrong_source")
# Answers remembered in process, for when Redis is down or the record expired there.
_LOCAL_ANSWERS = 2000
# The Redis stream keeps about this many entries; the JSONL file keeps everything.
STREAM_MAXLEN = 100_000


def new_answer_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class SourceRef:
    """A source as it was listed under an answer."""

    n: int
    title: str
    url: str | None = None
    path: str | None = None


@dataclass(frozen=True)
class AnswerRecord:
    """One answer as the user saw it, with where it was given."""

    answer_id: str
    question: str
    answer: str
    mode: str
    sources: tuple[SourceRef, ...]
    user: str
    channel: str
    thread_ts: str | None = None
    team: str | None = None
    query: str = ""
    created: float = field(default_factory=time.time)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: str) -> AnswerRecord:
        data = json.loads(raw)
        data["sources"] = tuple(SourceRef(**s) for s in data.get("sources", ()))
        return cls(**data)


@dataclass(frozen=True)
class FeedbackRecord:
    """A rating of an answer; ``answer`` is None when the answer record was no longer found."""

    answer_id: str
    rating: Rating
    user: str
    channel: str
    message_ts: str | None
    answer: AnswerRecord | None
    created: float = field(default_factory=time.time)

    def to_dict(self) -> dict:
        return asdict(self)


class FeedbackStore:
    """Remembers answers and stores feedback on them (Redis stream + JSONL file)."""

    def __init__(self, guard: RedisGuard, path: Path, *, answer_ttl_s: int) -> None:
        self.guard = guard
        self.path = Path(path)
        self.answer_ttl_s = answer_ttl_s
        self._answers: OrderedDict[str, AnswerRecord] = OrderedDict()
        self._file_lock = asyncio.Lock()

    async def remember_answer(self, record: AnswerRecord) -> None:
        """Keep ``record`` so feedback on it can be stored with the question and sources."""
        self._answers[record.answer_id] = record
        while len(self._answers) > _LOCAL_ANSWERS:
            self._answers.popitem(last=False)
        key = self.guard.key("answer", record.answer_id)

        async def op(client) -> None:
            await client.set(key, record.to_json(), ex=self.answer_ttl_s)

        async def local() -> None:
            return None

        await self.guard.run("answer record", op, local)

    async def get_answer(self, answer_id: str) -> AnswerRecord | None:
        key = self.guard.key("answer", answer_id)

        async def op(client) -> AnswerRecord | None:
            raw = await client.get(key)
            return AnswerRecord.from_json(raw) if raw else self._answers.get(answer_id)

        async def local() -> AnswerRecord | None:
            return self._answers.get(answer_id)

        return await self.guard.run("answer record", op, local)

    async def add(self, feedback: FeedbackRecord) -> None:
        """Store ``feedback`` durably: the JSONL file always, the Redis stream when it is up."""
        line = json.dumps(feedback.to_dict(), ensure_ascii=False)
        async with self._file_lock:
            await asyncio.to_thread(self._append_line, line)
        stream = self.guard.key("feedback")

        async def op(client) -> None:
            await client.xadd(stream, {"json": line}, maxlen=STREAM_MAXLEN, approximate=True)

        async def local() -> None:
            return None  # the JSONL line above is the record of truth

        await self.guard.run("feedback stream", op, local)
        logger.info("Feedback %s on answer %s", feedback.rating, feedback.answer_id)

    def _append_line(self, line: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()


def read_feedback(path: Path) -> list[dict]:
    """Every feedback record in a JSONL file written by :class:`FeedbackStore`, oldest first."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
