"""Files shared in a Slack conversation as a knowledge source: each file becomes a `Document`
cited by its permalink.

Lists the conversation's files with ``files.list`` (scope ``files:read``; a channel the bot is in,
or a DM with the bot), downloads each with the bot token and converts it with the folder
loaders (``search.loaders.load_file``), so a file shared in Slack is read exactly like the same
file in a folder and fails with the same reasons. A file that cannot be read (unsupported type,
too big, download refused, corrupt, Slack's sign-in page instead of the file) becomes a
`LoadFailure` and the run goes on; a failed file keeps its previously indexed version.

The doc id comes from the source and the file id, and the content hash from the converted text,
so an unchanged file is not re-embedded (it is still downloaded: Slack gives no content hash).
"""

from __future__ import annotations

import asyncio
import logging
import re
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from search.errors import LoadError
from search.loaders import check_size, check_type, load_file, make_doc_id
from search.models import Document, LoadFailure
from search.text import content_hash

logger = logging.getLogger(__name__)

# Slack file types whose name may carry no extension (snippets, "Untitled" uploads): the
# extension our loaders know them by.
_FILETYPE_EXT = {
    "text": ".txt", "markdown": ".md", "html": ".html", "csv": ".csv", "json": ".json",
    "yaml": ".yaml", "xml": ".xml", "sql": ".sql", "pdf": ".pdf", "docx": ".docx",
    "pptx": ".pptx", "xlsx": ".xlsx", "rst": ".rst",
}
_HTML_EXTENSIONS = frozenset({".html", ".htm", ".xhtml"})
HTML_INSTEAD = ("Slack sent an HTML page instead of the file (the bot token probably lacks the "
                "files:read scope); add files:read to the Slack app, reinstall it, then reindex")


class SlackFilesError(Exception):
    """The conversation's files cannot be listed (the message says which and why)."""


async def _call(client, method: str, **args) -> dict:
    from slack_sdk.errors import SlackApiError

    try:
        # POST like every other call (see bot.sources.slack_channel): one verb through proxies and fakes.
        return (await client.api_call(method, data=args)).data
    except SlackApiError as exc:
        error = exc.response.get("error")
        hint = {
            "missing_scope": " (add the files:read scope to the Slack app and reinstall it)",
            "not_in_channel": " (invite the bot to the channel)",
            "channel_not_found": " (invite the bot to the channel)",
        }.get(error, "")
        raise SlackFilesError(f"{method} failed for {args.get('channel')}: {error}{hint}") from exc


async def list_files(client, channel: str, *, max_files: int = 1000) -> list[dict]:
    """The files shared in ``channel``, newest first (at most ``max_files``), deleted ones left
    out. Pages through ``files.list`` (``page``/``paging.pages``)."""
    files: dict[str, dict] = {}
    page = 1
    while len(files) < max_files:
        data = await _call(client, "files.list", channel=channel, count=200, page=page)
        for f in data.get("files") or []:
            if f.get("id") and f.get("mode") != "tombstone":
                files.setdefault(f["id"], f)  # a file shared twice is one document
        pages = int((data.get("paging") or {}).get("pages") or 1)
        if page >= pages or not data.get("files"):
            break
        page += 1
    return list(files.values())[:max_files]


def file_extension(file: dict) -> str:
    """The extension the loaders should read ``file`` as: its name's, else one for its Slack
    file type, else the file type itself (which then shows in the "unsupported" reason)."""
    suffix = Path(file.get("name") or "").suffix.lower()
    if re.fullmatch(r"\.[a-z0-9]{1,10}", suffix):
        return suffix
    filetype = (file.get("filetype") or "").lower()
    if filetype in _FILETYPE_EXT:
        return _FILETYPE_EXT[filetype]
    return f".{filetype}" if re.fullmatch(r"[a-z0-9]{1,16}", filetype) else ""


def _is_slack_host(url: str, api_url: str | None) -> bool:
    """Only Slack (or the API host the client is pointed at) ever sees the bot token."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "slack.com" or host.endswith(".slack.com"):
        return True
    return bool(api_url) and host == (urlsplit(api_url).hostname or "").lower()


def _looks_like_html(data: bytes) -> bool:
    head = data[:512].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html"))


async def download(session: aiohttp.ClientSession, url: str, token: str, *, max_bytes: int,
                   html_expected: bool = False) -> bytes:
    """The file at ``url`` fetched with the bot token; `LoadError` with a reason otherwise."""
    try:
        async with session.get(url, headers={"Authorization": f"Bearer {token}"}) as resp:
            if resp.status in (401, 403):
                raise LoadError(f"download refused (HTTP {resp.status}); the bot may not read "
                                "this file: check the files:read scope and that the bot is in "
                                "the conversation")
            if resp.status in (404, 410):
                raise LoadError(f"file not found (HTTP {resp.status}); it was deleted or is no "
                                "longer shared")
            if resp.status != 200:
                raise LoadError(f"download failed (HTTP {resp.status}); reindex later")
            if resp.content_length is not None:
                check_size(resp.content_length, max_bytes)
            data = bytearray()
            async for chunk in resp.content.iter_chunked(64 * 1024):
                data += chunk
                if len(data) > max_bytes:  # the listed size was wrong: stop reading
                    check_size(len(data), max_bytes)
            if not html_expected and (resp.content_type == "text/html" or _looks_like_html(data)):
                raise LoadError(HTML_INSTEAD)
            return bytes(data)
    except (asyncio.TimeoutError, TimeoutError) as exc:
        raise LoadError("download timed out (LOREBOT_SOURCES__FETCH_TIMEOUT_S); reindex later"
                        ) from exc
    except aiohttp.ClientError as exc:
        raise LoadError(f"download failed ({type(exc).__name__}: {exc}); reindex later") from exc


def _convert(data: bytes, ext: str, max_bytes: int) -> Document:
    """Run the folder loader on the bytes (a temporary file with the right extension)."""
    with tempfile.TemporaryDirectory(prefix="lorebot-slack-file-") as tmp:
        path = Path(tmp) / f"file{ext}"
        path.write_bytes(data)
        return load_file(path, root=Path(tmp), source="", max_bytes=max_bytes)


async def load_file_from_slack(session: aiohttp.ClientSession, file: dict, *, source: str,
                               token: str, max_bytes: int, api_url: str | None = None) -> Document:
    """One listed Slack file as a `Document`; raises `LoadError` with the reason it cannot be."""
    if file.get("mode") == "hidden_by_limit":
        raise LoadError("hidden by the workspace's file history limit; Slack does not serve it")
    if file.get("is_external") or file.get("mode") == "external":
        raise LoadError("an external file (Google Drive, Dropbox…): its content is not in Slack; "
                        "add the original as a source instead")
    ext = file_extension(file)
    check_type(Path(f"file{ext}"))
    check_size(int(file.get("size") or 1), max_bytes)  # as listed; checked again on download
    url = file.get("url_private_download") or file.get("url_private")
    if not url:
        raise LoadError("Slack lists no download URL for this file")
    if not _is_slack_host(url, api_url):
        raise LoadError(f"the download URL is not on Slack ({urlsplit(url).hostname}); not "
                        "fetched, so the bot token is never sent elsewhere")
    data = await download(session, url, token, max_bytes=max_bytes,
                          html_expected=ext in _HTML_EXTENSIONS)
    # Parsing is CPU work (PDF, Office): off the event loop, which also answers questions.
    doc = await asyncio.to_thread(_convert, data, ext, max_bytes)
    title = (file.get("title") or file.get("name") or file["id"]).strip()
    link = file.get("permalink") or url
    return replace(
        doc, doc_id=make_doc_id(source, f"slack-file/{file['id']}"), source=source, title=title,
        content_hash=content_hash(title, doc.text), path=link, url=link,
        modified=float(file.get("updated") or file.get("timestamp") or file.get("created") or 0)
        or None,
    )


async def load_files(client, source: str, channel: str, *, max_bytes: int, timeout_s: float,
                     max_files: int = 1000,
                     on_progress: Callable[[int, int | None], None] | None = None,
                     ) -> list[Document | LoadFailure]:
    """The files shared in ``channel`` as documents or failures (one per file).

    ``client`` is the bot's ``AsyncWebClient``: its token downloads the files. Raises
    `SlackFilesError` when the files cannot be listed at all (then nothing is indexed or removed).
    """
    files = await list_files(client, channel, max_files=max_files)
    token = client.token or ""
    api_url = getattr(client, "base_url", None)
    # The fetch timeout bounds connecting and each wait for data, not the whole download: a
    # 20 MB file on a slow link is fine as long as bytes keep coming.
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout_s, sock_read=timeout_s)
    items: list[Document | LoadFailure] = []
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for n, file in enumerate(files, 1):
            label = file.get("permalink") or file.get("name") or file["id"]
            try:
                items.append(await load_file_from_slack(session, file, source=source,
                                                        token=token, max_bytes=max_bytes,
                                                        api_url=api_url))
            except LoadError as exc:
                items.append(LoadFailure(label, str(exc)))
            except Exception as exc:  # noqa: BLE001 - one bad file must not stop the run
                logger.exception("Unexpected error loading Slack file %s", file.get("id"))
                items.append(LoadFailure(label, f"unexpected error: {exc!r}"))
            if on_progress:
                on_progress(n, len(files))
    return items
