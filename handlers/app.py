"""The bolt app: built from the bot's settings, every lorebot listener registered."""

from __future__ import annotations

import logging

import aiohttp
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.app import SlackBot, SlackConfigError, web_client
from handlers import actions, admin, assistant, commands, files, home, messages


def build_app(bot: SlackBot, client: AsyncWebClient | None = None) -> AsyncApp:
    """The bolt app with every lorebot listener registered (call it inside the event loop: it
    opens the bot's HTTP session)."""
    s = bot.settings.slack
    if s.bot_token is None:
        raise SlackConfigError("LOREBOT_SLACK__BOT_TOKEN is not set (the xoxb-… bot token)")
    secret = s.signing_secret.get_secret_value() if s.signing_secret else ""
    if client is None:
        if bot.http_session is None:
            bot.http_session = aiohttp.ClientSession()
        client = web_client(bot.settings, bot.http_session)
    app = AsyncApp(
        client=client,
        signing_secret=secret,
        # Ack first, answer in the background: Slack wants a response within 3 s.
        process_before_response=False,
        logger=logging.getLogger("slack_bolt"),
    )
    register(app, bot)
    return app


def register(app: AsyncApp, bot: SlackBot) -> None:
    """Register every lorebot listener on ``app``."""
    # The shared-files middleware sees every event and passes it on (before the assistant's,
    # which keeps assistant-thread messages to itself).
    files.register(app, bot)
    # The assistant middleware first: it takes assistant-thread messages before `message` does.
    assistant.register(app, bot)
    messages.register(app, bot)
    commands.register(app, bot)
    actions.register(app, bot)
    admin.register(app, bot)
    home.register(app, bot)
