"""A fake Slack: the Web API on aiohttp (port 0), and signed requests into a Slack app.

The app under test talks to it through the real ``AsyncWebClient(base_url=fake.api_url)``::

    async with FakeSlack() as slack:
        client = AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_url)
        ...
        await slack.wait_for(lambda: slack.calls_to("chat.postMessage"))

Every call is recorded (:attr:`FakeSlack.calls`) and answered as Slack would: messages get
increasing ``ts`` values and are kept per channel, so ``chat.update``, the streaming methods and
``conversations.replies`` see them. A wrong token gets ``invalid_auth``; :meth:`FakeSlack.fail`
scripts errors for a method; channels in :attr:`FakeSlack.closed_channels` answer
``not_in_channel``. ``response_url`` posts (``respond()`` in bolt) land in :attr:`responses`.
Files: :meth:`FakeSlack.share_file` puts a file in a conversation; ``files.list`` lists them
(paged) and ``GET /files-pri/…`` serves them only with the bot token, as Slack does: no token gets
the HTML sign-in page, a wrong one 403 (downloads land in :attr:`downloads`). Socket Mode works
too: ``apps.connections.open`` (with the app token) hands out a WebSocket on the fake, which
greets with ``hello``; :meth:`FakeSlack.push_event` sends an envelope and the client's acks
land in :attr:`socket_acks`.

:class:`SignedSender` builds event, slash command and interactivity requests, signs them like
Slack (v0 HMAC-SHA256 of ``v0:timestamp:body``) and posts them to the app's endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

BOT_TOKEN = "xoxb-test-0000-secret-bot-token"
SIGNING_SECRET = "test-signing-secret-0123456789abcdef"
APP_TOKEN = "xapp-test-0000-secret-app-token"
TEAM_ID = "T0TEST"
BOT_USER_ID = "U0LOREBOT"
BOT_ID = "B0LOREBOT"
API_APP_ID = "A0LOREBOT"

# Methods that only need an "ok"; anything unknown answers unknown_method like Slack.
_OK_METHODS = {
    "reactions.add", "reactions.remove", "assistant.threads.setStatus",
    "assistant.threads.setSuggestedPrompts", "assistant.threads.setTitle",
}


@dataclass(frozen=True)
class Call:
    """One Web API call as the fake received it."""

    method: str
    args: dict[str, Any]
    token: str | None
    at: float


@dataclass
class SharedFile:
    """A file shared in a conversation. ``serve``: what a download with the right token gets:
    ``file`` (the bytes), ``html`` (the sign-in page, as for a token without files:read) or
    ``missing`` (404, deleted meanwhile)."""

    id: str
    channel: str
    name: str
    data: bytes
    title: str
    filetype: str
    mimetype: str
    user: str
    created: int
    mode: str = "hosted"
    serve: str = "file"
    size: int | None = None  # what files.list says; the real size when None

    def as_slack(self, base_url: str) -> dict[str, Any]:
        url = f"{base_url}/files-pri/{TEAM_ID}-{self.id}/{self.name}"
        download = f"{base_url}/files-pri/{TEAM_ID}-{self.id}/download/{self.name}"
        return {
            "id": self.id, "created": self.created, "timestamp": self.created, "name": self.name,
            "title": self.title, "mimetype": self.mimetype, "filetype": self.filetype,
            "user": self.user, "mode": self.mode, "is_external": self.mode == "external",
            "size": len(self.data) if self.size is None else self.size,
            "url_private": url, "url_private_download": download,
            "permalink": f"https://lorebot-test.slack.com/files/{self.user}/{self.id}/{self.name}",
            "channels": [self.channel] if self.channel.startswith("C") else [],
            "ims": [self.channel] if self.channel.startswith("D") else [],
        }


# The users the tests speak as: members of every channel unless FakeSlack.members says otherwise.
EVERYONE = ["U0ADMIN", "U0ALICE", "U0BOB", "U0BOSS", "U0CAROL"]

SIGN_IN_PAGE = (b"<!DOCTYPE html><html><head><title>Slack</title></head><body>"
                b"<h1>Sign in to Slack</h1></body></html>")


@dataclass
class Message:
    """A message as the fake keeps it (the final state after updates and streaming)."""

    channel: str
    ts: str
    text: str = ""
    blocks: list[dict] = field(default_factory=list)
    thread_ts: str | None = None
    user: str = BOT_USER_ID
    bot_id: str | None = BOT_ID
    streaming: bool = False
    updates: int = 0

    def as_slack(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": "message", "ts": self.ts, "text": self.text,
                                "user": self.user, "blocks": self.blocks}
        if self.thread_ts:
            data["thread_ts"] = self.thread_ts
        if self.bot_id:
            data["bot_id"] = self.bot_id
        return data


class FakeSlack:
    """Slack's Web API at ``api_url``, recording every call."""

    def __init__(self, token: str = BOT_TOKEN, app_token: str = APP_TOKEN) -> None:
        self.token = token
        self.app_token = app_token
        self.socket_acks: list[dict[str, Any]] = []  # what Socket Mode clients sent back
        self._sockets: list[web.WebSocketResponse] = []
        self.calls: list[Call] = []
        self.messages: dict[str, Message] = {}  # by ts
        self.ephemeral: list[dict[str, Any]] = []
        self.responses: list[dict[str, Any]] = []  # response_url posts
        self.closed_channels: set[str] = set()
        self.files: dict[str, SharedFile] = {}  # by id
        self.files_page_size: int | None = None  # smaller pages than asked for (paging tests)
        self.downloads: list[tuple[str, str | None]] = []  # (file id, bearer token)
        self._file_ids = itertools.count(1)
        self._failures: dict[str, deque[str]] = defaultdict(deque)
        self._drops: dict[str, int] = defaultdict(int)
        # conversations.members: channel -> member ids; a channel not listed has every user
        # the tests use as a member
        self.members: dict[str, list[str]] = {}
        self._ts = itertools.count(1)
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self._port is None:
            raise RuntimeError("FakeSlack is not started")
        return f"http://127.0.0.1:{self._port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/"

    def response_url(self, name: str = "") -> str:
        return f"{self.base_url}/response/{name or uuid.uuid4().hex}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/api/{method}", self._api)
        app.router.add_post("/response/{name}", self._response)
        app.router.add_get("/socket", self._socket)
        app.router.add_get("/files-pri/{team_file}/{rest:.*}", self._download)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self._port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        for ws in self._sockets:
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeSlack:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- scripting and inspection ---------------------------------------------------------------

    def drop_after(self, method: str, times: int = 1) -> None:
        """Carry out the next ``times`` calls of ``method``, then drop the connection instead of
        answering: the client cannot tell whether the call landed."""
        self._drops[method] += times

    def fail(self, method: str, error: str, times: int = 1) -> None:
        """The next ``times`` calls of ``method`` answer ``{"ok": false, "error": error}``."""
        self._failures[method].extend([error] * times)

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def thread(self, channel: str, thread_ts: str) -> list[Message]:
        """The bot's messages in a thread (its replies), oldest first."""
        return [m for m in self.messages.values()
                if m.channel == channel and m.thread_ts == thread_ts and m.bot_id]

    def bot_messages(self, channel: str | None = None) -> list[Message]:
        return [m for m in self.messages.values()
                if m.bot_id and (channel is None or m.channel == channel)]

    def add_user_message(self, channel: str, ts: str, text: str, user: str,
                         thread_ts: str | None = None) -> None:
        """Record a person's message, so ``conversations.replies`` can return it."""
        self.messages[ts] = Message(channel, ts, text, thread_ts=thread_ts, user=user, bot_id=None)

    def share_file(self, channel: str, name: str, data: bytes, *, title: str | None = None,
                   filetype: str | None = None, mimetype: str = "application/octet-stream",
                   user: str = "U0BOB", **kw: Any) -> SharedFile:
        """Share a file in ``channel``; returns it (``as_slack(fake.base_url)``: the listing)."""
        number = next(self._file_ids)
        file = SharedFile(
            id=f"F{number:07d}", channel=channel, name=name, data=data, title=title or name,
            filetype=filetype or (name.rsplit(".", 1)[-1].lower() if "." in name else "binary"),
            mimetype=mimetype, user=user, created=1_700_000_000 + number, **kw)
        self.files[file.id] = file
        return file

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Wait until ``predicate()`` is truthy (re-checked after every call, and every 50 ms for
        state outside the fake); return its value."""
        async def until() -> Any:
            async with self._changed:
                while not (value := predicate()):
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._changed.wait(), 0.05)
                return value

        return await asyncio.wait_for(until(), timeout)

    async def settle(self, quiet_s: float = 0.3, timeout: float = 10.0) -> None:
        """Wait until no call arrived for ``quiet_s`` (the app has finished what it was doing)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            count = len(self.calls)
            await asyncio.sleep(quiet_s)
            if len(self.calls) == count:
                return
        raise TimeoutError("the app kept calling Slack")

    async def push_event(self, body: dict[str, Any]) -> str:
        """Deliver an Events API body over Socket Mode; returns the envelope id to expect back."""
        open_sockets = [ws for ws in self._sockets if not ws.closed]
        if not open_sockets:
            raise RuntimeError("no Socket Mode client is connected")
        envelope_id = uuid.uuid4().hex
        await open_sockets[-1].send_json({
            "envelope_id": envelope_id, "type": "events_api", "payload": body,
            "accepts_response_payload": False, "retry_attempt": 0, "retry_reason": "",
        })
        return envelope_id

    # -- the API --------------------------------------------------------------------------------

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.append(ws)
        await ws.send_json({"type": "hello", "num_connections": 1,
                            "connection_info": {"app_id": API_APP_ID}})
        async with self._changed:
            self._changed.notify_all()
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.socket_acks.append(json.loads(msg.data))
                async with self._changed:
                    self._changed.notify_all()
        return ws

    @property
    def socket_clients(self) -> int:
        return sum(1 for ws in self._sockets if not ws.closed)

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args = await _read_args(request)
        token = _bearer(request) or args.pop("token", None)
        self.calls.append(Call(method, args, token, time.monotonic()))
        try:
            if method == "apps.connections.open":
                if token != self.app_token:
                    return _error("invalid_auth")
                ws_url = self.base_url.replace("http://", "ws://") + "/socket"
                return web.json_response({"ok": True, "url": ws_url})
            if token != self.token:
                return _error("invalid_auth" if token else "not_authed")
            if self._failures.get(method):
                return _error(self._failures[method].popleft())
            handler = getattr(self, "_" + method.replace(".", "_"), None)
            if handler is not None and self._drops.get(method):
                self._drops[method] -= 1
                handler(args)
                if request.transport is not None:
                    request.transport.abort()  # the client sees the connection reset at once
                return web.Response(status=500)
            if handler is not None:
                try:
                    return web.json_response({"ok": True, **handler(args)})
                except _SlackError as exc:
                    return _error(str(exc))
            if method in _OK_METHODS:
                return web.json_response({"ok": True})
            return _error("unknown_method")
        finally:
            async with self._changed:
                self._changed.notify_all()

    async def _response(self, request: web.Request) -> web.Response:
        self.responses.append({"name": request.match_info["name"], **await request.json()})
        async with self._changed:
            self._changed.notify_all()
        return web.Response(text="ok")

    def _next_ts(self) -> str:
        return f"{1_700_000_000 + next(self._ts)}.000100"

    def _auth_test(self, args: dict) -> dict:
        return {"url": "https://lorebot-test.slack.com/", "team": "Test", "user": "lorebot",
                "team_id": TEAM_ID, "user_id": BOT_USER_ID, "bot_id": BOT_ID}

    def _chat_postMessage(self, args: dict) -> dict:
        channel = args["channel"]
        if channel in self.closed_channels:
            raise _SlackError("not_in_channel")
        message = Message(channel, self._next_ts(), args.get("text") or "",
                          _blocks(args.get("blocks")), args.get("thread_ts") or None)
        self.messages[message.ts] = message
        return {"channel": channel, "ts": message.ts, "message": message.as_slack()}

    def _chat_update(self, args: dict) -> dict:
        message = self._message(args)
        message.text = args.get("text") or message.text
        if "blocks" in args:
            message.blocks = _blocks(args.get("blocks"))
        message.updates += 1
        return {"channel": message.channel, "ts": message.ts, "text": message.text}

    def _chat_postEphemeral(self, args: dict) -> dict:
        self.ephemeral.append(args)
        return {"message_ts": self._next_ts()}

    def _chat_startStream(self, args: dict) -> dict:
        message = Message(args["channel"], self._next_ts(), _stream_text(args),
                          thread_ts=args.get("thread_ts"), streaming=True)
        self.messages[message.ts] = message
        return {"channel": message.channel, "ts": message.ts}

    def _chat_appendStream(self, args: dict) -> dict:
        message = self._message(args)
        if not message.streaming:
            raise _SlackError("message_not_in_streaming_state")
        message.text += _stream_text(args)
        message.updates += 1
        return {"channel": message.channel, "ts": message.ts}

    def _chat_stopStream(self, args: dict) -> dict:
        message = self._message(args)
        if not message.streaming:
            raise _SlackError("message_not_in_streaming_state")
        message.text += _stream_text(args)
        message.blocks = _blocks(args.get("blocks"))
        message.streaming = False
        return {"channel": message.channel, "ts": message.ts, "message": message.as_slack()}

    def _files_list(self, args: dict) -> dict:
        channel = args.get("channel")
        found = sorted((f for f in self.files.values() if channel in (None, f.channel)),
                       key=lambda f: f.created, reverse=True)  # newest first, as Slack
        count = int(args.get("count") or 100)
        if self.files_page_size:
            count = min(count, self.files_page_size)
        page = int(args.get("page") or 1)
        pages = max(1, -(-len(found) // count))
        shown = found[(page - 1) * count: page * count]
        return {"files": [f.as_slack(self.base_url) for f in shown],
                "paging": {"count": count, "total": len(found), "page": page, "pages": pages}}

    async def _download(self, request: web.Request) -> web.Response:
        file_id = request.match_info["team_file"].removeprefix(f"{TEAM_ID}-")
        token = _bearer(request)
        self.downloads.append((file_id, token))
        try:
            file = self.files.get(file_id)
            if token is None:  # Slack answers a request without a token with its sign-in page
                return web.Response(body=SIGN_IN_PAGE, content_type="text/html")
            if token != self.token:
                return web.Response(status=403, text="Forbidden")
            if file is None or file.serve == "missing":
                return web.Response(status=404, text="Not Found")
            if file.serve == "html":
                return web.Response(body=SIGN_IN_PAGE, content_type="text/html")
            return web.Response(body=file.data, content_type=file.mimetype)
        finally:
            async with self._changed:
                self._changed.notify_all()

    def _conversations_members(self, args: dict) -> dict:
        channel = args["channel"]
        users = self.members.get(channel, EVERYONE)
        return {"members": users, "response_metadata": {"next_cursor": ""}}

    def _conversations_replies(self, args: dict) -> dict:
        ts = args["ts"]
        found = [m.as_slack() for m in sorted(self.messages.values(), key=lambda m: float(m.ts))
                 if m.channel == args["channel"] and (m.ts == ts or m.thread_ts == ts)]
        return {"messages": found, "has_more": False}

    def _conversations_history(self, args: dict) -> dict:
        # A conversation's top level, newest first as Slack lists it, after ``oldest``.
        oldest = float(args.get("oldest") or 0)
        found = [m.as_slack() for m in sorted(self.messages.values(), key=lambda m: -float(m.ts))
                 if m.channel == args["channel"] and not m.thread_ts and float(m.ts) > oldest]
        return {"messages": found, "has_more": False}

    def _message(self, args: dict) -> Message:
        message = self.messages.get(args.get("ts", ""))
        if message is None or message.channel != args.get("channel"):
            raise _SlackError("message_not_found")
        return message


class _SlackError(Exception):
    """Raised by a method handler to answer ``{"ok": false, "error": <message>}``."""


def _error(error: str) -> web.Response:
    return web.json_response({"ok": False, "error": error})


def _bearer(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    if not auth.startswith("Bearer "):
        return None
    return auth.removeprefix("Bearer ").strip() or None


async def _read_args(request: web.Request) -> dict[str, Any]:
    # slack_sdk sends some methods' arguments as a query string, others as a form or JSON.
    args: dict[str, Any] = dict(request.query)
    if request.content_type == "application/json":
        args.update(await request.json())
    else:
        args.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
    return args


def _blocks(raw: Any) -> list[dict]:
    if not raw:
        return []
    return json.loads(raw) if isinstance(raw, str) else list(raw)


def _stream_text(args: dict) -> str:
    text = args.get("markdown_text") or ""
    for chunk in args.get("chunks") or []:
        if chunk.get("type") == "markdown_text":
            text += chunk.get("text", "")
    return text


# -- signed requests into the app ------------------------------------------------------------


def sign(body: str, timestamp: int, secret: str = SIGNING_SECRET) -> str:
    """Slack's request signature of ``body`` sent at ``timestamp``."""
    base = f"v0:{timestamp}:{body}".encode()
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Sent:
    """The app's HTTP response to a signed request, and how long it took."""

    status: int
    body: str
    seconds: float

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class SignedSender:
    """Posts signed Slack requests (events, commands, actions) to ``url``."""

    def __init__(self, url: str, secret: str = SIGNING_SECRET) -> None:
        self.url = url
        self.secret = secret
        self._session: aiohttp.ClientSession | None = None
        self._ids = itertools.count(1)

    async def __aenter__(self) -> SignedSender:
        # No connection cap: Slack delivers a burst over as many connections as it likes.
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    def event_body(self, event: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
        """An Events API envelope around ``event``."""
        return {
            "token": "legacy-verification-token", "team_id": TEAM_ID, "api_app_id": API_APP_ID,
            "event": event, "type": "event_callback",
            "event_id": event_id or f"Ev{next(self._ids):08d}", "event_time": int(time.time()),
            "authorizations": [{"team_id": TEAM_ID, "user_id": BOT_USER_ID, "is_bot": True}],
        }

    async def event(self, event: dict[str, Any], *, event_id: str | None = None,
                    retry_num: int | None = None, **kw: Any) -> Sent:
        headers = {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": "http_timeout"} \
            if retry_num else {}
        body = json.dumps(self.event_body(event, event_id))
        return await self.post(body, "application/json", headers=headers, **kw)

    async def command(self, text: str, *, command: str = "/lorebot", channel: str = "C0GENERAL",
                      user: str = "U0ALICE", response_url: str = "http://127.0.0.1:9/none",
                      **kw: Any) -> Sent:
        form = {
            "token": "legacy", "team_id": TEAM_ID, "team_domain": "test", "channel_id": channel,
            "channel_name": "general", "user_id": user, "user_name": "alice", "command": command,
            "text": text, "api_app_id": API_APP_ID, "response_url": response_url,
            "trigger_id": f"trigger-{next(self._ids)}",
        }
        return await self.post(urlencode(form), "application/x-www-form-urlencoded", **kw)

    async def action(self, payload: dict[str, Any], **kw: Any) -> Sent:
        body = urlencode({"payload": json.dumps(payload)})
        return await self.post(body, "application/x-www-form-urlencoded", **kw)

    async def post(self, body: str, content_type: str, *, headers: dict[str, str] | None = None,
                   timestamp: int | None = None, secret: str | None = None,
                   signature: str | None = None) -> Sent:
        """Post ``body`` signed with ``secret`` at ``timestamp`` (now), or with ``signature``."""
        assert self._session is not None, "use SignedSender as an async context manager"
        ts = int(time.time()) if timestamp is None else timestamp
        all_headers = {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": str(ts),
            "X-Slack-Signature": signature or sign(body, ts, secret or self.secret),
            **(headers or {}),
        }
        started = time.perf_counter()
        async with self._session.post(self.url, data=body.encode(), headers=all_headers) as resp:
            text = await resp.text()
        return Sent(resp.status, text, time.perf_counter() - started)


