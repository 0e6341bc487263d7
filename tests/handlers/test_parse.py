"""Which Slack messages are questions, and their text."""

from __future__ import annotations

from handlers.parse import (
    conversation_key,
    dedupe_keys,
    is_person_message,
    mentions,
    mentions_someone_else,
    question_text,
)

BOT = "U0LOREBOT"


def test_question_text_removes_the_mention_and_unwraps_slack_markup():
    text = (f"<@{BOT}> how does <@U0BOB|bob> reach <#C0IT|it-help> at "
            "<https://vpn.example.com|the portal> or <mailto:it@x.test> &amp; <!here>?")
    assert question_text(text, BOT) == (
        "how does @U0BOB reach #it-help at the portal or mailto:it@x.test & @here?")
    assert question_text(f"<@{BOT}>", BOT) == ""


def test_mentions():
    assert mentions(f"hey <@{BOT}>", BOT)
    assert not mentions("hey <@U0BOB>", BOT)
    assert mentions_someone_else(f"<@{BOT}> and <@U0BOB>", BOT)
    assert not mentions_someone_else(f"<@{BOT}> only", BOT)


def test_person_messages_only():
    assert is_person_message({"user": "U1", "text": "hi"})
    assert is_person_message({"user": "U1", "text": "hi", "subtype": "thread_broadcast"})
    assert not is_person_message({"user": "U1", "bot_id": "B1"})
    assert not is_person_message({"subtype": "bot_message", "bot_id": "B1"})
    for subtype in ("message_changed", "message_deleted", "channel_join", "channel_topic"):
        assert not is_person_message({"user": "U1", "subtype": subtype})


def test_keys():
    event = {"channel": "C1", "ts": "1.2"}
    assert dedupe_keys(event, "Ev1") == ["msg:C1:1.2", "evt:Ev1"]
    assert conversation_key("T1", "C1", "1.2") == "T1:C1:1.2"
    assert conversation_key(None, "D1", None) == "-:D1:main"
