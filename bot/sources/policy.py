"""Which sources a question may search, decided where it is asked. Fails closed.

A question searches the public sources plus the restricted ones allowed in its conversation.
A source the index holds but the registry does not know is restricted until it is registered
(the registry may have been lost: its restricted sources must not turn public). When the
registry cannot be read, the last registry this process (or an earlier one, from the snapshot
file in the data dir) read is used; with none, :class:`PolicyUnavailableError` says that
nothing can be searched safely, and the caller tells the asker so.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from bot.sources.registry import Source, SourceRegistry

logger = logging.getLogger(__name__)

# An allowlist that matches no source: an empty list must still filter.
NOTHING = "\x00none"


class PolicyUnavailableError(Exception):
    """The registry cannot be read and no earlier copy is known: nothing may be searched."""


class ChannelPolicy:
    """Which sources a question asked in a conversation may search."""

    def __init__(self, registry: SourceRegistry,
                 indexed_sources: Callable[[], Awaitable[Sequence[str]]] | None = None, *,
                 snapshot: Path | None = None) -> None:
        self.registry = registry
        self.indexed_sources = indexed_sources
        self.snapshot = snapshot
        self._last: list[Source] | None = None
        self._warned_unknown: frozenset[str] = frozenset()

    async def sources_for(self, channel: str | None, *, cached: bool = False) -> list[str] | None:
        """The source names searchable in ``channel`` (None for a question whose asker is not
        known to be a member of the conversation: public sources only). Returns None when no
        indexed source is restricted there (no filter needed). ``cached``: Redis is down, use
        the registry as last read; never read: :class:`PolicyUnavailableError`."""
        registered = self._cached() if cached else await self._read()
        visible = {s.name for s in registered if s.visible_in(channel)}
        hidden = {s.name for s in registered} - visible
        unknown: set[str] = set()
        if self.indexed_sources is not None:
            unknown = set(await self.indexed_sources()) - visible - hidden
            if unknown and frozenset(unknown) != self._warned_unknown:
                self._warned_unknown = frozenset(unknown)
                logger.warning("Indexed sources not in the registry are not searched until "
                               "registered (lorebot index … --source NAME, or /lorebot add): %s",
                               ", ".join(sorted(unknown)))
        if not hidden and not unknown:
            return None
        return sorted(visible) or [NOTHING]

    async def _read(self) -> list[Source]:
        registered = await self.registry.list()
        if registered != self._last:
            self._last = registered
            self._save(registered)
        return registered

    def _cached(self) -> list[Source]:
        if self._last is None:
            self._last = self._load()
        if self._last is None:
            raise PolicyUnavailableError(
                "the source registry cannot be read (Redis is unavailable) and no earlier copy "
                "is known, so no source can be searched safely")
        return self._last

    # The snapshot lets a process that starts while Redis is down apply the policy it last saw.
    def _save(self, registered: list[Source]) -> None:
        if self.snapshot is None:
            return
        try:
            self.snapshot.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.snapshot.parent, prefix=".policy-")
            with os.fdopen(fd, "w") as f:
                json.dump([s.as_dict() for s in registered], f)
            os.replace(tmp, self.snapshot)
        except OSError as exc:
            logger.warning("Could not save the source policy snapshot %s: %s", self.snapshot, exc)

    def _load(self) -> list[Source] | None:
        if self.snapshot is None or not self.snapshot.exists():
            return None
        try:
            return [Source.from_json(json.dumps(d)) for d in json.loads(self.snapshot.read_text())]
        except (OSError, ValueError, TypeError) as exc:
            logger.warning("Ignoring an unreadable source policy snapshot %s: %s", self.snapshot, exc)
            return None
