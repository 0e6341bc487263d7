"""`lorebot lark serve`: the Feishu/Lark bot over HTTP event callbacks.

Feishu (or Lark) posts events and card clicks to ``/lark/events`` on a public URL; the bot needs
the app id and secret, and the verification token or (better) the encrypt key of the event
subscription: without either, anyone could send it events, so it refuses to start. Start-up
loads the models, opens Redis (the embedded Valkey unless a URL is set) and asks Feishu for the
bot's identity, which also proves the app credentials, before anything is served. SIGINT/SIGTERM
stop taking questions and let the answers in flight finish.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from bot.cli.common import until_stopped
from bot.console import EXIT_OK, CliError

if TYPE_CHECKING:  # settings import pydantic: kept out of `lorebot --help`
    from bot.settings import Settings


def add_parser(sub) -> None:
    p = sub.add_parser("lark", help="the Feishu/Lark bot (serve)")
    lark_sub = p.add_subparsers(dest="lark_command", required=True, metavar="COMMAND")
    s = lark_sub.add_parser("serve", help="run the Feishu/Lark bot over HTTP event callbacks")
    s.add_argument("--host", help="address to listen on (default LOREBOT_LARK__HTTP_HOST)")
    s.add_argument("--port", type=int, help="port (default LOREBOT_LARK__HTTP_PORT)")
    s.set_defaults(handler=cmd_serve)


def missing(settings: Settings) -> list[str]:
    """The settings `lark serve` needs that are not set."""
    s = settings.lark
    out = [name for name, value in (("LOREBOT_LARK__APP_ID", s.app_id),
                                    ("LOREBOT_LARK__APP_SECRET", s.app_secret)) if not value]
    if s.verification_token is None and s.encrypt_key is None:
        out.append("LOREBOT_LARK__ENCRYPT_KEY (or LOREBOT_LARK__VERIFICATION_TOKEN)")
    return out


async def cmd_serve(args) -> int:
    from bot.settings import Settings

    settings = Settings()
    if problems := missing(settings):
        raise CliError(f"{' and '.join(problems)} must be set to run the Feishu/Lark bot "
                       "(see README, Feishu / Lark)")
    return await serve_http(settings, args.host, args.port)


async def serve_http(settings: Settings, host: str | None, port: int | None) -> int:
    from bot.runtime.services import build_services
    from bot.state.redis import open_redis
    from feishu.api import LarkApiError
    from feishu.bot import LarkBot
    from feishu.gate import Gate, GateConfigError
    from feishu.server import EVENTS_PATH, LarkHttpServer

    try:
        gate = Gate(settings.lark)
    except GateConfigError as exc:
        raise CliError(str(exc)) from None
    services = build_services(settings)
    try:
        print("Loading models …", file=sys.stderr)
        await services.warm_up()
        redis = await open_redis(settings)
        try:
            bot = LarkBot.create(settings, services.pipeline, redis.client)
            try:
                await bot.start()
            except LarkApiError as exc:
                raise CliError(f"Feishu/Lark refused the app credentials or cannot be reached "
                               f"({exc}); check LOREBOT_LARK__APP_ID, LOREBOT_LARK__APP_SECRET "
                               "and LOREBOT_LARK__DOMAIN") from None
            server = LarkHttpServer(bot, gate)
            listen = host or settings.lark.http_host
            bound = await server.start(listen, settings.lark.http_port if port is None else port)
            print(f"lorebot is listening for Feishu/Lark on http://{listen}:{bound}{EVENTS_PATH} "
                  "(health: /healthz). Ctrl-C stops.", file=sys.stderr)
            try:
                await until_stopped()
            finally:
                await server.stop(settings.lark.drain_s)
        finally:
            await redis.aclose()
    finally:
        if services.llm is not None and hasattr(services.llm, "aclose"):
            await services.llm.aclose()
        await services.close()
    return EXIT_OK
