"""The adapter's pure parts: message parsing, the card's Markdown, the CLI's refusal to start
without the settings that secure the callbacks."""

from __future__ import annotations

import json

import pytest

from bot.answer.pipeline import Answer, Citation
from bot.cli.main import main
from feishu import card
from feishu.messages import message_text, parse
from tests.support.fake_feishu import BOT_OPEN_ID, message_event


def test_a_mention_of_the_bot_is_removed_and_others_are_named():
    event = message_event("ask @_user_2 or me about the VPN", chat_id="oc_1", sender="ou_a",
                          message_id="om_1", mentions=[{"key": "@_user_2", "name": "Bob",
                                                        "id": {"open_id": "ou_bob"}}])
    msg = parse("ev_1", event, BOT_OPEN_ID)
    assert msg.text == "ask @Bob or me about the VPN"
    assert msg.mentions_bot and msg.mentions_other and not msg.direct


def test_messages_from_apps_and_images_are_not_questions():
    event = message_event("hi", chat_id="oc_1", sender="ou_a", message_id="om_1")
    assert parse("ev", {**event, "sender": {**event["sender"], "sender_type": "app"}},
                 BOT_OPEN_ID) is None
    event["message"].update(message_type="image", content=json.dumps({"image_key": "img_1"}))
    assert parse("ev", event, BOT_OPEN_ID) is None


def test_rich_text_posts_are_read():
    content = {"zh_cn": {"title": "VPN", "content": [[
        {"tag": "at", "user_id": "@_user_1", "user_name": "lorebot"},
        {"tag": "text", "text": " how do I set it up?"}]]}}
    assert message_text("post", json.dumps(content)) == "VPN\n@_user_1 how do I set it up?"


def test_text_from_documents_cannot_mention_the_whole_chat_or_inject_tags():
    answer = Answer(text='Per the wiki <at id=all></at> do it [1]. <font color="red">x</font>',
                    citations=(Citation(1, "VPN [setup]", "kb/vpn.md", None, "Install it."),),
                    mode="llm", notice=None, hits=())
    rendered = json.dumps(card.answer_card(answer, "a1"))
    assert "<at" not in rendered and "<font" not in rendered
    assert "VPN (setup) (vpn.md)" in rendered  # no link without a web address; brackets defused


def test_only_web_links_are_linked():
    cites = (Citation(1, "T", None, "javascript:alert(1)", ""),
             Citation(2, "U", None, "https://x.example/a b(c)", ""))
    assert card.link_citations("see [1] and [2]", cites) == \
        "see [1] and [[2]](https://x.example/a%20b%28c%29)"


@pytest.mark.parametrize("env, missing", [
    ({}, "LOREBOT_LARK__APP_ID and LOREBOT_LARK__APP_SECRET and LOREBOT_LARK__ENCRYPT_KEY"),
    ({"LOREBOT_LARK__APP_ID": "cli_x", "LOREBOT_LARK__APP_SECRET": "s"},
     "LOREBOT_LARK__ENCRYPT_KEY (or LOREBOT_LARK__VERIFICATION_TOKEN) must be set"),
])
def test_lark_serve_refuses_to_start_without_its_settings(data_dir, monkeypatch, capsys, env,
                                                          missing):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["lark", "serve"]) != 0
    err = capsys.readouterr().err
    assert missing in err and "s\n" not in err.replace("settings", "")
