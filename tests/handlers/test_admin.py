"""Knowledge sources run from Slack, end to end: signed slash commands into the running app,
the fake Slack Web API, a real Valkey, a real index and embedding model, a worker in-process,
and a local web site. Admins add, remove and reindex; everyone else is refused; a restricted
source never shows outside the channels it is allowed in."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.cli.slack import _document_remover
from bot.cli.sources import run_worker
from bot.settings import Settings, SourcesSettings
from bot.sources.registry import Source
from bot.runtime.services import build_services
from handlers.admin import REMOVE_CONFIRM
from tests.handlers.conftest import ALICE, CHANNEL, running_bot
from tests.support.fake_slack import API_APP_ID, BOT_TOKEN, TEAM_ID
from tests.support.web_site import WebSite

ADMIN = "U0ADMIN"
SECRET_CHANNEL = "C0SECRET"
QUESTION = "How do I connect to the office network with the VPN?"


@asynccontextmanager
async def admin_bot(data_dir, redis: str, **slack) -> AsyncIterator:
    """The Slack bot over a real index with a worker running in-process, as `lorebot serve`."""
    # The test web sites listen on loopback, which web sources refuse unless allowed.
    sources = SourcesSettings(progress_interval_s=0.1, fetch_timeout_s=1.0, job_lock_ttl_s=5,
                              max_page_mb=1.0, allow_private_hosts="127.0.0.1")
    services = build_services(Settings(_env_file=None, data_dir=data_dir, sources=sources),
                              with_llm=False)
    try:
        async with running_bot(data_dir, redis, pipeline=services.pipeline,
                               admin_users=f"{ADMIN}, U0OTHERADMIN", **slack) as h:
            h.services = services
            h.bot.remove_documents = _document_remover(services)
            settings = h.settings.model_copy(update={"sources": sources})
            stop = asyncio.Event()
            slack_client = AsyncWebClient(token=BOT_TOKEN, base_url=h.slack.api_url)
            worker = asyncio.create_task(run_worker(settings, services, h.bot.sources.client, stop,
                                                    slack_client=slack_client))
            try:
                yield h
            finally:
                stop.set()
                await worker
    finally:
        await services.close()


@pytest.fixture
async def admin_harness(data_dir, redis_url):  # noqa: F811 - redis_url is a fixture
    async with admin_bot(data_dir, redis_url) as h:
        yield h


async def finished_job_message(h, name: str, channel: str = CHANNEL, timeout: float = 120):
    return (await h.slack.wait_for(lambda: [
        m for m in h.slack.bot_messages(channel)
        if f"Reindexed *{name}*" in m.text or f"Reindex of *{name}* failed" in m.text], timeout))[0]


async def ask(h, question: str, channel: str = CHANNEL):
    message = await h.mention(question, channel=channel)
    [reply] = await h.replies(channel, message["ts"], timeout=60)
    return reply


def cited_urls(reply) -> str:
    return json.dumps(reply.blocks)


async def test_an_admin_adds_a_site_sees_progress_and_answers_cite_it(admin_harness, caplog):
    h = admin_harness
    caplog.set_level(logging.WARNING, logger="lorebot.audit")
    async with WebSite(slow_s=3.0) as site:
        sent = await h.sender.command(f"add {site.url}/ handbook", user=ADMIN)
        assert sent.status == 200 and "Added *handbook*" in sent.json()["text"]
        message = await finished_job_message(h, "handbook")
    assert message.updates >= 2  # running, progress …, the summary: one message, updated
    updates = [c.args["text"] for c in h.slack.calls_to("chat.update") if c.args["ts"] == message.ts]
    assert any("documents done" in t or "pages fetched" in t for t in updates)
    assert "3 added" in message.text and "HTTP 404" in message.text
    assert f"skipped {site.url}/loop: redirect loop" in message.text
    audited = [json.loads(r.getMessage()) for r in caplog.records if r.name == "lorebot.audit"]
    assert [(a["user"], a["action"], a["source"]) for a in audited] == [
        (ADMIN, "/lorebot add", "handbook")]

    reply = await ask(h, QUESTION)
    assert "Zorbulator" in reply.text
    assert f"{site.url}/vpn.html" in cited_urls(reply)

    sent = await h.sender.command("sources", user=ALICE)
    assert "*handbook* (crawl, public): 3 documents" in sent.json()["text"]
    sent = await h.sender.command("status", user=ALICE)
    assert "Reindexed *handbook*" in sent.json()["text"]


async def test_reindexing_an_unchanged_site_reembeds_nothing(admin_harness):
    h = admin_harness
    async with WebSite(slow_s=3.0) as site:
        await h.bot.sources.add(Source("handbook", "crawl", site.url + "/"))
        await h.sender.command("reindex handbook", user=ADMIN)
        await finished_job_message(h, "handbook")
        first = (await h.bot.jobs.recent(1))[0]
        sent = await h.sender.command("reindex handbook", user=ADMIN)
        assert "Reindexing *handbook*" in sent.json()["text"]
        second = None
        for _ in range(600):
            jobs = await h.bot.jobs.recent(2)
            if jobs[0].id != first.id and jobs[0].state == "done":
                second = jobs[0]
                break
            await asyncio.sleep(0.1)
    assert first.summary["added"] == 3
    assert second is not None and second.summary["chunks"] == 0
    assert second.summary["unchanged"] == 3 and second.summary["added"] == 0


@pytest.mark.parametrize("text", ["add http://example.com/ x", "remove handbook",
                                  "reindex handbook", "reindex", "channel allow handbook"])
async def test_non_admins_are_refused_every_changing_command(admin_harness, text, caplog, tmp_path):
    h = admin_harness
    caplog.set_level(logging.WARNING, logger="lorebot.audit")
    await h.bot.sources.add(Source("handbook", "folder", str(tmp_path)))
    sent = await h.sender.command(text, user=ALICE)
    assert sent.status == 200
    body = sent.json()
    assert body["response_type"] == "ephemeral" and "Only lorebot admins" in body["text"]
    assert await h.bot.jobs.recent() == []
    assert [s.name for s in await h.bot.sources.list()] == ["handbook"]
    assert (await h.bot.sources.require("handbook")).allowed_channels == ()
    audited = [json.loads(r.getMessage()) for r in caplog.records if r.name == "lorebot.audit"]
    sub, _, rest = text.partition(" ")
    assert [(a["user"], a["action"], a["outcome"], a["text"]) for a in audited] == [
        (ALICE, f"/lorebot {sub}", "refused", rest)]
    await h.slack.settle(0.2)
    assert h.slack.bot_messages() == []


async def test_everyone_may_list_sources_see_status_and_help(admin_harness, tmp_path):
    h = admin_harness
    for user in (ALICE, ADMIN):
        assert "No knowledge sources yet" in (await h.sender.command("sources", user=user)).json()["text"]
        assert "No reindex jobs yet" in (await h.sender.command("status", user=user)).json()["text"]
        help_text = (await h.sender.command("help", user=user)).json()["text"]
        assert "/lorebot add URL_OR_PATH" in help_text and "/lorebot ask QUESTION" in help_text
        assert "/lorebot add" in (await h.sender.command("bogus", user=user)).json()["text"]
    await h.bot.sources.add(Source("secret", "folder", str(tmp_path), public=False))
    assert "secret" not in (await h.sender.command("sources", user=ALICE)).json()["text"]
    assert "*secret* (folder, restricted)" in (await h.sender.command("sources", user=ADMIN)).json()["text"]


async def test_remove_asks_to_confirm_then_deletes_the_source_and_its_documents(admin_harness, tmp_path):
    h = admin_harness
    (tmp_path / "kb").mkdir()
    (tmp_path / "kb" / "vpn.md").write_text("# VPN\n\nInstall the Zorbulator VPN client.\n")
    sent = await h.sender.command(f"add {tmp_path / 'kb'} notes", user=ADMIN)
    assert "Added *notes*" in sent.json()["text"]
    await finished_job_message(h, "notes")
    assert len(await h.services.index.documents("notes")) == 1

    sent = await h.sender.command("remove notes", user=ADMIN)
    body = sent.json()
    buttons = body["blocks"][1]["elements"]
    assert [b["action_id"] for b in buttons][0] == REMOVE_CONFIRM
    assert await h.bot.sources.get("notes") is not None  # nothing happens before the click

    def click(user):
        return {
            "type": "block_actions", "api_app_id": API_APP_ID, "token": "legacy",
            "trigger_id": "t", "team": {"id": TEAM_ID, "domain": "test"},
            "user": {"id": user, "username": "u", "team_id": TEAM_ID},
            "container": {"type": "message", "message_ts": "1.1", "channel_id": CHANNEL,
                          "is_ephemeral": True},
            "channel": {"id": CHANNEL, "name": "general"},
            "response_url": h.slack.response_url(f"remove-{user}"),
            "actions": [{**buttons[0], "block_id": "b", "action_ts": "1.2"}],
        }

    await h.sender.action(click(ALICE))  # a forwarded button does not make anyone an admin
    [refused] = await h.slack.wait_for(lambda: h.slack.responses)
    assert "Only lorebot admins" in refused["text"]
    assert await h.bot.sources.get("notes") is not None
    await h.sender.action(click(ADMIN))
    done = await h.slack.wait_for(lambda: [r for r in h.slack.responses if "Removed" in r.get("text", "")])
    assert "1 documents deleted" in done[0]["text"]
    assert await h.bot.sources.get("notes") is None
    assert await h.services.index.documents("notes") == {}


async def test_a_restricted_source_is_searched_only_where_it_is_allowed(admin_harness):
    h = admin_harness
    async with WebSite(slow_s=0) as public_site, WebSite(slow_s=0) as secret_site:
        del public_site.pages["/vpn.html"]  # the VPN page is only on the restricted site
        public_site.pages["/"] = ("Welcome", "<p>The public handbook: the office is open "
                                  "from eight to six, and the VPN is documented elsewhere.</p>")
        await h.sender.command(f"add {public_site.url}/ public-site", user=ADMIN)
        await h.sender.command(f"add {secret_site.url}/ secret-site private", user=ADMIN)
        await finished_job_message(h, "public-site")
        await finished_job_message(h, "secret-site")
        sent = await h.sender.command("channel allow secret-site", user=ADMIN,
                                      channel=SECRET_CHANNEL)
        assert "now search *secret-site*" in sent.json()["text"]

        general = await ask(h, QUESTION, CHANNEL)
        secret = await ask(h, QUESTION, SECRET_CHANNEL)
        dm = await ask(h, QUESTION, "D0ALICE")
    assert secret_site.url not in cited_urls(general) and "Zorbulator" not in general.text
    assert secret_site.url not in cited_urls(dm) and "Zorbulator" not in dm.text
    assert f"{secret_site.url}/vpn.html" in cited_urls(secret) and "Zorbulator" in secret.text

    await h.sender.command("channel deny secret-site", user=ADMIN, channel=SECRET_CHANNEL)
    again = await ask(h, QUESTION, SECRET_CHANNEL)
    assert secret_site.url not in cited_urls(again)


async def test_workspace_admins_count_when_configured(data_dir, redis_url):  # noqa: F811
    async with admin_bot(data_dir, redis_url, workspace_admins_are_admins=True) as h:
        h.slack._users_info = lambda args: {"user": {"id": args["user"],
                                                     "is_admin": args["user"] == "U0BOSS"}}
        sent = await h.sender.command("reindex", user="U0BOSS")
        assert "No sources to reindex" in sent.json()["text"]
        sent = await h.sender.command("reindex", user=ALICE)
        assert "Only lorebot admins" in sent.json()["text"]


async def test_a_channel_added_as_a_source_answers_in_that_channel_with_permalinks(admin_harness):
    h = admin_harness
    ops = "C0OPS"
    h.slack.add_user_message(ops, "1690000001.000100",
                             "How do we rotate the Frobnitz database password?", "U0BOB")
    h.slack.add_user_message(ops, "1690000002.000100",
                             "Run the Frobnitz rotation playbook from the ops repo; it updates "
                             "the vault too.", "U0CAROL", thread_ts="1690000001.000100")
    h.slack.add_user_message(ops, "1690000003.000100", "Lunch at noon today.", "U0BOB")

    def history(args):
        tops = [m for m in h.slack.messages.values()
                if m.channel == args["channel"] and not m.bot_id and m.thread_ts is None]
        out = []
        for m in sorted(tops, key=lambda m: float(m.ts), reverse=True):
            replies = sum(1 for r in h.slack.messages.values() if r.thread_ts == m.ts)
            out.append({**m.as_slack(), **({"reply_count": replies} if replies else {})})
        return {"messages": out, "has_more": False}

    h.slack._conversations_history = history
    h.slack._chat_getPermalink = lambda args: {
        "permalink": f"https://test.slack.com/archives/{args['channel']}/p{args['message_ts'].replace('.', '')}"}

    sent = await h.sender.command(f"add <#{ops}|ops>", user=ADMIN, channel=ops)
    assert "Added *slack-ops* (slack_channel" in sent.json()["text"]
    message = await finished_job_message(h, "slack-ops", channel=ops)
    assert "2 added" in message.text

    reply = await ask(h, "How do I rotate the Frobnitz database password?", ops)
    assert "rotation playbook" in reply.text
    assert f"https://test.slack.com/archives/{ops}/p1690000001000100" in cited_urls(reply)
    elsewhere = await ask(h, "How do I rotate the Frobnitz database password?", CHANNEL)
    assert "rotation playbook" not in elsewhere.text


async def test_the_home_tab_shows_sources_and_jobs_and_admins_can_reindex(admin_harness, tmp_path):
    h = admin_harness
    h.slack._views_publish = lambda args: {"view": {"id": "V1"}}
    (tmp_path / "kb").mkdir()
    (tmp_path / "kb" / "a.md").write_text("# A\n\nThe cafeteria opens at noon.\n")
    await h.bot.sources.add(Source("notes", "folder", str(tmp_path / "kb")))
    (tmp_path / "hidden").mkdir()  # one folder cannot be two sources
    await h.bot.sources.add(Source("hidden", "folder", str(tmp_path / "hidden"), public=False))

    def view_of(call):
        view = call.args["view"]
        return json.loads(view) if isinstance(view, str) else view

    async def open_home(user):
        before = len(h.slack.calls_to("views.publish"))
        await h.sender.event({"type": "app_home_opened", "user": user, "channel": "D0HOME",
                              "tab": "home", "event_ts": h.next_ts()})
        calls = await h.slack.wait_for(lambda: h.slack.calls_to("views.publish")[before:] or None)
        return calls[-1]

    call = await open_home(ALICE)
    text = json.dumps(view_of(call))
    assert call.args["user_id"] == ALICE and "*notes* (folder)" in text
    assert "hidden" not in text and "lorebot_home_reindex" not in text  # no buttons for users

    call = await open_home(ADMIN)
    view = view_of(call)
    assert "*hidden* (folder, restricted)" in json.dumps(view)
    button = next(b["accessory"] for b in view["blocks"]
                  if b.get("accessory", {}).get("value") == "notes")
    payload = {"type": "block_actions", "api_app_id": API_APP_ID, "token": "legacy",
               "trigger_id": "t", "team": {"id": TEAM_ID, "domain": "test"},
               "user": {"id": ADMIN, "username": "admin", "team_id": TEAM_ID},
               "container": {"type": "view", "view_id": "V1"}, "view": {"id": "V1", "type": "home"},
               "actions": [{**button, "block_id": "b", "action_ts": "1.2"}]}
    await h.sender.action(payload)
    for _ in range(600):
        jobs = await h.bot.jobs.recent(1)
        if jobs and jobs[0].state == "done":
            break
        await asyncio.sleep(0.1)
    assert jobs[0].source == "notes" and jobs[0].requested_by == ADMIN
    assert jobs[0].summary["added"] == 1

    await h.sender.action({**payload, "user": {"id": ALICE, "username": "a", "team_id": TEAM_ID}})
    refused = await h.slack.wait_for(lambda: [
        c for c in h.slack.calls_to("views.publish") if "Only lorebot admins" in json.dumps(view_of(c))])
    assert refused[0].args["user_id"] == ALICE
    assert len(await h.bot.jobs.recent(5)) == 1
