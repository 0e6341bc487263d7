"""The chat model: an OpenAI-compatible endpoint behind a small, retrying client.

Any OpenAI-compatible server works (OpenAI, Azure OpenAI, vLLM, Ollama, …). Retries are ours, not
the ``openai`` package's (its ``max_retries`` is set to 0): timeouts, connection errors, 408, 429
and 5xx are retried with exponential backoff and full jitter, a ``Retry-After`` header wins when
the server sends one, and every retry is logged. Whatever still fails is raised as an
:class:`LLMError` (``raise … from exc``) whose message never contains the API key.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import os
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol, TypedDict

import httpx2
import openai

from bot.settings import LLMSettings

logger = logging.getLogger(__name__)

DEFAULT_OPENAI_BASE_URL = "https://api.openai.com/v1"
# Some local servers (Ollama, vLLM without --api-key) need no key, but the openai client insists
# on one; this placeholder is sent instead and is obviously not a secret.
NO_KEY_PLACEHOLDER = "not-needed"
_RETRYABLE_STATUS = frozenset({408, 429})


class ChatMessage(TypedDict):
    """One chat message as the OpenAI API takes it."""

    role: str
    content: str


class LLMError(Exception):
    """Base class for every error of the chat model client."""


class LLMConfigError(LLMError):
    """The settings cannot make a working client (e.g. a model but no key and no base URL)."""


class LLMUnavailableError(LLMError):
    """Transient failures (timeouts, connection errors, 429, 5xx) outlasted every retry."""


class LLMRequestError(LLMError):
    """The server refused the request in a way retrying cannot fix (400, 401, 403, 404, …)."""


class LLMStreamError(LLMError):
    """A stream broke after text had already been emitted, so it cannot be replayed silently."""


class LLMCutOffError(LLMStreamError):
    """The stream ended cleanly but without a finish reason: the answer is incomplete."""


class LLM(Protocol):
    """The seam the answer pipeline depends on; :class:`LLMClient` implements it."""

    async def complete(
        self, messages: Sequence[ChatMessage], *, temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> str: ...

    def stream(
        self, messages: Sequence[ChatMessage], *, temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> AsyncGenerator[str, None]: ...


class LLMClient:
    """A chat model over ``openai.AsyncOpenAI`` (or ``AsyncAzureOpenAI``) with our own retries.

    ``max_retries`` counts retries after the first attempt. Backoff before retry *i* (0-based)
    is uniform in ``[0, min(backoff_max_s, backoff_base_s * 2**i)]`` ("full jitter"), unless the
    server sent ``Retry-After``/``retry-after-ms``, which is honoured up to ``retry_after_max_s``.
    ``max_tokens_param`` names the output-length parameter: OpenAI's current models take
    ``max_completion_tokens``, most other OpenAI-compatible servers only ``max_tokens``.
    """

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        *,
        model: str,
        temperature: float = 0.1,
        max_output_tokens: int = 700,
        max_retries: int = 3,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 8.0,
        retry_after_max_s: float = 30.0,
        max_tokens_param: str = "max_tokens",
        secrets: Sequence[str] = (),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._client = client
        self.model = model
        self.temperature = temperature
        self.max_output_tokens = max_output_tokens
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.retry_after_max_s = retry_after_max_s
        self.max_tokens_param = max_tokens_param
        # Values scrubbed from every error message we raise (the API key, at least).
        self._secrets = tuple(s for s in secrets if s and s != NO_KEY_PLACEHOLDER)
        self._sleep = sleep

    async def complete(
        self, messages: Sequence[ChatMessage], *, temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> str:
        """The model's whole reply to ``messages`` (empty string if it sent no content)."""
        params = self._params(messages, temperature, max_tokens)
        attempt = 0
        while True:
            try:
                response = await self._client.chat.completions.create(**params)
            except (openai.OpenAIError, httpx2.HTTPError) as exc:
                delay = self._retry_delay(exc, attempt)
                if delay is None:
                    raise self._final_error(exc, attempt) from exc
                attempt += 1
                await self._sleep(delay)
                continue
            if not response.choices:
                return ""
            return response.choices[0].message.content or ""

    async def stream(
        self, messages: Sequence[ChatMessage], *, temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> AsyncGenerator[str, None]:
        """Yield the reply's text deltas as they arrive.

        A failure before the first delta is retried like :meth:`complete`; once text has been
        yielded a failure raises :class:`LLMStreamError`, because the caller has already shown it.
        """
        params = {**self._params(messages, temperature, max_tokens), "stream": True}
        attempt = 0
        while True:
            emitted = False
            try:
                response = await self._client.chat.completions.create(**params)
                finished = False
                try:
                    async for chunk in response:
                        if not chunk.choices:
                            continue
                        choice = chunk.choices[0]
                        delta = choice.delta.content if choice.delta is not None else None
                        if delta:
                            emitted = True
                            yield delta
                        finished = finished or choice.finish_reason is not None
                finally:
                    # Closing a connection that already broke can fail again; the first error
                    # is the one worth reporting.
                    with contextlib.suppress(openai.OpenAIError, httpx2.HTTPError, OSError):
                        await response.close()
                if not finished:
                    # The connection ended cleanly but the model never said it was done: what
                    # arrived is a cut-off answer, not a complete one.
                    raise LLMCutOffError(f"The stream from model {self.model!r} ended without a "
                                         "finish reason (cut off)")
                return
            except (openai.OpenAIError, httpx2.HTTPError, ValueError) as exc:
                # ValueError: a chunk that is not valid JSON (a broken proxy or server).
                if emitted:
                    raise LLMStreamError(
                        f"The stream from model {self.model!r} broke mid-answer: "
                        f"{self._describe(exc)}"
                    ) from exc
                delay = self._retry_delay(exc, attempt)
                if delay is None:
                    raise self._final_error(exc, attempt) from exc
                attempt += 1
                await self._sleep(delay)

    async def aclose(self) -> None:
        """Close the underlying HTTP connection pool."""
        await self._client.close()

    @property
    def openai_client(self) -> openai.AsyncOpenAI:
        """The configured ``openai`` client, for API calls other than chat (file uploads,
        fine-tuning jobs). Those get no retries: retrying a job creation could start two jobs."""
        return self._client

    def describe_error(self, exc: BaseException) -> str:
        """A short description of ``exc`` with the API key scrubbed out."""
        return self._describe(exc)

    # -- internals ------------------------------------------------------------------------------

    def _params(
        self, messages: Sequence[ChatMessage], temperature: float | None, max_tokens: int | None
    ) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": [dict(m) for m in messages],
            "temperature": self.temperature if temperature is None else temperature,
            self.max_tokens_param: max_tokens or self.max_output_tokens,
        }

    def _retry_delay(self, exc: BaseException, attempt: int) -> float | None:
        """Seconds to wait before retrying after ``exc``, or None when it must not be retried."""
        if not _is_retryable(exc) or attempt >= self.max_retries:
            return None
        retry_after = _retry_after_s(exc)
        if retry_after is not None:
            delay = min(retry_after, self.retry_after_max_s)
        else:
            delay = random.uniform(0, min(self.backoff_max_s, self.backoff_base_s * 2**attempt))
        logger.warning(
            "LLM request failed (%s); retry %d/%d in %.2fs",
            self._describe(exc), attempt + 1, self.max_retries, delay,
        )
        return delay

    def _final_error(self, exc: BaseException, attempt: int) -> LLMError:
        tries = f"{attempt + 1} attempt{'s' if attempt else ''}"
        if _is_retryable(exc):
            return LLMUnavailableError(
                f"The language model {self.model!r} is unavailable after {tries}: "
                f"{self._describe(exc)}. Check the LLM base URL and that the server is up."
            )
        return LLMRequestError(
            f"The language model {self.model!r} refused the request: {self._describe(exc)}. "
            "Check the LLM settings (model name, API key, base URL)."
        )

    def _describe(self, exc: BaseException) -> str:
        """A short description of ``exc`` with every known secret scrubbed out."""
        if isinstance(exc, openai.APIStatusError):
            text = f"HTTP {exc.status_code}: {exc.message}"
        else:
            text = f"{type(exc).__name__}: {str(exc).rstrip('.')}"
            # openai's "Connection error." hides the useful part ("All connection attempts failed").
            if exc.__cause__ is not None and str(exc.__cause__):
                text += f" ({exc.__cause__})"
        text = text[:300].rstrip(".")
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


def _is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, (openai.APIConnectionError, httpx2.TransportError)):
        return True  # includes timeouts
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in _RETRYABLE_STATUS or exc.status_code >= 500
    return False


def _retry_after_s(exc: BaseException) -> float | None:
    """The server's requested wait from ``retry-after-ms`` or ``Retry-After`` (seconds or date)."""
    response = getattr(exc, "response", None)
    headers: Mapping[str, str] | None = getattr(response, "headers", None)
    if not headers:
        return None
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def build_llm(
    settings: LLMSettings, environ: Mapping[str, str] = os.environ, **client_options: Any
) -> LLMClient | None:
    """Build the chat client from settings, or None when no model is configured.

    ``OPENAI_API_KEY`` and ``OPENAI_BASE_URL`` from ``environ`` fill in an unset key or base URL
    (for Azure: ``AZURE_OPENAI_API_KEY`` and ``AZURE_OPENAI_ENDPOINT``); the settings object
    itself never reads the environment. ``client_options`` go to :class:`LLMClient` (backoff,
    ``sleep``) — tests use them to avoid real waits.
    """
    if not settings.model:
        return None
    azure = settings.azure_api_version is not None
    key = settings.api_key.get_secret_value() if settings.api_key else None
    key = key or environ.get("AZURE_OPENAI_API_KEY" if azure else "OPENAI_API_KEY") or None
    base_url = settings.base_url or environ.get(
        "AZURE_OPENAI_ENDPOINT" if azure else "OPENAI_BASE_URL"
    ) or None

    if azure:
        if not base_url or not key:
            raise LLMConfigError(
                "Azure OpenAI needs an endpoint and a key: set LOREBOT_LLM__BASE_URL (or "
                "AZURE_OPENAI_ENDPOINT) and LOREBOT_LLM__API_KEY (or AZURE_OPENAI_API_KEY)."
            )
        client: openai.AsyncOpenAI = openai.AsyncAzureOpenAI(
            azure_endpoint=base_url, api_version=settings.azure_api_version, api_key=key,
            timeout=settings.timeout_s, max_retries=0,
        )
    else:
        if not key and not base_url:
            raise LLMConfigError(
                f"LLM model {settings.model!r} is set but there is no API key: set "
                "LOREBOT_LLM__API_KEY (or OPENAI_API_KEY), or LOREBOT_LLM__BASE_URL for a local "
                "server that needs none, or unset LOREBOT_LLM__MODEL for extractive answers."
            )
        client = openai.AsyncOpenAI(
            base_url=base_url or DEFAULT_OPENAI_BASE_URL, api_key=key or NO_KEY_PLACEHOLDER,
            timeout=settings.timeout_s, max_retries=0,
        )
    # OpenAI and Azure reject max_tokens for newer models; other servers may not know the newer
    # name. Which one applies is decided by who we talk to.
    official = azure or (base_url or DEFAULT_OPENAI_BASE_URL).startswith(DEFAULT_OPENAI_BASE_URL)
    options: dict[str, Any] = {
        "model": settings.model,
        "temperature": settings.temperature,
        "max_output_tokens": settings.max_output_tokens,
        "max_retries": settings.max_retries,
        "max_tokens_param": "max_completion_tokens" if official else "max_tokens",
        "secrets": (key,) if key else (),
        **client_options,
    }
    logger.info(
        "LLM: model %s at %s%s", settings.model, base_url or DEFAULT_OPENAI_BASE_URL,
        " (Azure)" if azure else "",
    )
    return LLMClient(client, **options)
