"""The async client, and its errors turned into ``IndexStoreError`` messages a person can act on.

Messages name the cluster by its URL without credentials, say which setting to check, and never
contain the password (it is scrubbed from any text taken from the client or the server).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from opensearchpy import AsyncOpenSearch
from opensearchpy import exceptions as os_exc
from opensearchpy.helpers import BulkIndexError

from search.errors import IndexStoreError


def redact_url(url: str) -> str:
    """``url`` without user name and password, for messages and logs."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def make_client(
    url: str,
    *,
    username: str | None = None,
    password: str | None = None,
    verify_certs: bool = True,
    ca_certs: str | None = None,
    timeout_s: float = 30.0,
    **kwargs: Any,
) -> AsyncOpenSearch:
    """An ``AsyncOpenSearch`` for ``url``; credentials in the URL are used when none are given.

    The URL handed to the client carries no credentials (they travel as a Basic auth header),
    so they cannot show up in the client's own error messages.
    """
    parts = urlsplit(url)
    if parts.username and username is None:
        username = unquote(parts.username)
        password = unquote(parts.password or "")
    options: dict[str, Any] = {
        "hosts": [redact_url(url)],
        "timeout": timeout_s,
        "max_retries": 2,
        "retry_on_timeout": True,
    }
    if username is not None:
        options["http_auth"] = (username, password or "")
    if parts.scheme == "https":
        options.update(verify_certs=verify_certs, ssl_show_warn=verify_certs)
        if ca_certs:
            options["ca_certs"] = ca_certs
    options.update(kwargs)
    return AsyncOpenSearch(**options)


def root_cause(error: Any) -> tuple[str, str]:
    """(type, reason) of an OpenSearch error body, the most specific cause first."""
    if isinstance(error, dict):
        inner = error.get("error", error)
        if isinstance(inner, dict):
            causes = inner.get("root_cause") or []
            first = causes[0] if causes and isinstance(causes[0], dict) else inner
            caused_by = inner.get("caused_by")
            if isinstance(caused_by, dict) and first is inner:
                first = caused_by
            return str(first.get("type") or inner.get("type") or ""), str(
                first.get("reason") or inner.get("reason") or ""
            )
        return "", str(inner)
    return "", "" if error is None else str(error)


class ErrorMapper:
    """Builds the ``IndexStoreError`` for a failure talking to one cluster."""

    def __init__(self, url: str, *, alias: str, username: str | None, secrets: tuple[str, ...]):
        self.url = redact_url(url)
        self.alias = alias
        self.username = username
        self._secrets = tuple(s for s in secrets if s)

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def from_exception(self, exc: BaseException, action: str) -> IndexStoreError:
        """The error for an exception raised by the client while doing ``action``."""
        if isinstance(exc, IndexStoreError):
            return exc
        if isinstance(exc, BulkIndexError):
            errors = exc.errors or [{}]
            first = errors[0]
            info = next(iter(first.values()), {}) if isinstance(first, dict) else {}
            return self.from_body(info.get("status"), info.get("error"), action)
        if isinstance(exc, os_exc.ConnectionTimeout):
            return IndexStoreError(self.scrub(
                f"OpenSearch at {self.url} did not answer in time while {action}; check the "
                "cluster's health (GET _cluster/health) or raise LOREBOT_OPENSEARCH__TIMEOUT_S"
            ))
        if isinstance(exc, os_exc.SSLError):
            return IndexStoreError(self.scrub(
                f"TLS with OpenSearch at {self.url} failed while {action} ({exc.info}); check "
                "LOREBOT_OPENSEARCH__CA_CERTS (the CA that signed the cluster's certificate) "
                "and LOREBOT_OPENSEARCH__VERIFY_CERTS, and that the URL's scheme is right"
            ))
        if isinstance(exc, os_exc.ConnectionError):
            return IndexStoreError(self.scrub(
                f"cannot reach OpenSearch at {self.url} while {action} ({exc.info}); check "
                "LOREBOT_OPENSEARCH__URL and that the cluster is running"
            ))
        if isinstance(exc, os_exc.TransportError):
            return self.from_body(exc.status_code, exc.info or exc.error, action)
        if isinstance(exc, os_exc.ImproperlyConfigured):
            return IndexStoreError(self.scrub(
                f"the OpenSearch client for {self.url} is misconfigured ({exc}); check the "
                "LOREBOT_OPENSEARCH__ settings"
            ))
        return IndexStoreError(self.scrub(f"OpenSearch at {self.url} failed while {action}: {exc}"))

    def from_body(self, status: Any, error: Any, action: str) -> IndexStoreError:
        """The error for an error answer (HTTP status and OpenSearch error body)."""
        kind, reason = root_cause(error)
        detail = f"{status} {kind}: {reason}" if kind else f"{status}: {reason}"
        if status == 401:
            message = (
                f"OpenSearch at {self.url} refused the credentials while {action} (401); check "
                "LOREBOT_OPENSEARCH__USERNAME and LOREBOT_OPENSEARCH__PASSWORD"
            )
        elif status == 403:
            who = f"user {self.username!r}" if self.username else "this client"
            message = (
                f"OpenSearch at {self.url} does not allow {who} to do this while {action} "
                f"({detail}); grant it read and write on the indexes and alias "
                f"'{self.alias}*' and the index template (or use another user)"
            )
        elif kind == "index_not_found_exception" or (status == 404 and "index" in kind):
            message = (
                f"the index '{self.alias}' does not exist on {self.url} ({reason}); run "
                "`lorebot opensearch setup`, or check LOREBOT_OPENSEARCH__INDEX_PREFIX"
            )
        elif kind == "invalid_alias_name_exception" or (
            kind == "invalid_index_name_exception" and "alias" in reason
        ):
            message = (
                f"an index named '{self.alias}' exists on {self.url} where lorebot keeps its "
                f"read alias ({reason}); delete that index, or set "
                "LOREBOT_OPENSEARCH__INDEX_PREFIX to another name"
            )
        elif kind in (
            "mapper_parsing_exception",
            "strict_dynamic_mapping_exception",
            "document_parsing_exception",
            "illegal_argument_exception",
        ) and ("mapp" in reason or "dimension" in reason or "field" in reason):
            message = (
                f"mapping conflict in '{self.alias}' on {self.url} while {action} ({detail}): "
                "the index was created by another lorebot version or embedding model. Build a "
                "fresh index: `lorebot opensearch setup --fresh`, then reindex every source"
            )
        elif status == 429:
            message = (
                f"OpenSearch at {self.url} is overloaded (429) while {action}, even after "
                "retries with backoff; try again later or give the cluster more capacity"
            )
        else:
            message = f"OpenSearch at {self.url} failed while {action}: {detail}"
        return IndexStoreError(self.scrub(message))


def is_client_error(exc: BaseException) -> bool:
    """An error raised by opensearch-py (transport, HTTP status, bulk item, configuration)."""
    return type(exc).__module__.startswith("opensearchpy")
