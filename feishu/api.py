"""The Open API calls the adapter makes, through the ``lark-oapi`` client.

The SDK's async calls fetch the tenant access token with a blocking ``requests`` call when its
cache is empty (inside the event loop: every answer in flight would stall on it). So the token is
fetched here, asynchronously, through the SDK's own request model, and handed to each call with
``enable_set_token``; it is renewed ten minutes before it expires, or at once when Feishu says it
is invalid.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from typing import Any

import httpx
import lark_oapi as lark
from lark_oapi.api.auth.v3 import InternalTenantAccessTokenRequest, InternalTenantAccessTokenRequestBody
from lark_oapi.api.im.v1 import (
    PatchMessageRequest,
    PatchMessageRequestBody,
    ReplyMessageRequest,
    ReplyMessageRequestBody,
)

from bot.settings import LarkSettings

logger = logging.getLogger(__name__)

# Feishu's codes for a tenant access token that is invalid or expired: renew it and retry once.
TOKEN_INVALID = frozenset({99991661, 99991663, 99991668})
# The token is renewed this long before Feishu says it expires.
TOKEN_MARGIN_S = 600
# Feishu keeps a reply's uuid for an hour and sends one message per uuid: at most 50 chars.
UUID_CHARS = 50


class LarkApiError(Exception):
    """An Open API call failed: Feishu's error code and message, or the transport's failure."""

    def __init__(self, what: str, code: int | None = None, msg: str = "") -> None:
        super().__init__(f"{what} failed" + (f" (code {code}: {msg})" if code is not None else
                                             f": {msg}" if msg else ""))
        self.code = code


def reply_uuid(message_id: str, purpose: str = "answer") -> str:
    """The idempotency key of the reply to ``message_id``: sending it twice (a response lost,
    a retry) still makes one message."""
    return ("lorebot-" + hashlib.sha256(f"{message_id}/{purpose}".encode()).hexdigest())[:UUID_CHARS]


class LarkApi:
    """Tenant token, bot info, reply and patch; every failure is a :class:`LarkApiError`."""

    def __init__(self, settings: LarkSettings) -> None:
        secret = settings.app_secret.get_secret_value() if settings.app_secret else ""
        self.client = (lark.Client.builder().app_id(settings.app_id or "").app_secret(secret)
                       .domain(settings.base_url).timeout(settings.timeout_s)
                       .enable_set_token(True).log_level(lark.LogLevel.WARNING).build())
        self.app_id = settings.app_id or ""
        self._secret = secret
        self._token: str | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()

    async def token(self, *, renew: bool = False) -> str:
        async with self._lock:
            if renew or self._token is None or time.monotonic() >= self._expires:
                body = (InternalTenantAccessTokenRequestBody.builder().app_id(self.app_id)
                        .app_secret(self._secret).build())
                request = InternalTenantAccessTokenRequest.builder().request_body(body).build()
                raw = await self._send("tenant_access_token",
                                       self.client.auth.v3.tenant_access_token.ainternal, request)
                # Feishu puts the token at the top level of this one response, not under "data".
                data = _json(raw.raw.content if raw.raw else b"")
                if data.get("code") != 0 or not data.get("tenant_access_token"):
                    raise LarkApiError("tenant_access_token", data.get("code", -1),
                                       str(data.get("msg", "")))
                self._token = data["tenant_access_token"]
                self._expires = time.monotonic() + max(60, int(data.get("expire", 7200)) - TOKEN_MARGIN_S)
            return self._token

    async def bot_open_id(self) -> str:
        """The bot's own open_id (``bot/v3/info``): how a group @mention of it is recognised.
        Also proves the app id and secret at start-up."""
        request = (lark.BaseRequest.builder().http_method(lark.HttpMethod.GET)
                   .uri("/open-apis/bot/v3/info").token_types({lark.AccessTokenType.TENANT}).build())
        response = await self._call("bot/v3/info", self.client.arequest, request)
        open_id = (_json(response.raw.content).get("bot") or {}).get("open_id")
        if not open_id:
            raise LarkApiError("bot/v3/info", msg="no open_id in the answer")
        return open_id

    async def reply_card(self, message_id: str, card: dict[str, Any], *, in_thread: bool,
                         uuid: str) -> str:
        """Reply to ``message_id`` with an interactive card; returns the new message's id."""
        body = (ReplyMessageRequestBody.builder().msg_type("interactive")
                .content(json.dumps(card, ensure_ascii=False)).reply_in_thread(in_thread)
                .uuid(uuid).build())
        request = ReplyMessageRequest.builder().message_id(message_id).request_body(body).build()
        response = await self._call("im/v1/messages reply", self.client.im.v1.message.areply,
                                    request)
        new_id = getattr(response.data, "message_id", None)
        if not new_id:
            raise LarkApiError("im/v1/messages reply", msg="no message_id in the answer")
        return new_id

    async def patch_card(self, message_id: str, card: dict[str, Any]) -> None:
        """Replace the card of a message the bot sent."""
        body = PatchMessageRequestBody.builder().content(json.dumps(card, ensure_ascii=False)).build()
        request = PatchMessageRequest.builder().message_id(message_id).request_body(body).build()
        await self._call("im/v1/messages patch", self.client.im.v1.message.apatch, request)

    async def _call(self, what: str, method, request):
        for attempt in (1, 2):
            option = lark.RequestOption.builder().tenant_access_token(
                await self.token(renew=attempt == 2)).build()
            response = await self._send(what, method, request, option)
            if response.code in TOKEN_INVALID and attempt == 1:
                logger.info("Feishu says the tenant access token is invalid: renewing it")
                continue
            if not response.success():
                raise LarkApiError(what, response.code, response.msg or "")
            return response
        raise AssertionError("unreachable")

    @staticmethod
    async def _send(what: str, method, *args):
        try:
            return await method(*args)
        except (httpx.HTTPError, OSError, TimeoutError) as exc:
            raise LarkApiError(what, msg=type(exc).__name__) from exc
        except ValueError as exc:  # the SDK could not parse the answer (not JSON: a proxy page)
            raise LarkApiError(what, msg=f"unreadable answer ({type(exc).__name__})") from exc


def _json(content: bytes) -> dict[str, Any]:
    try:
        data = json.loads(content or b"{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
