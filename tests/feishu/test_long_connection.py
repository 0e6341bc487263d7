"""Events over the SDK's long-connection WebSocket client, against the fake's WebSocket."""

from __future__ import annotations

import json
from contextlib import asynccontextmanager

from bot.answer.pipeline import AnswerPipeline
from bot.state.redis import make_client
from feishu.bot import LarkBot
from feishu.longconn import LongConnection
from tests.feishu.conftest import ALICE, GROUP, SourceFilteringRetriever, HITS, make_settings
from tests.support.fake_feishu import APP_ID, FakeFeishu, card_click, message_event


@asynccontextmanager
async def connected_bot(data_dir, redis):
    async with FakeFeishu() as fake:
        settings = make_settings(data_dir, fake.base_url, redis)
        client = make_client(redis, settings.redis)
        bot = LarkBot.create(settings, AnswerPipeline(SourceFilteringRetriever(HITS), None,
                                                      settings), client)
        await bot.start()
        connection = LongConnection(bot)
        await connection.start()
        try:
            yield fake, bot
        finally:
            await connection.stop(drain_s=10)
            await client.aclose()


def envelope(event_type: str, event: dict, event_id: str) -> dict:
    return {"schema": "2.0", "header": {"event_id": event_id, "event_type": event_type,
                                        "app_id": APP_ID, "tenant_key": "t"}, "event": event}


async def test_a_mention_over_the_long_connection_gets_one_card_and_a_click_is_stored(
        data_dir, redis_url):  # noqa: F811
    async with connected_bot(data_dir, redis_url) as (fake, bot):
        event = message_event("how do I set up the VPN?", chat_id=GROUP, sender=ALICE,
                              message_id="om_ws_1")
        answer = await fake.push(envelope("im.message.receive_v1", event, "ev_ws_1"))
        assert answer["code"] == 200
        again = await fake.push(envelope("im.message.receive_v1", event, "ev_ws_1"))
        assert again["code"] == 200
        [reply] = await fake.finished_replies("om_ws_1")
        assert "[[1]](https://wiki.example.com/doc1)" in reply.text and reply.reply_in_thread
        click = await fake.push(envelope("card.action.trigger", card_click(
            value=reply.buttons[0]["value"], user=ALICE, chat_id=GROUP,
            message_id=reply.message_id), "ev_ws_2"))
        assert click["code"] == 200 and click["data"]["toast"]["type"] == "success"
        [record] = [json.loads(line) for line in
                    (bot.settings.data_dir / "feedback.jsonl").read_text().splitlines()]
        assert record["rating"] == "helpful" and record["answer"]["question"]
        assert len(fake.replies_to("om_ws_1")) == 1
