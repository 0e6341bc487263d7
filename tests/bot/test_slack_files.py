"""Files shared in Slack as a knowledge source, against the fake Slack Web API (``files.list``
and a download route that wants the bot token): listing and paging, downloads, the folder
loaders' conversions and failure reasons, Slack's sign-in page instead of a file; then a real
Valkey queue and worker indexing them into a real index, a question citing the file's
permalink, and `/lorebot add files` plus a shared file queuing a reindex from Slack."""

from __future__ import annotations

import asyncio
import json

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.jobs.queue import JobQueue, wait_for
from bot.jobs.worker import Worker
from bot.jobs.indexing import index_source
from bot.jobs.texts import job_text
from bot.state.redis import make_client
from bot.settings import RedisSettings, SearchSettings, Settings, SourcesSettings
from bot.sources.slack_files import HTML_INSTEAD, SlackFilesError, download, load_files
from bot.sources.registry import Source, SourceRegistry
from bot.runtime.services import build_services
from handlers import texts
from search.models import Document, LoadFailure
from tests.handlers.conftest import ALICE, CHANNEL
from tests.handlers.test_admin import ADMIN, admin_bot, ask, cited_urls, finished_job_message
from tests.support.broken_files import write_docx
from tests.support.fake_slack import BOT_TOKEN, SIGN_IN_PAGE, FakeSlack
from tests.support.valkey import redis_url, valkey_server  # noqa: F401

FILES = "C0FILES"
MB = 1024 * 1024
HANDBOOK = (b"# Remote access\n\nThe Quuxnet VPN gateway is vpn7.example.com; connect with "
            b"the Quuxnet client and your hardware key.\n")


def docx_bytes(tmp_path) -> bytes:
    path = write_docx(tmp_path / "onboarding.docx", [("Onboarding checklist", [
        "New engineers receive a hardware security key on their first day."])])
    return path.read_bytes()


def share_the_usual(slack: FakeSlack, tmp_path, channel: str = FILES) -> dict[str, object]:
    """A Markdown file, a DOCX, a corrupt PDF and an unsupported binary, shared in ``channel``."""
    return {
        "md": slack.share_file(channel, "handbook.md", HANDBOOK, title="Remote access handbook",
                               mimetype="text/plain", filetype="markdown"),
        "docx": slack.share_file(channel, "onboarding.docx", docx_bytes(tmp_path),
                                 mimetype="application/vnd.openxmlformats-officedocument."
                                 "wordprocessingml.document"),
        "pdf": slack.share_file(channel, "broken.pdf", b"%PDF-1.7\n" + bytes(range(256)) * 8,
                                mimetype="application/pdf"),
        "png": slack.share_file(channel, "logo.png", b"\x89PNG\r\n\x1a\n" + bytes(256),
                                mimetype="image/png"),
    }


def permalink(slack: FakeSlack, file) -> str:
    return file.as_slack(slack.base_url)["permalink"]


def by_path(items) -> tuple[dict[str, Document], dict[str, str]]:
    docs = {i.path: i for i in items if isinstance(i, Document)}
    failures = {f.path: f.reason for f in items if isinstance(f, LoadFailure)}
    return docs, failures


@pytest.fixture
async def slack():
    async with FakeSlack() as fake:
        yield fake


@pytest.fixture
async def client(slack):
    return AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_url)


# -- the loader -----------------------------------------------------------------------------


async def test_shared_files_are_downloaded_with_the_bot_token_and_converted(slack, client,
                                                                          tmp_path):
    files = share_the_usual(slack, tmp_path)
    files["html_page"] = slack.share_file(FILES, "faq.html", b"<html><body><h1>FAQ</h1><p>The "
                                          b"canteen opens at noon.</p></body></html>",
                                          mimetype="text/html")
    files["no_scope"] = slack.share_file(FILES, "policy.md", b"# Policy\n\nBe kind.\n",
                                         serve="html")
    files["gone"] = slack.share_file(FILES, "gone.md", b"# Gone\n\nDeleted.\n", serve="missing")
    files["huge"] = slack.share_file(FILES, "huge.pdf", b"%PDF-1.4\n", size=30 * MB)
    files["drive"] = slack.share_file(FILES, "plan.docx", b"", mode="external")
    slack.share_file("C0OTHER", "elsewhere.md", b"# Elsewhere\n\nNot this channel.\n")
    progress = []

    items = await load_files(client, "team-files", FILES, max_bytes=20 * MB, timeout_s=5,
                             on_progress=lambda d, t: progress.append((d, t)))
    docs, failures = by_path(items)

    assert len(items) == 9 and progress[-1] == (9, 9)
    md = docs[permalink(slack, files["md"])]
    assert md.title == "Remote access handbook" and md.url == md.path == permalink(slack, files["md"])
    assert "vpn7.example.com" in md.text and md.source == "team-files"
    docx = docs[permalink(slack, files["docx"])]
    assert docx.title == "onboarding.docx" and "# Onboarding checklist" in docx.text
    assert "canteen opens at noon" in docs[permalink(slack, files["html_page"])].text
    assert set(docs) == {permalink(slack, files[k]) for k in ("md", "docx", "html_page")}

    assert failures[permalink(slack, files["pdf"])].startswith("could not read this PDF file")
    assert failures[permalink(slack, files["png"])].startswith("unsupported file type '.png'")
    assert failures[permalink(slack, files["no_scope"])] == HTML_INSTEAD
    assert "file not found (HTTP 404)" in failures[permalink(slack, files["gone"])]
    assert "30.0 MB is over the 20 MB limit" in failures[permalink(slack, files["huge"])]
    assert "external file" in failures[permalink(slack, files["drive"])]

    # Every download carried the bot token; what is refused before downloading is not fetched.
    fetched = {file_id for file_id, _ in slack.downloads}
    assert all(token == BOT_TOKEN for _, token in slack.downloads)
    assert not fetched & {files[k].id for k in ("png", "huge", "drive")}
    assert [c.args["channel"] for c in slack.calls_to("files.list")] == [FILES]

    # Listed again, an unchanged file is the same document: same id, same content hash.
    again, _ = by_path(await load_files(client, "team-files", FILES, max_bytes=20 * MB,
                                        timeout_s=5))
    assert {(d.doc_id, d.content_hash) for d in again.values()} == \
        {(d.doc_id, d.content_hash) for d in docs.values()}


async def test_a_download_without_the_token_gets_the_sign_in_page_and_is_not_indexed(slack):
    file = slack.share_file(FILES, "notes.md", b"# Notes\n\nSecret notes.\n").as_slack(
        slack.base_url)
    import aiohttp

    from search.errors import LoadError

    async with aiohttp.ClientSession() as session:
        with pytest.raises(LoadError) as no_token:
            await download(session, file["url_private_download"], "", max_bytes=MB)
        with pytest.raises(LoadError) as wrong_token:
            await download(session, file["url_private_download"], "xoxb-wrong", max_bytes=MB)
        assert await download(session, file["url_private_download"], BOT_TOKEN,
                              max_bytes=MB) == b"# Notes\n\nSecret notes.\n"
        with pytest.raises(LoadError, match="over the"):
            await download(session, file["url_private_download"], BOT_TOKEN, max_bytes=10)
    assert str(no_token.value) == HTML_INSTEAD
    assert "download refused (HTTP 403)" in str(wrong_token.value)
    assert SIGN_IN_PAGE.startswith(b"<!DOCTYPE html>")


async def test_files_list_is_paged_and_its_errors_stop_the_run(slack, client):
    slack.files_page_size = 2
    for n in range(5):
        slack.share_file(FILES, f"note{n}.md", f"# Note {n}\n\nNumber {n} of five.\n".encode())
    items = await load_files(client, "notes", FILES, max_bytes=MB, timeout_s=5)
    assert sorted(i.title for i in items) == [f"note{n}.md" for n in range(5)]
    assert [c.args["page"] for c in slack.calls_to("files.list")] == ["1", "2", "3"]

    slack.fail("files.list", "missing_scope")
    with pytest.raises(SlackFilesError, match="missing_scope .*files:read scope"):
        await load_files(client, "notes", FILES, max_bytes=MB, timeout_s=5)


async def test_without_a_slack_client_a_files_source_fails_with_a_clear_error():
    from bot.sources.registry import SourceRegistryError

    with pytest.raises(SourceRegistryError, match="without a Slack bot token.*BOT_TOKEN"):
        await index_source(None, Source("f", "slack_files", FILES))


# -- a worker on a real queue and index -----------------------------------------------------


@pytest.mark.slow
async def test_a_worker_indexes_shared_files_reports_failures_and_reindexes_nothing_twice(
        slack, client, redis_url, tmp_path):  # noqa: F811
    files = share_the_usual(slack, tmp_path)
    redis = make_client(redis_url, RedisSettings(timeout_s=5))
    settings = Settings(_env_file=None, data_dir=tmp_path / "data",
                        search=SearchSettings(max_file_mb=5),
                        sources=SourcesSettings(fetch_timeout_s=5))
    registry, queue = SourceRegistry(redis), JobQueue(redis)
    await registry.add(Source("ops-files", "slack_files", FILES, public=False,
                              allowed_channels=(FILES,)))
    try:
        async with build_services(settings, with_llm=False) as services:
            worker = Worker(queue, registry, lambda src, p: index_source(
                services, src, p, slack_client=client), worker_id="w", poll_s=0.05)
            stop = asyncio.Event()
            task = asyncio.create_task(worker.run(stop))
            try:
                first = await wait_for(queue, (await queue.enqueue("ops-files"))[0].id, 120)
                second = await wait_for(queue, (await queue.enqueue("ops-files"))[0].id, 120)
            finally:
                stop.set()
                await task
            answer = await services.pipeline.answer("What is the Quuxnet VPN gateway host?",
                                                    sources=["ops-files"])
    finally:
        await redis.aclose()

    assert first.state == "done", first.error
    s = first.summary
    assert (s["added"], s["updated"], s["removed"]) == (2, 0, 0) and s["chunks"] >= 2
    reasons = {f["path"]: f["reason"] for f in s["failed"]}
    assert set(reasons) == {permalink(slack, files["pdf"]), permalink(slack, files["png"])}
    assert "could not read this PDF file" in reasons[permalink(slack, files["pdf"])]
    assert "unsupported file type '.png'" in reasons[permalink(slack, files["png"])]
    text = job_text(first)
    assert "2 added" in text and "2 failed" in text and "skipped" in text and "logo.png" in text

    assert "vpn7.example.com" in answer.text
    assert answer.citations[0].url == permalink(slack, files["md"])
    assert answer.citations[0].title == "Remote access handbook"

    assert second.state == "done"
    assert (second.summary["unchanged"], second.summary["added"], second.summary["updated"],
            second.summary["chunks"], second.summary["removed"]) == (2, 0, 0, 0, 0)
    assert (await registry.require("ops-files")).last_summary["unchanged"] == 2


# -- from Slack -----------------------------------------------------------------------------


async def new_jobs(h, count: int, timeout_s: float = 120) -> list:
    """Wait for ``count`` jobs queued since the last call and for them to finish; then make
    sure no further one was queued."""
    seen = getattr(h, "seen_jobs", set())
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        jobs = [j for j in await h.bot.jobs.recent(20) if j.id not in seen]
        if len(jobs) >= count and all(j.state in ("done", "failed") for j in jobs):
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)  # another job, had one been queued, would show up by now
    jobs = [j for j in await h.bot.jobs.recent(20) if j.id not in seen]
    h.seen_jobs = seen | {j.id for j in jobs}
    return jobs


@pytest.mark.slow
async def test_add_files_is_for_admins_and_needs_a_conversation(data_dir, redis_url):  # noqa: F811
    async with admin_bot(data_dir, redis_url) as h:
        sent = await h.sender.command(f"add files <#{FILES}|ops>", user=ALICE, channel=FILES)
        assert "Only lorebot admins" in sent.json()["text"]
        sent = await h.sender.command("add files", user=ALICE, channel="D0ALICE")
        assert "Only lorebot admins" in sent.json()["text"]
        assert await h.bot.sources.list() == [] and await h.bot.jobs.recent() == []

        sent = await h.sender.command("add files", user=ADMIN, channel=CHANNEL)
        assert "Usage: `/lorebot add files #channel [NAME]`" in sent.json()["text"]
        sent = await h.sender.command("add files <#C0X|x> bad/name", user=ADMIN, channel=CHANNEL)
        assert "is not valid" in sent.json()["text"]
        assert await h.bot.sources.list() == []
        help_text = (await h.sender.command("help", user=ALICE)).json()["text"]
        assert "/lorebot add files #channel [NAME]" in help_text

        # A file shared in a DM without a word is not a question: no "ask me something" reply.
        file = h.slack.share_file("D0ALICE", "notes.md", b"# Notes\n", user=ALICE)
        await h.sender.event(h.message("", channel="D0ALICE", channel_type="im",
                                       subtype="file_share",
                                       files=[file.as_slack(h.slack.base_url)]))
        await h.sender.event(h.message("what is in this file?", channel="D0ALICE",
                                       channel_type="im", subtype="file_share",
                                       files=[file.as_slack(h.slack.base_url)]))
        await h.slack.wait_for(lambda: h.slack.bot_messages("D0ALICE"), timeout=60)
        await h.slack.settle(0.3)
        replies = h.slack.bot_messages("D0ALICE")
        assert len(replies) == 1 and texts.EMPTY_QUESTION not in replies[0].text  # one answer


@pytest.mark.slow
async def test_files_added_from_slack_are_cited_there_and_a_new_share_reindexes(
        data_dir, redis_url, tmp_path):  # noqa: F811
    async with admin_bot(data_dir, redis_url) as h:
        files = share_the_usual(h.slack, tmp_path)
        sent = await h.sender.command(f"add files <#{FILES}|ops>", user=ADMIN, channel=FILES)
        assert "Added *files-ops* (slack_files: C0FILES, restricted)" in sent.json()["text"]
        source = await h.bot.sources.require("files-ops")
        assert not source.public and source.allowed_channels == (FILES,)
        message = await finished_job_message(h, "files-ops", channel=FILES)
        h.seen_jobs = {j.id for j in await h.bot.jobs.recent(20)}
        assert "2 added" in message.text and "2 failed" in message.text
        assert f"skipped {permalink(h.slack, files['pdf'])}: could not read this PDF" in message.text
        assert f"skipped {permalink(h.slack, files['png'])}: unsupported file type" in message.text

        reply = await ask(h, "What is the Quuxnet VPN gateway host?", FILES)
        assert "vpn7.example.com" in reply.text
        assert permalink(h.slack, files["md"]) in cited_urls(reply)
        elsewhere = await ask(h, "What is the Quuxnet VPN gateway host?", CHANNEL)
        assert "vpn7.example.com" not in elsewhere.text

        # A new file: Slack sends file_shared and a message with files. Either queues a
        # reindex; both together queue one.
        def shared(name: str, text: bytes):
            return h.slack.share_file(FILES, name, text, user="U0CAROL")

        def file_shared(file) -> dict:
            return {"type": "file_shared", "channel_id": FILES, "file_id": file.id,
                    "user_id": "U0CAROL", "file": {"id": file.id}, "event_ts": h.next_ts()}

        def message_with(file) -> dict:
            return h.message("", channel=FILES, user="U0CAROL", subtype="file_share",
                             files=[file.as_slack(h.slack.base_url)])

        parking = shared("parking.md", b"# Parking\n\nThe Zyzzyva garage on level minus two "
                         b"is for bikes.\n")
        await h.sender.event(file_shared(parking))
        [job] = await new_jobs(h, 1)
        assert job.requested_by == "U0CAROL" and job.summary["added"] == 1
        assert job.summary["unchanged"] == 2
        reply = await ask(h, "Which garage level is for bikes?", FILES)
        assert permalink(h.slack, parking) in cited_urls(reply)

        lunch = shared("lunch.md", b"# Lunch\n\nThe Wibblefrotz canteen serves soup.\n")
        await h.sender.event(message_with(lunch))
        [job] = await new_jobs(h, 1)
        assert job.summary["added"] == 1 and job.summary["unchanged"] == 3

        coffee = shared("coffee.md", b"# Coffee\n\nThe espresso machine is descaled weekly.\n")
        await h.sender.event(file_shared(coffee))
        await h.sender.event(message_with(coffee))
        [job] = await new_jobs(h, 1)
        assert job.summary["added"] == 1 and job.summary["unchanged"] == 4

        # In a DM with the bot, `add files` means the files shared with it there.
        dm = "D0ADMIN"
        dm_file = h.slack.share_file(dm, "my-notes.md", b"# My notes\n\nThe Blorptastic "
                                     b"printer is on floor nine.\n", user=ADMIN)
        sent = await h.sender.command("add files", user=ADMIN, channel=dm)
        assert f"Added *files-dm-{ADMIN}* (slack_files: {dm}, restricted)" in sent.json()["text"]
        await finished_job_message(h, f"files-dm-{ADMIN}", channel=dm)
        reply = await ask(h, "Where is the Blorptastic printer?", dm)
        assert permalink(h.slack, dm_file) in json.dumps(reply.blocks)
        elsewhere = await ask(h, "Where is the Blorptastic printer?", CHANNEL)
        assert permalink(h.slack, dm_file) not in json.dumps(elsewhere.blocks)


# -- from the command line ------------------------------------------------------------------


@pytest.fixture
def threaded_slack():
    """The fake Slack on its own event loop in a thread: the CLI runs asyncio.run itself."""
    import threading

    loop = asyncio.new_event_loop()
    fake = FakeSlack()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(fake.start(), loop).result(10)
    yield fake
    asyncio.run_coroutine_threadsafe(fake.stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


@pytest.mark.slow
def test_the_cli_adds_and_reindexes_a_files_source(data_dir, redis_url, monkeypatch, capsys,
                                                   threaded_slack, tmp_path):  # noqa: F811
    from bot.cli.main import main

    monkeypatch.setenv("LOREBOT_REDIS__URL", redis_url)
    monkeypatch.setenv("LOREBOT_SLACK__API_URL", threaded_slack.api_url)
    monkeypatch.delenv("LOREBOT_SLACK__BOT_TOKEN", raising=False)
    files = share_the_usual(threaded_slack, tmp_path)

    def cli(*argv: str):
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    code, _, err = cli("sources", "add", "general", "--type", "slack_files")
    assert code == 2 and "is not a Slack conversation id" in err
    code, out, _ = cli("sources", "add", FILES, "--type", "slack_files", "--json")
    added = json.loads(out)
    assert code == 0 and added["name"] == f"files-{FILES}" and added["type"] == "slack_files"
    assert added["public"] is False and added["allowed_channels"] == [FILES]

    code, _, err = cli("sources", "reindex", f"files-{FILES}")
    assert code == 2 and "without a Slack bot token" in err

    monkeypatch.setenv("LOREBOT_SLACK__BOT_TOKEN", BOT_TOKEN)
    code, out, _ = cli("sources", "reindex", f"files-{FILES}", "--json")
    summary = json.loads(out)
    assert code == 1 and summary["added"] == 2  # partial: two files failed
    assert {f["path"] for f in summary["failed"]} == {
        permalink(threaded_slack, files["pdf"]), permalink(threaded_slack, files["png"])}
