"""A fake OpenAI-compatible chat server on aiohttp, for tests that drive the real ``openai`` client.

The ``openai`` package talks HTTP through httpx2, which respx cannot intercept, so tests point the
real client at this server on a free local port instead::

    async with FakeOpenAI(responder=lambda messages: "Hello [1]") as server:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0)
        ...
        assert server.request_count == 1

Behaviour is scripted with a queue of :class:`Reply` objects, consumed one per request (answer
text, an HTTP error status with headers such as ``Retry-After``, a delay, a dropped connection, a
stream cut after a few deltas). When the queue is empty the ``responder`` function of the request's
messages decides the answer text. Every request body is recorded in :attr:`FakeOpenAI.requests`.

Fine-tuning is faked too: ``POST /v1/files`` (a multipart upload, recorded with its form fields
and the file's text as ``content``) and ``POST /v1/fine_tuning/jobs``; both always succeed.
:class:`ThreadedFakeOpenAI` serves from a thread of its own, for code that runs its own event
loop (the CLI's ``asyncio.run``).
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

Responder = Callable[[list[dict[str, Any]]], str]


def echo_last_user_message(messages: list[dict[str, Any]]) -> str:
    """The default responder: answers with the last user message, so tests can see the prompt."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return str(message.get("content", ""))
    return ""


@dataclass(frozen=True)
class Reply:
    """One scripted behaviour for the next request.

    ``text`` None means "ask the responder". ``status`` other than 200 sends an OpenAI-style error
    body (with ``error_message`` as its message). ``drop`` closes the connection without any
    response; ``drop_after_chunks`` (streaming only) sends that many content deltas and then
    closes the connection mid-stream.
    """

    text: str | None = None
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    drop: bool = False
    drop_after_chunks: int | None = None
    error_message: str | None = None
    # Streaming only, after all content: "stop" (a finish reason, [DONE]), "cut" (the stream
    # ends cleanly with no finish reason), "garbage" (a chunk that is not JSON).
    end: str = "stop"
    # Streaming only: wait this long between content deltas.
    chunk_delay_s: float = 0.0

    @classmethod
    def error(cls, status: int, *, retry_after: str | float | None = None, **kw: Any) -> Reply:
        """An HTTP error reply, optionally with a ``Retry-After`` header (seconds)."""
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        return cls(status=status, headers=headers, **kw)


@dataclass(frozen=True)
class RecordedRequest:
    """What the server received: path, headers and the decoded JSON body."""

    path: str
    headers: Mapping[str, str]
    body: dict[str, Any]

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages", []))

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))


_WORD = re.compile(r"\S+\s*|\s+")


class FakeOpenAI:
    """An OpenAI-compatible ``POST /v1/chat/completions`` on 127.0.0.1, port chosen by the OS."""

    def __init__(self, responder: Responder = echo_last_user_message) -> None:
        self.responder = responder
        self.requests: list[RecordedRequest] = []
        self._replies: deque[Reply] = deque()
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    # -- scripting and inspection -------------------------------------------------------------

    def enqueue(self, *replies: Reply | str) -> None:
        """Queue behaviours for the next requests; a plain string is an answer text."""
        for reply in replies:
            self._replies.append(Reply(text=reply) if isinstance(reply, str) else reply)

    @property
    def request_count(self) -> int:
        return len(self.requests)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        """The recorded requests to one endpoint, e.g. ``/v1/files``."""
        return [r for r in self.requests if r.path == path]

    @property
    def base_url(self) -> str:
        if self._port is None:
            raise RuntimeError("FakeOpenAI is not started; use it as an async context manager")
        return f"http://127.0.0.1:{self._port}/v1"

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat_completions)
        app.router.add_post("/v1/files", self._files)
        app.router.add_post("/v1/fine_tuning/jobs", self._fine_tuning_jobs)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        # Port 0 lets the OS pick a free port; read back the one it chose.
        self._port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeOpenAI:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- the endpoint ---------------------------------------------------------------------------

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(RecordedRequest(request.path, dict(request.headers), body))
        reply = self._replies.popleft() if self._replies else Reply()

        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        if reply.drop:
            return self._drop(request)
        if reply.status != 200:
            return web.json_response(
                {"error": {"message": reply.error_message or f"fake error {reply.status}",
                           "type": "fake_error",
                           "code": str(reply.status)}},
                status=reply.status,
                headers=dict(reply.headers),
            )

        text = reply.text if reply.text is not None else self.responder(body.get("messages", []))
        model = body.get("model", "fake-model")
        if body.get("stream"):
            return await self._stream(request, text, model, reply)
        return web.json_response(_completion(text, model), headers=dict(reply.headers))

    async def _files(self, request: web.Request) -> web.Response:
        form = await request.post()
        upload = form["file"]
        content = upload.file.read().decode("utf-8")
        body = {"purpose": form.get("purpose"), "filename": upload.filename, "content": content}
        self.requests.append(RecordedRequest(request.path, dict(request.headers), body))
        n = len(self.requests_to(request.path))
        return web.json_response({
            "id": f"file-fake-{n}", "object": "file", "bytes": len(content.encode()),
            "created_at": int(time.time()), "filename": upload.filename,
            "purpose": body["purpose"], "status": "processed",
        })

    async def _fine_tuning_jobs(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(RecordedRequest(request.path, dict(request.headers), body))
        n = len(self.requests_to(request.path))
        return web.json_response({
            "id": f"ftjob-fake-{n}", "object": "fine_tuning.job", "created_at": int(time.time()),
            "model": body.get("model"), "training_file": body.get("training_file"),
            "validation_file": None, "status": "validating_files", "fine_tuned_model": None,
            "finished_at": None, "error": None, "hyperparameters": {"n_epochs": "auto"},
            "organization_id": "org-fake", "result_files": [], "seed": 0, "trained_tokens": None,
        })

    async def _stream(
        self, request: web.Request, text: str, model: str, reply: Reply
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                     **dict(reply.headers)}
        )
        await response.prepare(request)
        await _send_event(response, _chunk(model, {"role": "assistant", "content": ""}))
        for i, piece in enumerate(_WORD.findall(text)):
            if reply.drop_after_chunks is not None and i >= reply.drop_after_chunks:
                return self._drop(request, response)
            if reply.chunk_delay_s:
                await asyncio.sleep(reply.chunk_delay_s)
            await _send_event(response, _chunk(model, {"content": piece}))
        if reply.end == "garbage":
            await response.write(b"data: {\"choices\": [{\"delta\": {\"content\": \"x\n\n")
        elif reply.end == "stop":
            await _send_event(response, _chunk(model, {}, finish_reason="stop"))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    @staticmethod
    def _drop(
        request: web.Request, response: web.StreamResponse | None = None
    ) -> web.StreamResponse:
        # Closing the transport is what a crashed upstream looks like to the client: no status
        # line at all, or a chunked body that ends without its terminator.
        if request.transport is not None:
            request.transport.close()
        return response if response is not None else web.Response(status=500)


async def _send_event(response: web.StreamResponse, payload: dict[str, Any]) -> None:
    await response.write(f"data: {json.dumps(payload)}\n\n".encode())


def _completion(text: str, model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text},
             "finish_reason": "stop", "logprobs": None}
        ],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }


def _chunk(model: str, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason,
                     "logprobs": None}],
    }


class ThreadedFakeOpenAI:
    """A :class:`FakeOpenAI` serving from its own event loop on a daemon thread::

        with ThreadedFakeOpenAI() as server:
            main(["ask", ...])  # the CLI runs asyncio.run() itself
    """

    def __init__(self) -> None:
        self.server = FakeOpenAI()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def _call(self, coro) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        self._call(self.server.start())
        return self.server

    def __exit__(self, *exc: object) -> None:
        try:
            self._call(self.server.stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
            self._loop.close()


@pytest.fixture
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    """A started :class:`FakeOpenAI`; import this fixture into a conftest to use it."""
    async with FakeOpenAI() as server:
        yield server
