"""`lorebot serve`, `lorebot socket` and `lorebot run`: the Slack bot from the command line.

- ``serve`` runs the app over HTTP (``POST /slack/events``, ``GET /healthz``); Slack needs a
  public URL for it. Needs the bot token and the signing secret.
- ``socket`` runs it in Socket Mode (no public URL). Needs the bot token and the app token.
- ``run`` (what ``make run`` calls) picks: Socket Mode when an app token is set, HTTP when a
  signing secret is, else (no bot token) the terminal demo, which has an index of its own and
  never touches the knowledge base. The Slack bot on a brand-new, empty knowledge base indexes
  the sample docs once, so a fresh install has something to answer from; removed, they stay
  removed.

Start-up loads the models (``warm_up``), opens Redis (the embedded Valkey unless a URL is set)
and checks the token with ``auth.test`` before anything is served; SIGINT/SIGTERM stop taking
new questions and let the answers in flight finish.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from bot.cli.common import SAMPLE_QUESTION, until_stopped
from bot.console import EXIT_OK, CliError

if TYPE_CHECKING:  # settings import pydantic: kept out of `lorebot --help`
    from bot.settings import Settings

logger = logging.getLogger(__name__)

SlackMode = Literal["socket", "http"]


def add_parser(sub) -> None:
    p = sub.add_parser("serve", help="run the Slack bot over HTTP (Events API)")
    _listen_options(p)
    p.set_defaults(handler=cmd_serve)

    p = sub.add_parser("socket", help="run the Slack bot in Socket Mode (no public URL needed)")
    p.set_defaults(handler=cmd_socket)

    p = sub.add_parser(
        "run", help="the Slack bot if .env has Slack credentials, else the terminal demo"
    )
    _listen_options(p)
    p.add_argument("--path", type=Path, help="demo only: knowledge base to index")
    p.add_argument("--question", default=SAMPLE_QUESTION,
                   help="demo only: asked when stdin is not a terminal")
    p.set_defaults(handler=cmd_run)


def _listen_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", help="address to listen on (default LOREBOT_SLACK__HTTP_HOST)")
    p.add_argument("--port", type=int, help="port (default LOREBOT_SLACK__HTTP_PORT)")


def slack_mode(settings: Settings) -> SlackMode | None:
    """How ``lorebot run`` runs the bot with these settings; None: no Slack credentials."""
    s = settings.slack
    if s.bot_token is None:
        return None
    if s.app_token is not None:
        return "socket"
    if s.signing_secret is not None:
        return "http"
    return None


async def cmd_serve(args) -> int:
    from bot.settings import Settings

    settings = Settings()
    _require(settings, "http")
    return await serve_http(settings, args.host, args.port)


async def cmd_socket(args) -> int:
    from bot.settings import Settings

    settings = Settings()
    _require(settings, "socket")
    return await serve_socket(settings)


async def cmd_run(args) -> int:
    from bot.settings import Settings

    settings = Settings()
    mode = slack_mode(settings)
    lark = lark_mode(settings)
    if lark is not None:
        return await _run_with_lark(settings, args, mode, lark)
    if mode is None:
        if problem := _partial_credentials(settings):
            raise CliError(problem)
        print("No Slack credentials (LOREBOT_SLACK__BOT_TOKEN is not set): running the terminal "
              "demo on its own sample index.", file=sys.stderr)
        from bot.cli.commands import cmd_demo

        return await cmd_demo(args)
    print(f"Slack credentials found: running the Slack bot ({mode} mode).", file=sys.stderr)
    if mode == "socket":
        return await serve_socket(settings, index_sample=True)
    return await serve_http(settings, args.host, args.port, index_sample=True)


def lark_mode(settings: Settings) -> Literal["http", "connect"] | None:
    """How `lorebot run` runs Feishu/Lark: over HTTP callbacks when the event subscription's
    encrypt key or token is set, else over the long connection; None without app credentials."""
    s = settings.lark
    if not (s.app_id and s.app_secret):
        return None
    return "http" if (s.encrypt_key is not None or s.verification_token is not None) else "connect"


async def _run_with_lark(settings: Settings, args, slack: SlackMode | None,
                         lark: Literal["http", "connect"]) -> int:
    """Feishu/Lark, and Slack beside it when Slack has credentials too: both until SIGTERM.
    (Each platform loads its own copy of the models for now.)"""
    from bot.cli import lark as lark_cli

    names = " and ".join(n for n in ("Slack" if slack else "", "Feishu/Lark") if n)
    print(f"Credentials found: running the {names} bot.", file=sys.stderr)
    runs = [lark_cli.serve_http(settings, None, None) if lark == "http"
            else lark_cli.cmd_connect(args)]
    if slack == "socket":
        runs.append(serve_socket(settings, index_sample=True))
    elif slack == "http":
        runs.append(serve_http(settings, args.host, args.port, index_sample=True))
    codes = await asyncio.gather(*runs)
    return max(codes)


def _partial_credentials(settings: Settings) -> str | None:
    """What is missing when some Slack credentials are set but not enough to run the bot."""
    s = settings.slack
    if s.bot_token is not None:
        return ("LOREBOT_SLACK__BOT_TOKEN is set, but the bot also needs LOREBOT_SLACK__APP_TOKEN "
                "(xapp-…, Socket Mode) or LOREBOT_SLACK__SIGNING_SECRET (HTTP); see README, Slack")
    if s.app_token is not None or s.signing_secret is not None:
        given = "LOREBOT_SLACK__APP_TOKEN" if s.app_token is not None else \
            "LOREBOT_SLACK__SIGNING_SECRET"
        return (f"{given} is set, but LOREBOT_SLACK__BOT_TOKEN (xoxb-…, OAuth & Permissions) is "
                "missing; see README, Slack")
    return None


def _require(settings: Settings, mode: SlackMode) -> None:
    s = settings.slack
    missing = [name for name, value in (
        ("LOREBOT_SLACK__BOT_TOKEN", s.bot_token),
        ("LOREBOT_SLACK__SIGNING_SECRET" if mode == "http" else "LOREBOT_SLACK__APP_TOKEN",
         s.signing_secret if mode == "http" else s.app_token),
    ) if value is None]
    if missing:
        raise CliError(f"{' and '.join(missing)} must be set for {mode} mode (see README, Slack)")


async def serve_http(settings: Settings, host: str | None, port: int | None, *,
                     index_sample: bool = False) -> int:
    from bot.slack.server import SlackHttpServer

    async with slack_runtime(settings, index_sample=index_sample) as (bot, app):
        server = SlackHttpServer(app, bot)
        bound = await server.start(host or settings.slack.http_host,
                                   settings.slack.http_port if port is None else port)
        print(f"lorebot is listening on http://{host or settings.slack.http_host}:{bound}"
              "/slack/events (health: /healthz). Ctrl-C stops.", file=sys.stderr)
        try:
            await until_stopped()
        finally:
            await server.stop(settings.slack.drain_s)
    return EXIT_OK


async def serve_socket(settings: Settings, *, index_sample: bool = False) -> int:
    from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

    async with slack_runtime(settings, index_sample=index_sample) as (bot, app):
        handler = AsyncSocketModeHandler(app, settings.slack.app_token.get_secret_value())
        await handler.connect_async()
        print("lorebot is connected to Slack in Socket Mode. Ctrl-C stops.", file=sys.stderr)
        try:
            await until_stopped()
        finally:
            await handler.close_async()
            await bot.drain(settings.slack.drain_s)
    return EXIT_OK


@contextlib.asynccontextmanager
async def slack_runtime(settings: Settings, *, index_sample: bool = False) -> AsyncIterator[tuple]:
    """Services (models warmed up), Redis and the bolt app; everything closed on exit."""
    from bot.runtime.services import build_services
    from bot.slack.app import SlackBot
    from bot.state.redis import open_redis
    from handlers.app import build_app

    services = build_services(settings)
    try:
        print("Loading models …", file=sys.stderr)
        await services.warm_up()
        redis = await open_redis(settings)
        try:
            if index_sample:
                await _index_sample_if_empty(services, redis.client)
            bot = SlackBot.create(settings, services.pipeline, redis.client)
            stop_worker = asyncio.Event()
            worker = None
            try:
                app = build_app(bot)
                await _check_token(app.client)
                await bot.warm_up()
                bot.remove_documents = _document_remover(services)
                if settings.sources.in_process_worker:
                    # Single-process mode: reindex jobs run here (else in `lorebot worker`s).
                    from bot.cli.sources import run_worker

                    worker = asyncio.create_task(run_worker(
                        settings, services, redis.client, stop_worker, slack_client=app.client))
                yield bot, app
            finally:
                stop_worker.set()
                if worker is not None:
                    await worker
                await bot.aclose()
        finally:
            await redis.aclose()
    finally:
        if services.llm is not None and hasattr(services.llm, "aclose"):
            await services.llm.aclose()
        await services.close()


def _document_remover(services):
    from bot.jobs.indexing import remove_source_documents

    async def remove(name: str) -> int:
        return await remove_source_documents(services, name)

    return remove


SAMPLE_MARKER = "sample-indexed"  # in the data dir: the sample was offered once, never again


async def _index_sample_if_empty(services, client=None) -> None:
    """A brand-new knowledge base gets the sample docs, once: after `sources remove sample` (or
    with anything else indexed) it is never touched again. They are registered as a public
    source (``client``: the open Redis), since the channel policy hides unregistered ones."""
    from bot.cli.commands import DOCS_DIR, _print_summary, index_paths
    from bot.cli.register import register_indexed

    marker = services.settings.data_dir / SAMPLE_MARKER
    if marker.exists() or await services.index.source_stats():
        return
    print(f"The knowledge base is empty: indexing the sample docs in {DOCS_DIR} as the source "
          "`sample`, this once (add yours with `lorebot index PATH`; `lorebot sources remove "
          "sample` removes it for good).", file=sys.stderr)
    _print_summary(await index_paths(services, [DOCS_DIR], source="sample"))
    await register_indexed(services.settings, "sample", DOCS_DIR, client=client)
    marker.write_text("The sample docs were indexed once; lorebot run will not add them again.\n")


async def _check_token(client) -> None:
    """Fail at start-up, not on the first question, when the bot token is wrong."""
    from slack_sdk.errors import SlackApiError, SlackClientError

    try:
        auth = await client.auth_test()
    except SlackApiError as exc:
        raise CliError(
            f"Slack rejected the bot token ({exc.response.get('error')}); check "
            "LOREBOT_SLACK__BOT_TOKEN (the xoxb-… token from OAuth & Permissions)"
        ) from exc
    except SlackClientError as exc:
        raise CliError(f"cannot reach the Slack API: {type(exc).__name__}") from exc
    logger.info("Connected to Slack workspace %s as %s", auth.get("team"), auth.get("user"))
