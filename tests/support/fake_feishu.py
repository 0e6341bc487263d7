"""A fake Feishu/Lark Open API on aiohttp (port 0), and a sender of signed, encrypted callbacks.

The fake serves what the adapter calls: ``auth/v3/tenant_access_token/internal``,
``bot/v3/info``, ``im/v1/messages/{id}/reply`` (idempotent on its ``uuid``, as Feishu is for an
hour) and ``PATCH im/v1/messages/{id}``; it refuses a wrong app secret and a wrong tenant token
with Feishu's codes. Every message the bot sends is kept in :attr:`FakeFeishu.messages`, with its
card and the times of its patches.

:class:`CallbackSender` posts events as Feishu does with an encrypt key: the JSON encrypted with
AES-256-CBC (key: sha256 of the encrypt key), and signed with ``X-Lark-Signature`` =
sha256(timestamp + nonce + encrypt key + body).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from Crypto.Cipher import AES

APP_ID = "cli_test_app"
APP_SECRET = "app-secret-test-0123456789"
VERIFICATION_TOKEN = "verification-token-test"
ENCRYPT_KEY = "encrypt-key-test-0123456789"
TENANT_TOKEN = "t-tenant-token-test"
BOT_OPEN_ID = "ou_bot_lorebot"
TENANT_KEY = "tenant_test"


@dataclass
class SentMessage:
    """A message the bot sent: its card (parsed) and how it changed."""

    message_id: str
    parent_id: str
    reply_in_thread: bool
    uuid: str | None
    card: dict[str, Any]
    sent_at: float
    patch_times: list[float] = field(default_factory=list)
    cards: list[dict[str, Any]] = field(default_factory=list)  # every version, first one first

    @property
    def text(self) -> str:
        """All the Markdown and plain text of the current card."""
        return "\n".join(_texts(self.card))

    @property
    def finished(self) -> bool:
        """Not a streaming preview: an answer with its buttons, or a short text."""
        return not self.streaming

    @property
    def streaming(self) -> bool:
        return self.text.endswith(" …")

    @property
    def buttons(self) -> list[dict[str, Any]]:
        return [a for e in self.card.get("elements", []) if e.get("tag") == "action"
                for a in e.get("actions", [])]


def _texts(node: Any) -> list[str]:
    if isinstance(node, dict):
        out = [node["content"]] if isinstance(node.get("content"), str) else []
        for key, value in node.items():
            if key not in ("content", "value"):
                out += _texts(value)
        return out
    if isinstance(node, list):
        return [t for item in node for t in _texts(item)]
    return []


class FakeFeishu:
    """``async with FakeFeishu() as fake:`` — ``fake.base_url`` is the Open API's domain."""

    def __init__(self) -> None:
        self.messages: dict[str, SentMessage] = {}
        self.requests: list[tuple[str, str]] = []
        self.token_requests = 0
        self.tenant_token = TENANT_TOKEN  # change it to expire the bot's token
        self._ids = itertools.count(1)
        self._uuids: dict[str, str] = {}
        self._runner: web.AppRunner | None = None
        self.base_url = ""
        # The long connection: the bot's WebSocket once it connected, and the answers to frames.
        self.socket: web.WebSocketResponse | None = None
        self.connected = asyncio.Event()
        self._frame_ids = itertools.count(1)
        self._answers: dict[str, asyncio.Future] = {}

    async def __aenter__(self) -> FakeFeishu:
        app = web.Application()
        app.router.add_post("/open-apis/auth/v3/tenant_access_token/internal", self._token)
        app.router.add_get("/open-apis/bot/v3/info", self._bot_info)
        app.router.add_post("/open-apis/im/v1/messages/{message_id}/reply", self._reply)
        app.router.add_patch("/open-apis/im/v1/messages/{message_id}", self._patch)
        app.router.add_post("/callback/ws/endpoint", self._ws_endpoint)
        app.router.add_get("/ws", self._ws)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.base_url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc) -> None:
        await self._runner.cleanup()

    def replies_to(self, message_id: str) -> list[SentMessage]:
        return [m for m in self.messages.values() if m.parent_id == message_id]

    async def wait_for(self, predicate, timeout: float = 15.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if result := predicate():
                return result
            await asyncio.sleep(0.05)
        raise AssertionError(f"timed out; messages sent: {list(self.messages.values())}")

    async def finished_replies(self, message_id: str, count: int = 1, timeout: float = 15.0):
        def ready():
            replies = self.replies_to(message_id)
            return replies if len(replies) >= count and all(r.finished for r in replies) else None

        return await self.wait_for(ready, timeout)

    async def push(self, payload: dict[str, Any], kind: str = "event",
                   timeout: float = 10.0) -> dict[str, Any]:
        """Send ``payload`` over the long connection as Feishu does (a protobuf DATA frame);
        returns the client's answer (``code``, and ``data`` decoded)."""
        from lark_oapi.ws.pb.pbbp2_pb2 import Frame

        await asyncio.wait_for(self.connected.wait(), timeout)
        frame_id = f"msg_{next(self._frame_ids)}"
        frame = Frame(SeqID=1, LogID=1, service=1, method=1, payload=json.dumps(payload).encode())
        for key, value in (("type", kind), ("message_id", frame_id), ("sum", "1"), ("seq", "0"),
                           ("trace_id", f"trace_{frame_id}")):
            header = frame.headers.add()
            header.key, header.value = key, value
        answer = self._answers[frame_id] = asyncio.get_running_loop().create_future()
        await self.socket.send_bytes(frame.SerializeToString())
        result = await asyncio.wait_for(answer, timeout)
        if result.get("data"):
            result["data"] = json.loads(base64.b64decode(result["data"]))
        return result

    async def _ws_endpoint(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("AppID") != APP_ID or body.get("AppSecret") != APP_SECRET:
            return web.json_response({"code": 514, "msg": "auth failed"})
        url = self.base_url.replace("http://", "ws://") + "/ws?device_id=dev1&service_id=1"
        return web.json_response({"code": 0, "msg": "ok", "data": {"URL": url, "ClientConfig": {
            "ReconnectCount": -1, "ReconnectInterval": 120, "ReconnectNonce": 30,
            "PingInterval": 120}}})

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        from lark_oapi.ws.pb.pbbp2_pb2 import Frame

        socket = web.WebSocketResponse()
        await socket.prepare(request)
        self.socket = socket
        self.connected.set()
        async for message in socket:
            if message.type != aiohttp.WSMsgType.BINARY:
                continue
            frame = Frame()
            frame.ParseFromString(message.data)
            headers = {h.key: h.value for h in frame.headers}
            if frame.method == 1 and headers.get("message_id") in self._answers:
                self._answers.pop(headers["message_id"]).set_result(json.loads(frame.payload))
        self.connected.clear()
        return socket

    # -- the endpoints ---------------------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.Response:
        self.token_requests += 1
        body = await request.json()
        self.requests.append(("token", body.get("app_id")))
        if body.get("app_id") != APP_ID or body.get("app_secret") != APP_SECRET:
            return web.json_response({"code": 10014, "msg": "app secret invalid"})
        return web.json_response({"code": 0, "msg": "ok", "tenant_access_token": self.tenant_token,
                                  "expire": 7200})

    def _authorised(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.tenant_token}"

    @staticmethod
    def _invalid_token() -> web.Response:
        return web.json_response({"code": 99991663, "msg": "Invalid access token"}, status=400)

    async def _bot_info(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return self._invalid_token()
        return web.json_response({"code": 0, "msg": "ok", "bot": {
            "open_id": BOT_OPEN_ID, "app_name": "lorebot", "activate_status": 2}})

    async def _reply(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return self._invalid_token()
        parent = request.match_info["message_id"]
        body = await request.json()
        self.requests.append(("reply", parent))
        uuid = body.get("uuid")
        if uuid and uuid in self._uuids:  # Feishu: one message per uuid within an hour
            return web.json_response({"code": 0, "msg": "success",
                                      "data": {"message_id": self._uuids[uuid]}})
        if body.get("msg_type") != "interactive":
            return web.json_response({"code": 230001, "msg": "unexpected msg_type"}, status=400)
        card = json.loads(body["content"])
        message_id = f"om_reply_{next(self._ids)}"
        self.messages[message_id] = SentMessage(
            message_id=message_id, parent_id=parent, reply_in_thread=bool(body.get("reply_in_thread")),
            uuid=uuid, card=card, sent_at=time.monotonic(), cards=[card])
        if uuid:
            self._uuids[uuid] = message_id
        return web.json_response({"code": 0, "msg": "success", "data": {
            "message_id": message_id, "msg_type": "interactive", "parent_id": parent}})

    async def _patch(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return self._invalid_token()
        message_id = request.match_info["message_id"]
        self.requests.append(("patch", message_id))
        message = self.messages.get(message_id)
        if message is None:
            return web.json_response({"code": 230011, "msg": "message not found"}, status=400)
        card = json.loads((await request.json())["content"])
        message.card = card
        message.cards.append(card)
        message.patch_times.append(time.monotonic())
        return web.json_response({"code": 0, "msg": "success"})


# -- callbacks ---------------------------------------------------------------------------------


def encrypt(plaintext: str, key: str = ENCRYPT_KEY) -> str:
    data = plaintext.encode()
    pad = AES.block_size - len(data) % AES.block_size
    iv = os.urandom(AES.block_size)
    cipher = AES.new(hashlib.sha256(key.encode()).digest(), AES.MODE_CBC, iv)
    return base64.b64encode(iv + cipher.encrypt(data + bytes([pad]) * pad)).decode()


def sign(timestamp: str, nonce: str, body: bytes, key: str = ENCRYPT_KEY) -> str:
    return hashlib.sha256((timestamp + nonce + key).encode() + body).hexdigest()


class CallbackSender:
    """Posts encrypted, signed callbacks to the bot's ``/lark/events``."""

    def __init__(self, url: str, *, key: str = ENCRYPT_KEY, token: str = VERIFICATION_TOKEN) -> None:
        self.url = url
        self.key = key
        self.token = token
        self._ids = itertools.count(1)
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> CallbackSender:
        self.session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.session.close()

    def envelope(self, event_type: str, event: dict[str, Any], event_id: str | None = None) -> dict:
        return {"schema": "2.0", "header": {
            "event_id": event_id or f"ev_{next(self._ids):06d}", "token": self.token,
            "create_time": str(int(time.time() * 1000)), "event_type": event_type,
            "tenant_key": TENANT_KEY, "app_id": APP_ID}, "event": event}

    async def post(self, payload: dict[str, Any], *, signature: str | None = None,
                   key: str | None = None) -> aiohttp.ClientResponse:
        """Encrypt and sign ``payload`` as Feishu does; ``signature``/``key`` forge it."""
        body = json.dumps({"encrypt": encrypt(json.dumps(payload), key or self.key)}).encode()
        timestamp, nonce = str(int(time.time())), os.urandom(8).hex()
        headers = {"Content-Type": "application/json", "X-Lark-Request-Timestamp": timestamp,
                   "X-Lark-Request-Nonce": nonce,
                   "X-Lark-Signature": signature or sign(timestamp, nonce, body, key or self.key)}
        async with self.session.post(self.url, data=body, headers=headers) as response:
            await response.read()
            return response


def message_event(text: str, *, chat_id: str, sender: str, message_id: str,
                  chat_type: str = "group", mention_bot: bool = True, root_id: str | None = None,
                  mentions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """An ``im.message.receive_v1`` event body; ``mention_bot`` puts ``@_user_1`` (the bot)
    in front of the text."""
    all_mentions = list(mentions or [])
    if mention_bot:
        text = f"@_user_1 {text}"
        all_mentions.insert(0, {"key": "@_user_1", "id": {"open_id": BOT_OPEN_ID},
                                "name": "lorebot", "tenant_key": TENANT_KEY})
    message = {"message_id": message_id, "chat_id": chat_id, "chat_type": chat_type,
               "message_type": "text", "content": json.dumps({"text": text}),
               "create_time": str(int(time.time() * 1000)), "mentions": all_mentions}
    if root_id:
        message.update(root_id=root_id, parent_id=root_id, thread_id=f"omt_{root_id}")
    return {"sender": {"sender_id": {"open_id": sender}, "sender_type": "user",
                       "tenant_key": TENANT_KEY}, "message": message}


def card_click(*, value: dict[str, Any], user: str, chat_id: str, message_id: str) -> dict:
    return {"operator": {"open_id": user, "tenant_key": TENANT_KEY}, "token": "c-card-token",
            "action": {"tag": "button", "value": value}, "host": "im_message",
            "context": {"open_message_id": message_id, "open_chat_id": chat_id}}
