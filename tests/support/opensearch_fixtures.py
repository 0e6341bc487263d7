"""Clusters for the OpenSearch backend's tests, with every request checked against the API spec.

* ``osmem``: one ``osmem-server`` process per test session (an in-memory OpenSearch-compatible
  server from PyPI, on a free localhost port); each test gets its own copy-on-write clone, so
  tests never see each other's indexes. It implements templates, aliases, ``_msearch``, the
  analyzers lorebot uses and aggregations, but rejects k-NN queries and has no search pipelines.
* ``real_cluster_url``: ``OPENSEARCH_URL`` when set (tests marked ``opensearch``), else skip.
  ``OPENSEARCH_KNN_ENGINE`` (default ``faiss``, as in production) is the k-NN engine the test
  indexes map their vectors with: ``lucene`` on the Maven-assembled node of
  ``deploy/opensearch-node``, which has no faiss JNI libraries.

``spec_checked_client(url, validator)`` builds an ``AsyncOpenSearch`` whose transport validates
each request (method, path, query parameters, body) with a ``RequestValidator`` before sending
it; the fixtures assert at teardown that no request broke the spec, so a violation cannot hide
behind an error handler.

Import the fixtures into a test module: ``from tests.support.opensearch_fixtures import *``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from opensearchpy import AsyncOpenSearch, AsyncTransport

from search.index.opensearch import OpenSearchIndex
from search.index.opensearch_mapping import PROPERTIES, IndexLayout
from tests.support.opensearch_spec import (
    RequestValidator,
    load_spec,
    mapping_document_checker,
    spec_available,
)

__all__ = [
    "osmem",
    "osmem_url",
    "real_cluster_url",
    "spec_validator",
    "spec_checked_client",
    "open_test_index",
]


# A test's stand-in for the cluster on some requests: given (method, url, params, body) it
# returns a response (or raises) instead of sending, or returns None to send as usual.
Intercept = Callable[[str, str, Any, Any], Awaitable[Any]]


def spec_checked_client(
    url: str, validator: RequestValidator, *, intercept: Intercept | None = None, **kwargs: Any
) -> AsyncOpenSearch:
    """An async client that validates every request against the spec before sending it.

    ``intercept`` lets a test answer chosen requests itself (a 429, a 401), after validation.
    """

    class SpecCheckingTransport(AsyncTransport):
        async def perform_request(  # type: ignore[override]
            self, method: str, url: str, params: Any = None, body: Any = None,
            timeout: Any = None, ignore: Any = (), headers: Any = None,
        ) -> Any:
            validator.check(method, url, params, body)
            if intercept is not None:
                answer = await intercept(method, url, params, body)
                if answer is not None:
                    return answer
            return await super().perform_request(
                method, url, params=params, body=body, timeout=timeout, ignore=ignore,
                headers=headers,
            )

    return AsyncOpenSearch(hosts=[url], transport_class=SpecCheckingTransport, **kwargs)


@pytest.fixture(scope="session")
def osmem() -> Iterator[Any]:
    """One osmem-server for the session, on a free port (skips when it is not installed)."""
    osmem_server = pytest.importorskip("osmem_server", reason="pip install -e '.[dev]'")
    # No Japanese analysis: lorebot uses cjk_bigram, never kuromoji.
    server = osmem_server.OsmemServer.start(japanese=False)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def osmem_url(osmem) -> Iterator[str]:
    """A fresh clone of the session's server for one test: an empty cluster of its own."""
    clone = osmem.clone()
    try:
        yield clone.url
    finally:
        clone.close()


def knn_engine_for_tests() -> str:
    """The k-NN engine of test indexes: ``OPENSEARCH_KNN_ENGINE``, else faiss (production's)."""
    return os.environ.get("OPENSEARCH_KNN_ENGINE") or "faiss"


@pytest.fixture
def real_cluster_url() -> str:
    """``OPENSEARCH_URL`` (a real cluster, e.g. from ``deploy/docker-compose.yml``), or skip."""
    url = os.environ.get("OPENSEARCH_URL")
    if not url:
        pytest.skip("set OPENSEARCH_URL to run against a real OpenSearch cluster")
    return url


@pytest.fixture
def spec_validator() -> Iterator[RequestValidator]:
    """A validator for one test; fails the test at teardown if any request broke the spec."""
    if not spec_available():
        pytest.skip("the OpenSearch API spec is not in ../shared/opensearch-api-spec")
    validator = RequestValidator(load_spec(), check_document=mapping_document_checker(PROPERTIES))
    yield validator
    validator.assert_clean()


@pytest.fixture
async def open_test_index(spec_validator) -> AsyncIterator[Any]:
    """A factory: ``await open_test_index(url, **options)`` gives an ``OpenSearchIndex`` on a
    unique prefix whose client is spec-checked; what it created is deleted after the test."""
    made: list[tuple[OpenSearchIndex, AsyncOpenSearch]] = []

    async def factory(url: str, **options: Any) -> OpenSearchIndex:
        prefix = options.pop("prefix", f"lorebot-test-{uuid.uuid4().hex[:10]}")
        layout = options.pop("layout", None) or IndexLayout(
            prefix=prefix, replicas=0, knn_engine=knn_engine_for_tests())
        client = spec_checked_client(
            url, spec_validator, intercept=options.pop("intercept", None),
            **options.pop("client_options", {}),
        )
        index = OpenSearchIndex(url, layout=layout, client=client, **options)
        made.append((index, client))
        return index

    yield factory
    for index, client in made:
        await _cleanup(index, client)


async def _cleanup(index: OpenSearchIndex, client: AsyncOpenSearch) -> None:
    """Delete the test's physical indexes (the alias goes with them) and its template.

    Indexes are deleted by name, not by wildcard: clusters may refuse wildcard deletes
    (``action.destructive_requires_name``).
    """
    layout = index.layout
    try:
        names = sorted(await client.indices.get_alias(index=layout.pattern))
        if names:
            await client.indices.delete(index=",".join(names))
    except Exception:  # noqa: BLE001 - best effort: nothing may have been created
        pass
    try:
        await client.indices.delete_index_template(name=layout.template_name)
    except Exception:  # noqa: BLE001
        pass
    if getattr(index, "server_hybrid", None):
        try:
            await client.search_pipeline.delete(id=index.pipeline_name)
        except Exception:  # noqa: BLE001
            pass
    await index.close()
    await client.close()
