"""Web sources against a local site: a page, a sitemap, a same-host crawl; every per-page
failure is reported with its URL and the crawl goes on; re-crawling an unchanged site
re-embeds nothing."""

from __future__ import annotations

from search.models import Document, LoadFailure
from search.web import CrawlLimits, crawl, normalize_url, page_doc_id
from tests.support.web_site import WebSite

LIMITS = CrawlLimits(max_pages=50, max_depth=2, concurrency=3, timeout_s=1.0,
                     max_bytes=512 * 1024, user_agent="lorebot-test")


def split(items):
    docs = {d.url: d for d in items if isinstance(d, Document)}
    failed = {f.path: f.reason for f in items if isinstance(f, LoadFailure)}
    return docs, failed


async def test_crawl_indexes_same_host_pages_and_reports_every_failure():
    async with WebSite(slow_s=3.0) as site:
        items = await crawl("handbook", site.url + "/", "crawl", LIMITS)
        requested = list(site.requests)
    docs, failed = split(items)
    u = site.url
    assert set(docs) == {f"{u}/", f"{u}/vpn.html", f"{u}/onboarding.html"}
    assert "Zorbulator" in docs[f"{u}/vpn.html"].text and docs[f"{u}/vpn.html"].title == "VPN setup"
    assert failed[f"{u}/missing.html"] == "HTTP 404"
    assert "redirect loop" in failed[f"{u}/loop"]
    assert failed[f"{u}/private/secret.html"] == "disallowed by robots.txt"
    assert "not HTML" in failed[f"{u}/data.json"]
    assert "larger than" in failed[f"{u}/huge.html"]
    assert "timed out" in failed[f"{u}/slow.html"]
    assert "/private/secret.html" not in requested  # robots.txt was asked, the page never
    assert not any("elsewhere" in url for url in [*docs, *failed])  # same host only


async def test_one_page_and_a_sitemap():
    async with WebSite() as site:
        docs, failed = split(await crawl("p", site.url + "/vpn.html", "url", LIMITS))
        assert list(docs) == [f"{site.url}/vpn.html"] and not failed
        docs, failed = split(await crawl("s", site.url + "/sitemap.xml", "sitemap", LIMITS))
        assert set(docs) == {f"{site.url}/", f"{site.url}/vpn.html"}
        assert failed == {f"{site.url}/missing.html": "HTTP 404"}


async def test_depth_and_page_limits():
    async with WebSite() as site:
        items = await crawl("d", site.url + "/", "crawl", CrawlLimits(max_depth=0))
        assert [i.path for i in items] == [f"{site.url}/"]
        items = await crawl("d", site.url + "/", "crawl", CrawlLimits(max_pages=3, timeout_s=1))
        assert len(items) == 3


def test_doc_ids_are_stable_and_ignore_fragments():
    assert page_doc_id("s", "HTTP://Example.com/a#x") == page_doc_id("s", "http://example.com/a")
    assert normalize_url("http://example.com") == "http://example.com/"


async def test_recrawling_an_unchanged_site_reembeds_nothing_and_keeps_failed_pages(tmp_path):
    from search.embedding import SentenceTransformerEmbedder
    from search.index.sqlite import SqliteIndex
    from search.indexer import Indexer

    index = SqliteIndex(tmp_path / "index.sqlite3")
    embedder = SentenceTransformerEmbedder("all-MiniLM-L6-v2", batch_size=8)
    indexer = Indexer(index, embedder)
    try:
        async with WebSite(slow_s=3.0) as site:
            first = await indexer.index_documents(
                "web", await crawl("web", site.url + "/", "crawl", LIMITS))
            second = await indexer.index_documents(
                "web", await crawl("web", site.url + "/", "crawl", LIMITS))
            # The VPN page becomes unreachable: it is reported, and its indexed version stays.
            del site.pages["/vpn.html"]
            third = await indexer.index_documents(
                "web", await crawl("web", site.url + "/", "crawl", LIMITS))
        assert first.added == 3 and first.chunks > 0
        assert (second.added, second.updated, second.chunks, second.unchanged) == (0, 0, 0, 3)
        assert {f.path: f.reason for f in third.failed}[f"{site.url}/vpn.html"] == "HTTP 404"
        assert third.removed == 0
        docs = await index.documents("web")
        assert len(docs) == 3
    finally:
        await index.close()
