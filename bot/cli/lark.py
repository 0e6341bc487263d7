"""`lorebot lark serve` and `lorebot lark connect`: the Feishu/Lark bot from the command line.

- ``serve``: Feishu (or Lark) posts events and card clicks to ``/lark/events`` on a public URL;
  the bot needs the app id and secret, and the verification token or (better) the encrypt key of
  the event subscription: without either, anyone could send it events, so it refuses to start.
- ``connect``: the SDK's long connection (no public URL); the app id and secret are enough.

Start-up loads the models, opens Redis (the embedded Valkey unless a URL is set) and asks Feishu
for the bot's identity, which also proves the app credentials, before anything is served.
SIGINT/SIGTERM stop taking questions and let the answers in flight finish. Unless
``LOREBOT_SOURCES__IN_PROCESS_WORKER=false``, a worker runs the reindex jobs that `/lorebot add`
and `/lorebot reindex` queue, as the Slack bot's does.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from bot.cli.common import until_stopped
from bot.console import EXIT_OK, CliError

if TYPE_CHECKING:  # settings import pydantic: kept out of `lorebot --help`
    from bot.settings import Settings


def add_parser(sub) -> None:
    p = sub.add_parser("lark", help="the Feishu/Lark bot (serve, connect)")
    lark_sub = p.add_subparsers(dest="lark_command", required=True, metavar="COMMAND")
    s = lark_sub.add_parser("serve", help="run the Feishu/Lark bot over HTTP event callbacks")
    s.add_argument("--host", help="address to listen on (default LOREBOT_LARK__HTTP_HOST)")
    s.add_argument("--port", type=int, help="port (default LOREBOT_LARK__HTTP_PORT)")
    s.set_defaults(handler=cmd_serve)
    c = lark_sub.add_parser("connect", help="run the Feishu/Lark bot over the long connection "
                                            "(WebSocket; no public URL needed)")
    c.set_defaults(handler=cmd_connect)


def missing(settings: Settings, *, http: bool = True) -> list[str]:
    """The settings `lark serve` (``http``) or `lark connect` needs that are not set."""
    s = settings.lark
    out = [name for name, value in (("LOREBOT_LARK__APP_ID", s.app_id),
                                    ("LOREBOT_LARK__APP_SECRET", s.app_secret)) if not value]
    if http and s.verification_token is None and s.encrypt_key is None:
        out.append("LOREBOT_LARK__ENCRYPT_KEY (or LOREBOT_LARK__VERIFICATION_TOKEN)")
    return out


async def cmd_serve(args) -> int:
    from bot.settings import Settings

    settings = Settings()
    if problems := missing(settings):
        raise CliError(f"{' and '.join(problems)} must be set to run the Feishu/Lark bot "
                       "(see README, Feishu / Lark)")
    return await serve_http(settings, args.host, args.port)


async def cmd_connect(args) -> int:
    from bot.settings import Settings

    settings = Settings()
    if problems := missing(settings, http=False):
        raise CliError(f"{' and '.join(problems)} must be set to run the Feishu/Lark bot "
                       "(see README, Feishu / Lark)")
    from feishu.longconn import LongConnection

    async with lark_runtime(settings) as bot:
        connection = LongConnection(bot)
        try:
            await connection.start()
        except Exception as exc:  # noqa: BLE001 - the SDK's refusal, told in one line
            raise CliError(f"Feishu/Lark refused the long connection ({type(exc).__name__}: "
                           f"{str(exc)[:200]}); check LOREBOT_LARK__APP_ID, "
                           "LOREBOT_LARK__APP_SECRET, and that the app subscribes to events "
                           "over the long connection") from None
        print("lorebot is connected to Feishu/Lark over the long connection. Ctrl-C stops.",
              file=sys.stderr)
        try:
            await until_stopped()
        finally:
            await connection.stop(settings.lark.drain_s)
    return EXIT_OK


async def serve_http(settings: Settings, host: str | None, port: int | None) -> int:
    from feishu.gate import Gate, GateConfigError
    from feishu.server import EVENTS_PATH, LarkHttpServer

    try:
        gate = Gate(settings.lark)
    except GateConfigError as exc:
        raise CliError(str(exc)) from None
    async with lark_runtime(settings) as bot:
        server = LarkHttpServer(bot, gate)
        listen = host or settings.lark.http_host
        bound = await server.start(listen, settings.lark.http_port if port is None else port)
        print(f"lorebot is listening for Feishu/Lark on http://{listen}:{bound}{EVENTS_PATH} "
              "(health: /healthz). Ctrl-C stops.", file=sys.stderr)
        try:
            await until_stopped()
        finally:
            await server.stop(settings.lark.drain_s)
    return EXIT_OK


@contextlib.asynccontextmanager
async def lark_runtime(settings: Settings) -> AsyncIterator:
    """Services (models warmed up), Redis and the started :class:`LarkBot`; closed on exit."""
    from bot.runtime.services import build_services
    from bot.state.redis import open_redis
    from feishu.api import LarkApiError
    from feishu.bot import LarkBot

    services = build_services(settings)
    try:
        print("Loading models …", file=sys.stderr)
        await services.warm_up()
        redis = await open_redis(settings)
        try:
            bot = LarkBot.create(settings, services.pipeline, redis.client)
            from bot.jobs.indexing import remove_source_documents

            async def remove_documents(name: str) -> int:
                return await remove_source_documents(services, name)

            bot.remove_documents = remove_documents
            try:
                await bot.start()
            except LarkApiError as exc:
                raise CliError(f"Feishu/Lark refused the app credentials or cannot be reached "
                               f"({exc}); check LOREBOT_LARK__APP_ID, LOREBOT_LARK__APP_SECRET "
                               "and LOREBOT_LARK__DOMAIN") from None
            stop_worker = asyncio.Event()
            worker = None
            if settings.sources.in_process_worker:
                # Reindex jobs queued by `/lorebot add|reindex` run here (else in `lorebot worker`s;
                # several workers share the queue safely).
                from bot.cli.sources import run_worker

                worker = asyncio.create_task(run_worker(settings, services, redis.client,
                                                        stop_worker))
            try:
                yield bot
            finally:
                stop_worker.set()
                if worker is not None:
                    await worker
        finally:
            await redis.aclose()
    finally:
        if services.llm is not None and hasattr(services.llm, "aclose"):
            await services.llm.aclose()
        await services.close()
