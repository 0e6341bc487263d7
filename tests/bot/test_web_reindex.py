"""A web reindex that cannot see its site this time keeps what it indexed before, and says the
source is stale; web sources refuse loopback targets unless the setting allows them."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from bot.jobs.indexing import index_source
from bot.settings import Settings
from bot.sources.registry import Source
from tests.support.web_site import WebSite


@pytest.fixture(scope="module")
def embedder():
    from search.embedding import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder("all-MiniLM-L6-v2", batch_size=16)


@pytest.fixture
async def index(tmp_path):
    from search.index.sqlite import SqliteIndex

    index = SqliteIndex(tmp_path / "index.sqlite3")
    yield index
    await index.close()


def services(index, embedder, tmp_path, **sources):
    from search.indexer import Indexer

    settings = Settings(_env_file=None, data_dir=tmp_path,
                        sources={"fetch_timeout_s": 1.0, **sources})
    return SimpleNamespace(settings=settings, indexer=Indexer(index, embedder))


async def test_a_failed_start_page_or_sitemap_keeps_the_pages_and_marks_the_source_stale(
        index, embedder, tmp_path):
    svc = services(index, embedder, tmp_path, allow_private_hosts="127.0.0.1")
    async with WebSite(slow_s=0) as site:
        crawl_source = Source("dsite", "crawl", site.url + "/")
        first = await index_source(svc, crawl_source)
        assert first["added"] == 5 and "stale" not in first
        site.fail["/"] = 503
        second = await index_source(svc, crawl_source)
        assert second["removed"] == 0 and "HTTP 503" in second["stale"]
        assert len(await index.documents("dsite")) == 5

        map_source = Source("dmap", "sitemap", site.url + "/sitemap.xml")
        site.fail.clear()
        assert (await index_source(svc, map_source))["added"] == 2
        site.fail["/sitemap.xml"] = 503
        again = await index_source(svc, map_source)
        assert again["removed"] == 0 and "sitemap could not be read" in again["stale"]
        assert len(await index.documents("dmap")) == 2
        # Seen whole again, the pages no longer linked are removed as before.
        site.fail.clear()
        site.pages["/"] = ("Welcome", "<p>Only <a href='/vpn.html'>VPN setup</a> now.</p>")
        complete = await index_source(svc, crawl_source)
        assert complete["removed"] == 3 and "stale" not in complete  # onboarding, slow, huge


async def test_by_default_a_web_source_may_not_reach_loopback(index, embedder, tmp_path):
    svc = services(index, embedder, tmp_path, allow_private_hosts="")
    async with WebSite() as site:
        summary = await index_source(svc, Source("dsite", "crawl", site.url + "/"))
        assert site.requests == []
    assert summary["added"] == 0
    assert "loopback address" in summary["failed"][0]["reason"]
