"""Conversation turns and where they are kept between questions.

A conversation (a Slack thread, a terminal chat session) is a list of :class:`Turn`, kept by a
:class:`ConversationStore` under a key the caller chooses. The lowest module of ``bot.answer``:
prompts, the follow-up rewrite and the Redis store all read it, and it imports none of them.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Turn:
    """One exchange: the user's question and the bot's answer text."""

    question: str
    answer: str


class ConversationStore(Protocol):
    """Where turns are kept between questions (in memory now; Redis with a TTL in production)."""

    async def get(self, key: str) -> list[Turn]:
        """The conversation's turns, oldest first (empty for an unknown key)."""
        ...

    async def append(self, key: str, turn: Turn) -> None:
        """Add a turn at the end of the conversation."""
        ...


class InMemoryConversationStore:
    """A process-local store: the last ``max_turns`` turns of the ``max_conversations`` most
    recently used conversations (older ones are forgotten, so memory stays bounded)."""

    def __init__(self, max_turns: int = 10, max_conversations: int = 1000) -> None:
        if max_turns < 1 or max_conversations < 1:
            raise ValueError(
                f"max_turns ({max_turns}) and max_conversations ({max_conversations}) must be >= 1"
            )
        self.max_turns = max_turns
        self.max_conversations = max_conversations
        self._turns: OrderedDict[str, list[Turn]] = OrderedDict()

    async def get(self, key: str) -> list[Turn]:
        turns = self._turns.get(key)
        if turns is None:
            return []
        self._turns.move_to_end(key)
        return list(turns)

    async def append(self, key: str, turn: Turn) -> None:
        turns = self._turns.setdefault(key, [])
        turns.append(turn)
        del turns[: -self.max_turns]
        self._turns.move_to_end(key)
        while len(self._turns) > self.max_conversations:
            self._turns.popitem(last=False)
