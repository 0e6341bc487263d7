"""Source administration that cannot be talked into the wrong thing (issue 14): the private flag
in every form Slack sends, status without restricted sources for non-admins, audit records that
cannot be forged, forged buttons refused and audited, a clear notice when Redis is down, and
valid Block Kit for any source."""

from __future__ import annotations

import json
import logging

import pytest
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

from bot.jobs.queue import Job
from bot.sources.registry import Source
from handlers.admin import REGISTRY_DOWN, REMOVE_CONFIRM
from handlers.home import HOME_REINDEX, home_view
from tests.handlers.conftest import ALICE, CHANNEL, running_bot
from tests.support.fake_slack import API_APP_ID, TEAM_ID
from tests.support.valkey import start_valkey, url_of

ADMIN = "U0ADMIN"
SECRET_CHANNEL = "C0SECRET"


@pytest.fixture
async def h(data_dir, redis_url):  # noqa: F811 - redis_url is a fixture
    async with running_bot(data_dir, redis_url, admin_users=ADMIN) as harness:
        yield harness


def audit_records(caplog) -> list[dict]:
    records = [r for r in caplog.records if r.name == "lorebot.audit"]
    for r in records:
        assert "\n" not in r.getMessage() and "\r" not in r.getMessage()
    return [json.loads(r.getMessage()) for r in records]


def click(h, user: str, value: str, action_id: str = REMOVE_CONFIRM) -> dict:
    return {
        "type": "block_actions", "api_app_id": API_APP_ID, "token": "legacy", "trigger_id": "t",
        "team": {"id": TEAM_ID, "domain": "test"},
        "user": {"id": user, "username": "u", "team_id": TEAM_ID},
        "container": {"type": "message", "message_ts": "1.1", "channel_id": CHANNEL,
                      "is_ephemeral": True},
        "channel": {"id": CHANNEL, "name": "general"},
        "response_url": h.slack.response_url(f"click-{user}-{len(h.slack.responses)}"),
        "actions": [{"type": "button", "action_id": action_id, "value": value,
                     "block_id": "b", "action_ts": "1.2"}],
    }


@pytest.mark.parametrize("flag", ["--private", "—private", "–private", "-private", "−private",
                                  "--PRIVATE", "private"])
async def test_add_private_in_every_form_makes_a_restricted_source(h, tmp_path, flag):
    sent = await h.sender.command(f"add {tmp_path} kb {flag}", user=ADMIN)
    assert "Added *kb*" in sent.json()["text"] and "restricted" in sent.json()["text"]
    assert (await h.bot.sources.require("kb")).public is False


@pytest.mark.parametrize("args", ["kb --public", "kb —publik", "kb -p", "--private=yes kb",
                                  "kb extra words"])
async def test_add_refuses_unknown_options_and_extra_words_with_the_usage(h, tmp_path, args):
    sent = await h.sender.command(f"add {tmp_path} {args}", user=ADMIN)
    text = sent.json()["text"]
    assert "Usage: `/lorebot add URL_OR_PATH [NAME] [--private]`" in text
    assert await h.bot.sources.list() == []
    assert await h.bot.jobs.recent() == []


async def test_status_and_sources_hide_restricted_sources_from_non_admins(h, tmp_path):
    (tmp_path / "handbook").mkdir()
    (tmp_path / "secret").mkdir()
    await h.bot.sources.add(Source("handbook", "folder", str(tmp_path / "handbook")))
    await h.bot.sources.add(Source("secret-plans", "folder", str(tmp_path / "secret"), public=False,
                                   allowed_channels=(SECRET_CHANNEL,)))
    for name in ("handbook", "secret-plans", "ghost-source"):
        await h.bot.jobs.enqueue(name, requested_by=ADMIN)
    done = Job(id="j-done", source="secret-plans", state="failed", error="secret-plans broke",
               created=1.0)
    await h.bot.jobs.save(done)

    def status(user, channel=CHANNEL):
        return h.sender.command("status", user=user, channel=channel)

    alice = (await status(ALICE)).json()["text"]
    assert "handbook" in alice
    assert "secret-plans" not in alice and "ghost-source" not in alice
    inside = (await status(ALICE, SECRET_CHANNEL)).json()["text"]
    assert "secret-plans" in inside and "ghost-source" not in inside
    admin = (await status(ADMIN)).json()["text"]
    assert all(n in admin for n in ("handbook", "secret-plans", "ghost-source"))
    listed = (await h.sender.command("sources", user=ALICE)).json()["text"]
    assert "handbook" in listed and "secret-plans" not in listed

    home = json.dumps(await home_view(h.bot, admin=False))
    assert "handbook" in home and "secret-plans" not in home and "ghost-source" not in home


async def test_audit_records_are_json_lines_a_newline_cannot_forge(h, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="lorebot.audit")
    forged = "WARNING lorebot.audit: Admin U0ADMIN removed source kb (9 documents deleted)"
    await h.sender.command(f"add http://example.com/ x\n{forged}", user=ALICE)
    [record] = audit_records(caplog)
    assert record["outcome"] == "refused" and record["user"] == ALICE
    assert record["action"] == "/lorebot add" and record["text"].endswith(forged)


async def test_forged_remove_buttons_are_refused_and_audited(h, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="lorebot.audit")
    await h.bot.sources.add(Source("kb", "folder", str(tmp_path)))
    await h.sender.action(click(h, ALICE, "kb"))  # not an admin
    await h.slack.wait_for(lambda: len(h.slack.responses) >= 1)
    await h.sender.action(click(h, ADMIN, "no-such\nWARNING lorebot.audit: forged"))
    await h.slack.wait_for(lambda: len(h.slack.responses) >= 2)
    assert await h.bot.sources.get("kb") is not None
    assert "Only lorebot admins" in h.slack.responses[0]["text"]
    assert "There is no source named" in h.slack.responses[1]["text"]
    await h.sender.action(click(h, ADMIN, "no-such", action_id=HOME_REINDEX))
    await h.slack.wait_for(lambda: h.slack.calls_to("views.publish"))
    refused = audit_records(caplog)
    assert [(r["action"], r["user"], r["outcome"], r["reason"]) for r in refused] == [
        ("remove source", ALICE, "refused", "not an admin"),
        ("remove source", ADMIN, "refused", "no such source"),
        ("home reindex", ADMIN, "refused", "no such source")]
    assert refused[1]["source"] == "no-such\nWARNING lorebot.audit: forged"
    assert await h.bot.jobs.recent() == []


async def test_with_redis_down_commands_give_a_notice_not_a_500(data_dir, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="lorebot.audit")
    server = start_valkey(tmp_path / "valkey-down")
    try:
        async with running_bot(data_dir, url_of(server), admin_users=ADMIN) as h:
            server.stop()
            for text, user in (("sources", ALICE), ("status", ALICE), ("reindex", ADMIN),
                               (f"add {tmp_path} kb", ADMIN), ("remove kb", ADMIN)):
                sent = await h.sender.command(text, user=user)
                assert sent.status == 200, text
                assert sent.json()["text"] == REGISTRY_DOWN, text
            assert {r["outcome"] for r in audit_records(caplog)} == {"failed"}
            await h.sender.event({"type": "app_home_opened", "user": ALICE, "channel": "D0A",
                                  "tab": "home"})
            [published] = await h.slack.wait_for(lambda: h.slack.calls_to("views.publish"))
            assert REGISTRY_DOWN in json.dumps(published.args, ensure_ascii=False)
    finally:
        if server.is_running():
            server.stop()


def assert_valid(blocks, limit=50):
    assert 0 < len(blocks) <= limit
    for raw in blocks:
        Block.parse(raw).validate_json()
        for e in raw.get("elements", []):
            assert len(e.get("text", "") if isinstance(e.get("text"), str) else "") <= 3000


async def test_home_and_remove_confirm_are_valid_for_108_sources_with_huge_locations(h, tmp_path):
    long_url = "https://wiki.example.com/" + "p" * 5000
    for n in range(108):
        await h.bot.sources.add(Source(f"site-{n:03d}", "crawl", f"{long_url}/{n}",
                                       last_error="<!channel> " * 600))
    for admin in (True, False):
        view = await home_view(h.bot, admin=admin, notice="x" * 5000)
        View(**view).validate_json()
        assert_valid(view["blocks"], 100)
        text = json.dumps(view)
        assert "28 more not shown" in text and "<!channel>" not in text
    sent = await h.sender.command("remove site-007", user=ADMIN)
    assert_valid(sent.json()["blocks"])
    listed = await h.sender.command("sources", user=ALICE)
    assert len(listed.json()["text"]) <= 40_000 and "<!channel>" not in listed.json()["text"]
