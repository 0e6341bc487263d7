"""Socket Mode: the same app over Slack's WebSocket (no public URL, no request signing)."""

from __future__ import annotations

from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

from tests.handlers.conftest import CHANNEL, bot_app
from tests.support.fake_slack import APP_TOKEN, BOT_USER_ID, FakeSlack, SignedSender


async def test_mention_over_socket_mode_is_acked_and_answered(data_dir, redis_url):
    async with FakeSlack() as slack, bot_app(slack, data_dir, redis_url) as (_, retriever, _, app):
        handler = AsyncSocketModeHandler(app, APP_TOKEN)
        await handler.connect_async()
        try:
            await slack.wait_for(lambda: slack.socket_clients)
            envelope = SignedSender("unused")  # only to build the Events API body
            message = {"type": "message", "channel": CHANNEL, "user": "U0ALICE",
                       "channel_type": "channel", "ts": "1600000100.000001",
                       "text": f"<@{BOT_USER_ID}> How do I set up the VPN?"}
            first = await slack.push_event(envelope.event_body(message))
            second = await slack.push_event(envelope.event_body({**message, "type": "app_mention"}))
            await slack.wait_for(lambda: {a.get("envelope_id") for a in slack.socket_acks}
                                 >= {first, second})
            [reply] = await slack.wait_for(
                lambda: [m for m in slack.thread(CHANNEL, message["ts"])
                         if any(b["type"] == "actions" for b in m.blocks)])
            await slack.settle()
            assert len(slack.bot_messages()) == 1
            assert retriever.queries == ["How do I set up the VPN?"]
            [opened] = slack.calls_to("apps.connections.open")
            assert opened.token == APP_TOKEN
        finally:
            await handler.close_async()
