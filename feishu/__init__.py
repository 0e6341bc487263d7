"""The Feishu/Lark adapter: the same bot as ``handlers/`` (Slack), on the official ``lark-oapi``
SDK, through the same :class:`bot.service.conversation.ConversationService`.

- ``gate``: verifies and decrypts event callbacks (the SDK's own dispatcher does the work);
- ``server``: the aiohttp endpoint ``POST /lark/events`` and ``GET /healthz``;
- ``messages``: ``im.message.receive_v1`` into a question (direct chats, group @mentions,
  follow-ups in a thread the bot answered) and the chat commands;
- ``reply``: the answer events rendered as one interactive card, replied in the thread and
  patched while the answer streams; ``card``: the card JSON; ``feedback``: its 👍/👎 buttons;
- ``api``: the Open API calls (tenant token, reply, patch, bot info) through the SDK;
- ``bot``: :class:`LarkBot`, the service and the Redis stores it is built on.

Only ``bot.cli`` may import this package; it imports ``bot`` (never ``handlers``).
"""
