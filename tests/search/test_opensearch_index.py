"""The OpenSearch backend passes the shared index contract over real HTTP, against osmem-server.

k-NN cases are skipped: osmem-server rejects k-NN queries. The whole contract, k-NN included,
runs against a real cluster in ``test_opensearch_cluster.py`` when ``OPENSEARCH_URL`` is set.
Every request is validated against the OpenSearch API specification by the spec-checking client
(see ``tests/support``); a violation fails the test.
"""

from __future__ import annotations

import pytest

from tests.search.index_contract import IndexContract
from tests.support.opensearch_fixtures import *  # noqa: F401,F403 - fixtures


class TestOpenSearchIndexOnOsmem(IndexContract):
    supports_knn = False  # osmem-server rejects k-NN queries
    isolated_reads = True

    @pytest.fixture
    async def index(self, osmem_url, open_test_index):
        return await open_test_index(osmem_url)
