"""Slack listeners, one module per surface: parse the payload, call ``bot/``, render Block Kit.

No retrieval or LLM logic lives here; answers come from the pipeline behind ``SlackBot``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from slack_bolt.async_app import AsyncApp

    from bot.slack_app import SlackBot


def register(app: AsyncApp, bot: SlackBot) -> None:
    """Register every lorebot listener on ``app``."""
    from handlers import actions, admin, assistant, commands, files, home, messages

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
