"""The knowledge source registry: what lorebot indexes, kept in Redis so every replica and
worker sees the same list and it survives restarts (the embedded Valkey writes an AOF).

A source is a name, a type and a location, plus who may see it: a *public* source is searched
everywhere; a restricted one only in the channels it was allowed in (``channel allow``).
Indexed sources that are not in the registry count as restricted (``bot.sources.policy``);
``lorebot index PATH --source NAME`` registers NAME as a public folder source.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

SourceType = Literal["folder", "url", "sitemap", "crawl", "slack_channel", "slack_files"]
SOURCE_TYPES: tuple[str, ...] = ("folder", "url", "sitemap", "crawl", "slack_channel", "slack_files")
WEB_TYPES = frozenset({"url", "sitemap", "crawl"})
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class SourceRegistryError(Exception):
    """A source request that cannot be done; the message says why and what to do."""


@dataclass(frozen=True)
class Source:
    """One registered knowledge source."""

    name: str
    type: str
    location: str
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    refresh_s: int | None = None
    allowed_channels: tuple[str, ...] = ()
    public: bool = True
    created_by: str | None = None
    created_at: float = field(default_factory=time.time)
    last_run: float | None = None
    last_summary: dict | None = None
    last_error: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: str) -> Source:
        data = json.loads(raw)
        for key in ("include", "exclude", "allowed_channels"):
            data[key] = tuple(data.get(key) or ())
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    def visible_in(self, channel: str | None) -> bool:
        return self.public or (channel is not None and channel in self.allowed_channels)


def guess_type(location: str) -> str:
    """``folder`` for a path; for a URL ``sitemap`` when it names one, else ``crawl``."""
    if location.startswith(("http://", "https://")):
        return "sitemap" if location.rstrip("/").lower().endswith(".xml") else "crawl"
    return "folder"


def default_name(location: str) -> str:
    """A readable source name from a URL's host and path, or a folder's name."""
    if location.startswith(("http://", "https://")):
        rest = location.split("://", 1)[1]
    else:
        rest = Path(location).expanduser().resolve().name
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", rest).strip("-.")[:64]
    return name or "source"


def validate(source: Source) -> Source:
    if not _NAME.match(source.name):
        raise SourceRegistryError(
            f"source name {source.name!r} is not valid: use letters, digits, '.', '_' or '-' "
            "(at most 64, starting with a letter or digit)"
        )
    if source.type not in SOURCE_TYPES:
        raise SourceRegistryError(
            f"unknown source type {source.type!r}; use one of {', '.join(SOURCE_TYPES)}"
        )
    if source.type in WEB_TYPES and not source.location.startswith(("http://", "https://")):
        raise SourceRegistryError(f"a {source.type} source needs an http(s) URL, not {source.location!r}")
    if source.type == "slack_channel" and not re.match(r"^[CG][A-Z0-9]{2,}$", source.location):
        raise SourceRegistryError(f"{source.location!r} is not a Slack channel id (C… or G…)")
    if source.type == "slack_files" and not re.match(r"^[CGD][A-Z0-9]{2,}$", source.location):
        raise SourceRegistryError(
            f"{source.location!r} is not a Slack conversation id (C… or G… for a channel, D… for "
            "a DM with the bot)"
        )
    if source.type == "folder":
        path = Path(source.location).expanduser()
        if not path.exists():
            raise SourceRegistryError(f"{source.location} does not exist on the indexing host")
        source = replace(source, location=str(path.resolve()))
    return source


def _same_place(a: Source, b: Source) -> bool:
    """Whether two sources would index the same documents: the same folder (or one inside the
    other), the same web location, the same Slack conversation."""
    if a.type == "folder" and b.type == "folder":
        x, y = Path(a.location), Path(b.location)  # resolved by `validate`
        return x == y or x in y.parents or y in x.parents
    if a.type in WEB_TYPES and b.type in WEB_TYPES:
        return a.location.rstrip("/").lower() == b.location.rstrip("/").lower()
    return a.type == b.type and a.location == b.location


class SourceRegistry:
    """Sources in one Redis hash (name → JSON). ``client`` is a ``redis.asyncio.Redis`` with
    ``decode_responses=True``."""

    def __init__(self, client, prefix: str = "lorebot:") -> None:
        self.client = client
        self.key = f"{prefix}sources"

    async def list(self) -> list[Source]:
        raw = await self.client.hgetall(self.key)
        return sorted((Source.from_json(v) for v in raw.values()), key=lambda s: s.name)

    async def get(self, name: str) -> Source | None:
        raw = await self.client.hget(self.key, name)
        return Source.from_json(raw) if raw else None

    async def require(self, name: str) -> Source:
        source = await self.get(name)
        if source is None:
            names = ", ".join(s.name for s in await self.list()) or "none yet"
            raise SourceRegistryError(f"no source named {name!r} (sources: {names})")
        return source

    async def add(self, source: Source) -> Source:
        source = validate(source)
        for other in await self.list():
            if other.name != source.name and _same_place(other, source):
                # One folder or site under two names would index every document twice.
                raise SourceRegistryError(
                    f"{source.location} is already indexed as source '{other.name}' "
                    f"({other.type} {other.location}); reindex that source, or remove it first"
                )
        if not await self.client.hsetnx(self.key, source.name, json.dumps(source.as_dict())):
            raise SourceRegistryError(
                f"a source named {source.name!r} exists already; pick another name or remove it"
            )
        return source

    async def put(self, source: Source) -> None:
        await self.client.hset(self.key, source.name, json.dumps(source.as_dict()))

    async def remove(self, name: str) -> bool:
        return bool(await self.client.hdel(self.key, name))

    async def update(self, name: str, **changes) -> Source:
        source = replace(await self.require(name), **changes)
        await self.put(source)
        return source

    async def allow_channel(self, name: str, channel: str) -> Source:
        source = await self.require(name)
        channels = tuple(dict.fromkeys((*source.allowed_channels, channel)))
        return await self.update(name, allowed_channels=channels)

    async def deny_channel(self, name: str, channel: str) -> Source:
        source = await self.require(name)
        return await self.update(
            name, allowed_channels=tuple(c for c in source.allowed_channels if c != channel)
        )

    async def record_run(self, name: str, summary: dict | None, error: str | None) -> None:
        if await self.get(name) is not None:
            await self.update(name, last_run=time.time(), last_summary=summary, last_error=error)
