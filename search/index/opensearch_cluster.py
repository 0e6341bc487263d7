"""Talking to the cluster: the client, error mapping, and the index-management requests.

``ClusterAccess`` is the base of ``OpenSearchIndex``: everything here is one request (or a short
sequence) with its errors turned into ``IndexStoreError``; what the requests mean for readers and
writers is decided in ``opensearch.py``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from opensearchpy import AsyncOpenSearch, NotFoundError, TransportError
from opensearchpy.helpers import async_bulk

from search.errors import IndexStoreError
from search.index.opensearch_client import ErrorMapper, is_client_error, make_client, root_cause
from search.index.opensearch_mapping import COMBINED_FIELD, VECTOR_FIELD, IndexLayout

logger = logging.getLogger("search.index.opensearch")


@dataclass
class _Live:
    """The physical index behind the alias, its vector dimension (None: no vector yet), and
    whether it has the combined BM25 field (indexes mapped before it existed do not)."""

    index: str
    dim: int | None
    combined: bool = True


class ClusterAccess:
    """A client for one lorebot index layout on one cluster (lazy; see ``OpenSearchIndex``)."""

    def __init__(
        self,
        url: str = "http://localhost:9200",
        *,
        layout: IndexLayout | None = None,
        username: str | None = None,
        password: str | None = None,
        verify_certs: bool = True,
        ca_certs: str | None = None,
        timeout_s: float = 30.0,
        bulk_chunk_size: int = 500,
        bulk_max_retries: int = 5,
        bulk_initial_backoff_s: float = 1.0,
        health_timeout_s: float = 60.0,
        client: AsyncOpenSearch | None = None,
    ) -> None:
        """``url`` may carry credentials (used when ``username`` is not given); ``verify_certs``
        and ``ca_certs`` apply to https URLs. Bulk writes send ``bulk_chunk_size`` records per
        request and retry records rejected with 429 up to ``bulk_max_retries`` times, waiting
        ``bulk_initial_backoff_s`` seconds, then twice as long each time. A rebuild moves the alias
        only once the new index is as healthy as the old, waiting up to ``health_timeout_s``
        (see ``opensearch_commit``). ``client``: an
        ``AsyncOpenSearch`` built elsewhere, used as is and never closed here."""
        self.url = url
        self.layout = layout or IndexLayout()
        self.bulk_chunk_size = bulk_chunk_size
        self.bulk_max_retries = bulk_max_retries
        self.bulk_initial_backoff_s = bulk_initial_backoff_s
        self.health_timeout_s = health_timeout_s
        self._request_timeout_s = timeout_s
        self._client_options = dict(
            username=username, password=password, verify_certs=verify_certs,
            ca_certs=ca_certs, timeout_s=timeout_s,
        )
        url_password = urlsplit(url).password
        self._errors = ErrorMapper(
            url, alias=self.layout.alias, username=username or urlsplit(url).username,
            secrets=tuple(p for p in (password, url_password and unquote(url_password)) if p),
        )
        self._client = client
        self._owns_client = client is None
        self._closed = False
        # BM25 field weights, written into the combined field (OpenSearchIndex sets its own).
        self.weights: tuple[float, float, float] = (2.0, 1.5, 1.0)
        # Whether searches may use the combined field: True once seen (the alias only ever moves
        # to newer indexes, which have it); False is checked again after a minute, so a rebuild
        # by another process is picked up.
        self._combined_seen = False
        self._combined_checked = float("-inf")

    # ---- lifecycle ---------------------------------------------------------------------------

    @property
    def client(self) -> AsyncOpenSearch:
        """The async client (built on first use)."""
        if self._closed:
            raise IndexStoreError(f"index '{self.layout.alias}' on {self._errors.url} is closed")
        if self._client is None:
            self._client = make_client(self.url, **self._client_options)
        return self._client

    async def open(self) -> ClusterAccess:
        """Check that the cluster answers and accepts the credentials."""
        await self._call("connecting", self.client.info())
        return self

    async def close(self) -> None:
        """Close the HTTP connections (of a client this index built); idempotent."""
        self._closed = True
        client, self._client = self._client, None
        if client is not None and self._owns_client:
            await client.close()

    # ---- cluster plumbing --------------------------------------------------------------------

    async def _call(self, action: str, request: Any) -> Any:
        """Await one client request, mapping every client error to ``IndexStoreError``."""
        try:
            return await request
        except Exception as exc:
            if is_client_error(exc):
                raise self._errors.from_exception(exc, action) from exc
            raise

    async def _search(self, body: dict[str, Any], action: str) -> dict[str, Any]:
        """A search on the alias; a missing alias is an empty index (nothing indexed yet)."""
        # ignore=404: a fresh deployment answers "no such index" until the first write, which
        # is not worth the client's warning log on every search.
        response = await self._call(
            action, self.client.search(index=self.layout.alias, body=body, ignore=404)
        )
        if response.get("status") == 404 and "error" in response:
            if root_cause(response)[0] == "index_not_found_exception":
                return {}
            raise self._errors.from_body(404, response, action)
        return self._complete(response, action)

    def _complete(self, response: dict[str, Any], action: str) -> dict[str, Any]:
        """The search response, if every shard answered; else an error.

        OpenSearch answers a search with whatever shards it can reach (a node down, a shard
        unassigned) and says so only in ``_shards``: taken as is, that is a part of the index
        passed off as all of it (fewer hits, wrong counts, a weak best match read as "no
        evidence"). Failing closed is the only honest answer.
        """
        shards = response.get("_shards") or {}
        failed = int(shards.get("failed") or 0)
        total = int(shards.get("total") or 0)
        answered = int(shards.get("successful") or 0) + int(shards.get("skipped") or 0)
        if failed == 0 and answered >= total:
            return response
        failures = shards.get("failures") or [{}]
        kind, reason = root_cause(failures[0].get("reason") or {})
        why = f" ({kind}: {' '.join(reason.split())})" if kind else ""
        raise IndexStoreError(self._errors.scrub(
            f"OpenSearch at {self._errors.url} answered from {answered} of {total} shards "
            f"while {action}{why}; refusing a partial result: check GET _cluster/health (a "
            "node down or a shard unassigned) and retry once it is yellow or green"
        ))

    async def _live(self) -> _Live | None:
        """The physical index the alias names, or None when there is no alias yet."""
        alias = self.layout.alias
        response = await self._call(
            f"looking up the alias '{alias}'",
            self.client.indices.get_alias(name=alias, ignore=404),
        )
        if response.get("status") == 404 and "error" in response:
            return None
        names = sorted(response)
        if len(names) != 1:
            raise IndexStoreError(
                f"the alias '{alias}' on {self._errors.url} names {len(names)} indexes "
                f"({', '.join(names)}); it must name exactly one: remove it from all but the "
                "current one (POST _aliases)"
            )
        mapping = await self._call(
            f"reading the mapping of {names[0]}", self.client.indices.get_mapping(index=names[0])
        )
        properties = mapping.get(names[0], {}).get("mappings", {}).get("properties", {})
        dim = properties.get(VECTOR_FIELD, {}).get("dimension")
        live = _Live(names[0], int(dim) if dim is not None else None, COMBINED_FIELD in properties)
        self._combined_seen = self._combined_seen or live.combined  # spares searches a lookup
        return live

    async def _search_combined(self) -> bool:
        """Whether the index behind the alias has the combined BM25 field (cached, see init)."""
        if self._combined_seen or time.monotonic() - self._combined_checked < 60:
            return self._combined_seen
        try:
            live = await self._live()
        except IndexStoreError:
            return False  # the search itself will report what is wrong
        self._combined_checked = time.monotonic()
        if live and not live.combined:
            logger.warning("OpenSearch index %s predates the combined BM25 field: BM25 ranks "
                           "with the older per-field query until it is rebuilt (`lorebot "
                           "opensearch migrate`, or `setup --fresh` and a reindex)", live.index)
        return self._combined_seen

    async def _alias_targets(self) -> list[str]:
        live = await self._live()
        return [live.index] if live else []

    async def _next_version(self) -> int:
        """One more than the highest existing ``PREFIX-vN``."""
        try:
            existing = await self.client.indices.get_alias(index=self.layout.pattern)
        except NotFoundError:
            existing = {}
        except Exception as exc:
            if is_client_error(exc):
                raise self._errors.from_exception(exc, "listing lorebot indexes") from exc
            raise
        versions = [v for v in map(self.layout.version_of, existing) if v is not None]
        return max(versions, default=0) + 1

    async def _put_template(self) -> None:
        await self._call(
            f"writing the index template '{self.layout.template_name}'",
            self.client.indices.put_index_template(
                name=self.layout.template_name, body=self.layout.template_body()
            ),
        )

    async def _create_first(self, dim: int | None) -> _Live:
        """The first physical index, created with the alias on it in the same request."""
        await self._put_template()
        name = self.layout.physical(await self._next_version())
        try:
            await self.client.indices.create(
                index=name, body=self.layout.create_body(dim, alias=True)
            )
        except TransportError as exc:
            kind, _ = root_cause(exc.info)
            if kind != "resource_already_exists_exception":
                raise self._errors.from_exception(exc, f"creating {name}") from exc
            # Another process created it at the same moment: use theirs.
        except Exception as exc:
            if is_client_error(exc):
                raise self._errors.from_exception(exc, f"creating {name}") from exc
            raise
        live = await self._live()
        if live is None:
            raise IndexStoreError(
                f"created {name} on {self._errors.url} but the alias '{self.layout.alias}' is "
                "missing; run `lorebot opensearch setup`"
            )
        logger.info("created OpenSearch index %s behind alias %s", live.index, self.layout.alias)
        return live

    async def _add_vector_field(self, index: str, dim: int) -> None:
        body = {"properties": {VECTOR_FIELD: self.layout.vector_mapping(dim)}}
        await self._call(
            f"adding the vector field to {index}",
            self.client.indices.put_mapping(index=index, body=body),
        )

    async def _refresh(self, index: str) -> None:
        await self._call(f"refreshing {index}", self.client.indices.refresh(index=index))

    async def _delete_by_query(self, index: str, body: dict[str, Any]) -> None:
        # conflicts=proceed: a record rewritten since the search saw it is the new version,
        # which must stay; slices=auto spreads a large delete over the shards.
        await self._call(
            f"deleting old records from {index}",
            self.client.delete_by_query(index=index, body=body, conflicts="proceed"),
        )

    async def _bulk(self, actions: Iterable[Any] | AsyncIterator[Any], action: str) -> None:
        # raise_on_error=False: with it on, the helper raises at the first rejected record
        # instead of retrying records rejected with 429; failures come back as a list instead.
        _, errors = await self._call(
            action,
            async_bulk(
                self.client,
                actions,
                chunk_size=self.bulk_chunk_size,
                max_retries=self.bulk_max_retries,
                initial_backoff=self.bulk_initial_backoff_s,
                max_backoff=60,
                raise_on_error=False,
                # How long the cluster waits for an unavailable primary (a node just lost):
                # by default a minute, past the client's timeout, so the client gave up and
                # resent the bulk, and a lost shard took minutes to report. Half the request
                # timeout makes it a per-record 503 that names the shard. `request_timeout`
                # must be given too, or the client takes `timeout` as its own (in seconds).
                params={"timeout": f"{max(1, int(self._request_timeout_s / 2))}s",
                        "request_timeout": self._request_timeout_s},
            ),
        )
        if errors:
            info = next(iter(errors[0].values()), {})
            error = self._errors.from_body(info.get("status"), info.get("error"), action)
            raise IndexStoreError(f"{len(errors)} record(s) were not written: {error}")

    async def _drop(self, index: str) -> None:
        """Delete a physical index; a failure is logged, not raised (it is only disk space)."""
        try:
            await self.client.indices.delete(index=index)
        except Exception:  # noqa: BLE001 - cleanup must not hide the error that caused it
            logger.warning("could not delete OpenSearch index %s; delete it by hand", index,
                           exc_info=True)

    def _dimension_error(self, got: int, stored: int) -> IndexStoreError:
        return IndexStoreError(
            f"OpenSearch index '{self.layout.alias}' on {self._errors.url} holds {stored}-"
            f"dimensional vectors but got {got} dimensions: it was built with another "
            "embedding model. Rebuild it: `lorebot opensearch setup --fresh`, then reindex "
            "every source with the current model."
        )


