"""Event callbacks checked and opened by the SDK's own dispatcher, before anything acts on them.

``lark.EventDispatcherHandler`` does the security work: AES-256-CBC decryption with the encrypt
key, the ``X-Lark-Signature`` check (sha256 of timestamp, nonce, encrypt key and body), the
verification token, and the URL verification challenge. Its processors here only capture the
opened payload: the bot answers after the callback is acknowledged (Feishu retries a callback not
acknowledged within three seconds), and a card click is answered with a toast once its feedback
is stored, which needs the event loop.

The dispatcher answers every failure with a 500; that is told apart here: a payload that passed
every check but is of an event type nobody subscribed to is acknowledged (200) and dropped,
everything else is refused (401). With neither a verification token nor an encrypt key the SDK
would accept anything, so the gate refuses to exist (fail closed).
"""

from __future__ import annotations

import contextvars
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import lark_oapi as lark
from lark_oapi.core.const import LARK_REQUEST_NONCE, LARK_REQUEST_SIGNATURE, LARK_REQUEST_TIMESTAMP
from lark_oapi.event.callback.model.p2_card_action_trigger import (
    P2CardActionTrigger,
    P2CardActionTriggerResponse,
)
from lark_oapi.event.custom import CustomizedEvent

from bot.settings import LarkSettings

logger = logging.getLogger(__name__)

MESSAGE_EVENT = "im.message.receive_v1"
# What the SDK's dispatcher says when a verified payload has no processor (see the docstring).
_NO_PROCESSOR = "processor not found"
# Events the app may be subscribed to that need nothing from the bot: acknowledged quietly.
QUIET_EVENTS = ("im.message.message_read_v1", "im.chat.member.bot.added_v1",
                "im.chat.member.bot.deleted_v1", "im.chat.access_event.bot_p2p_chat_entered_v1",
                "im.message.reaction.created_v1", "im.message.reaction.deleted_v1")

_captured: contextvars.ContextVar[list[Delivery] | None] = contextvars.ContextVar(
    "lark_delivery", default=None)


class GateConfigError(Exception):
    """The settings cannot verify callbacks; the message names the missing setting."""


@dataclass(frozen=True)
class Delivery:
    """One opened callback: a message (``event`` is the event's raw dict) or a card click."""

    kind: str  # "message" | "card"
    event_id: str | None
    event: dict[str, Any] | None = None
    card: P2CardActionTrigger | None = None


@dataclass(frozen=True)
class Opened:
    """The gate's verdict on one HTTP callback: the status and body to answer with, and the
    delivery to act on (None: nothing to do, as for the URL verification challenge)."""

    status: int
    body: bytes
    delivery: Delivery | None = None


class Gate:
    def __init__(self, settings: LarkSettings,
                 elsewhere: Callable[[Delivery], Any] | None = None, *,
                 require_credentials: bool = True) -> None:
        """``elsewhere``: where deliveries go that arrive outside :meth:`open` (the SDK's
        long-connection client calls the same dispatcher from its own thread, unverified: the
        connection itself is authenticated, hence ``require_credentials=False`` there only)."""
        token = settings.verification_token.get_secret_value() if settings.verification_token else ""
        key = settings.encrypt_key.get_secret_value() if settings.encrypt_key else ""
        if require_credentials and not token and not key:
            raise GateConfigError(
                "LOREBOT_LARK__VERIFICATION_TOKEN or LOREBOT_LARK__ENCRYPT_KEY must be set: "
                "without them anyone could send the bot events (see README, Feishu / Lark)")
        self.elsewhere = elsewhere
        builder = (lark.EventDispatcherHandler.builder(key, token, lark.LogLevel.WARNING)
                   .register_p2_customized_event(MESSAGE_EVENT, self._on_message)
                   .register_p2_card_action_trigger(self._on_card))
        for name in QUIET_EVENTS:
            builder = builder.register_p2_customized_event(name, lambda _event: None)
        self.handler = builder.build()

    def open(self, raw: bytes, headers: Mapping[str, str], uri: str = "/lark/events") -> Opened:
        """Check and open one HTTP callback (``headers`` looked up case-insensitively)."""
        request = lark.RawRequest()
        request.uri = uri
        request.body = raw
        request.headers = {name: headers.get(name) or "" for name in (
            LARK_REQUEST_TIMESTAMP, LARK_REQUEST_NONCE, LARK_REQUEST_SIGNATURE)}
        box: list[Delivery] = []
        reset = _captured.set(box)
        try:
            response = self.handler.do(request)
        finally:
            _captured.reset(reset)
        if response.status_code == 200:
            return Opened(200, response.content or b"{}", box[0] if box else None)
        if _NO_PROCESSOR in _message(response.content):
            return Opened(200, b'{"msg":"ignored"}')
        # The SDK's reason (bad signature, token, ciphertext) stays in the log, not the answer.
        logger.warning("Refused a Feishu/Lark callback that failed verification (%s); check "
                       "LOREBOT_LARK__ENCRYPT_KEY and LOREBOT_LARK__VERIFICATION_TOKEN",
                       _message(response.content)[:120])
        return Opened(401, b'{"msg":"invalid request"}')

    def _deliver(self, delivery: Delivery) -> Any:
        box = _captured.get()
        if box is not None:
            box.append(delivery)
            return None
        return self.elsewhere(delivery) if self.elsewhere is not None else None

    def _on_message(self, event: CustomizedEvent) -> None:
        header = event.header
        self._deliver(Delivery("message", getattr(header, "event_id", None), event=event.event or {}))

    def _on_card(self, trigger: P2CardActionTrigger) -> P2CardActionTriggerResponse:
        result = self._deliver(Delivery("card", getattr(trigger.header, "event_id", None),
                                        card=trigger))
        return result if isinstance(result, P2CardActionTriggerResponse) else \
            P2CardActionTriggerResponse({})


def _message(content: bytes | None) -> str:
    try:
        return str(json.loads(content or b"{}").get("msg", ""))
    except (ValueError, AttributeError):
        return ""
