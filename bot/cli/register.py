"""Sources indexed from the shell are registered as public folder sources, so the Slack bot
searches them: the channel policy treats indexed sources the registry does not know as
restricted (``bot.sources.policy``), and an unregistered source would be hidden there."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

logger = logging.getLogger(__name__)


async def register_indexed(settings, name: str, path: Path, *, client=None) -> None:
    """Register ``name`` (indexed from ``path``) as public unless the registry knows it already.
    ``client``: an open Redis client (default: open one from settings). Never fails the
    indexing: when Redis cannot be reached, say what it means and how to fix it."""
    from bot.sources.registry import Source, SourceRegistry

    async def register(redis_client) -> None:
        registry = SourceRegistry(redis_client, settings.redis.key_prefix)
        if await registry.get(name) is None:
            folder = path if path.is_dir() else path.parent
            await registry.add(Source(name, "folder", str(folder), created_by="cli"))

    try:
        if client is not None:
            await register(client)
            return
        from bot.state.redis import open_redis

        handle = await open_redis(settings)
        try:
            await register(handle.client)
        finally:
            await handle.aclose()
    except Exception as exc:  # noqa: BLE001 - the indexing stands whatever failed here
        logger.debug("Registering %s failed", name, exc_info=True)
        print(f"lorebot: warning: could not register source {name!r} ({exc}); the Slack bot "
              f"will not search it until it is registered (`lorebot sources add {path} "
              f"--name {name}`)", file=sys.stderr)
