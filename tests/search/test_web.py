"""Web sources against a local site: a page, a sitemap, a same-host crawl; every per-page
failure is reported with its URL and the crawl goes on; re-crawling an unchanged site
re-embeds nothing."""

from __future__ import annotations

from search.models import Document, LoadFailure
from search.web import CrawlLimits, crawl, normalize_url, page_doc_id
from tests.support.web_site import WebSite

# The test site listens on loopback, which web sources refuse unless allowed.
LOCAL = ("127.0.0.1",)
LIMITS = CrawlLimits(max_pages=50, max_depth=2, concurrency=3, timeout_s=1.0,
                     max_bytes=512 * 1024, user_agent="lorebot-test", allow_private=LOCAL)


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
        items = await crawl("d", site.url + "/", "crawl",
                            CrawlLimits(max_depth=0, allow_private=LOCAL))
        assert [i.path for i in items] == [f"{site.url}/"]
        items = await crawl("d", site.url + "/", "crawl",
                            CrawlLimits(max_pages=3, timeout_s=1, allow_private=LOCAL))
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


# --------------------------------------------------------------------------- staying on the site


async def test_the_default_refuses_loopback_and_private_targets():
    async with WebSite() as site:
        items = await crawl("p", site.url + "/", "crawl", CrawlLimits(timeout_s=1))
        assert site.requests == []  # not even robots.txt
    docs, failed = split(items)
    assert not docs
    assert "loopback address (127.0.0.1)" in failed[f"{site.url}/"]
    assert "LOREBOT_SOURCES__ALLOW_PRIVATE_HOSTS" in failed[f"{site.url}/"]
    for url in ("http://10.1.2.3/", "http://169.254.169.254/latest/meta-data/", "http://[::1]/",
                "http://[::ffff:127.0.0.1]/", "http://localhost/", "http://0.0.0.0/"):
        _, failed = split(await crawl("p", url, "url", CrawlLimits(timeout_s=1)))
        assert "address" in failed[normalize_url(url)], failed
    # Listing a network (or the host) allows it.
    async with WebSite() as site:
        docs, _ = split(await crawl("p", site.url + "/vpn.html", "url",
                                    CrawlLimits(allow_private=("127.0.0.0/8",))))
        assert list(docs) == [f"{site.url}/vpn.html"]


async def test_a_redirect_to_another_port_is_refused_at_the_hop():
    async with WebSite() as site, WebSite() as internal:
        internal.pages["/admin.html"] = ("Admin", "<p>Internal only: the root password.</p>")
        site.redirects["/docs.html"] = f"{internal.url}/admin.html"
        site.redirects["/moved.html"] = "/vpn.html"  # on the site: followed
        site.pages["/"] = ("Home", "<a href='/docs.html'>docs</a> <a href='/moved.html'>vpn</a>")
        docs, failed = split(await crawl("s", site.url + "/", "crawl", LIMITS))
        assert internal.requests == []
        assert "not on the source's site" in failed[f"{site.url}/docs.html"]
        assert "redirected to" in failed[f"{site.url}/docs.html"]
        assert "Zorbulator" in docs[f"{site.url}/moved.html"].text
        assert not any("root password" in d.text for d in docs.values())
        # Configured: the other host is allowed.
        allowed = CrawlLimits(**{**LIMITS.__dict__, "allow_hosts": (f"127.0.0.1:{internal.port}",)})
        docs, _ = split(await crawl("s", site.url + "/docs.html", "url", allowed))
        assert "root password" in docs[f"{site.url}/docs.html"].text


async def test_sitemap_entries_on_other_hosts_are_not_fetched_and_an_index_is_capped():
    async with WebSite() as site, WebSite() as other:
        site.sitemap_locs = [f"{other.url}/vpn.html", "http://169.254.169.254/latest/"]
        docs, failed = split(await crawl("s", site.url + "/sitemap.xml", "sitemap", LIMITS))
        assert other.requests == []
        assert set(docs) == {f"{site.url}/", f"{site.url}/vpn.html"}
        assert "not on the source's site" in failed[f"{other.url}/vpn.html"]
        site.index_children = 300
        limits = CrawlLimits(**{**LIMITS.__dict__, "max_pages": 5})
        items = await crawl("s", site.url + "/sitemap-index.xml", "sitemap", limits)
        children = [r for r in site.requests if r.startswith("/sitemap-") and r[9].isdigit()]
        assert len(children) == 5 and len(items) == 5


async def test_a_failed_start_page_or_sitemap_marks_the_crawl_stale():
    async with WebSite(slow_s=0) as site:
        assert (await crawl("s", site.url + "/", "crawl", LIMITS)).stale is None
        # A page that timed out: what it links to is unknown this time.
        site.slow_s = 3
        assert "slow.html could not be fetched" in (
            await crawl("s", site.url + "/", "crawl", LIMITS)).stale
        site.slow_s = 0
        site.fail["/"] = 503
        result = await crawl("s", site.url + "/", "crawl", LIMITS)
        assert "could not be fetched (HTTP 503)" in result.stale
        site.fail["/sitemap.xml"] = 503
        result = await crawl("s", site.url + "/sitemap.xml", "sitemap", LIMITS)
        assert "sitemap could not be read" in result.stale
        site.fail.clear()
        site.fail["/"] = 404  # the start page, whatever the reason: its links are unknown
        assert "HTTP 404" in (await crawl("s", site.url + "/", "crawl", LIMITS)).stale
        refused = await crawl("s", site.url + "/", "crawl", CrawlLimits(timeout_s=1))
        assert "loopback address" in refused.stale  # a new rule must not empty the source
        site.fail.clear()
        site.fail["/vpn.html"] = 404  # gone for good: not stale, the rest was seen
        assert (await crawl("s", site.url + "/", "crawl", LIMITS)).stale is None


async def test_the_servers_charset_is_used():
    async with WebSite() as site:
        body = "<html><body><h1>Caf\xe9</h1><p>Cr\xe8me br\xfbl\xe9e au menu.</p></body></html>"
        site.raw["/latin.html"] = (body.encode("latin-1"), "text/html; charset=iso-8859-1")
        site.raw["/lying.html"] = ("\u4e2d\u6587".encode("utf-16-le"), "text/html; charset=ascii")
        docs, failed = split(await crawl("s", site.url + "/latin.html", "url", LIMITS))
        assert "Crème brûlée" in docs[f"{site.url}/latin.html"].text
        _, failed = split(await crawl("s", site.url + "/lying.html", "url", LIMITS))
        assert "not valid ascii as the server declares" in failed[f"{site.url}/lying.html"]


async def test_the_connectors_resolver_refuses_private_answers_too():
    """A name that resolved to a public address at the check and to a private one when the
    connection is made (DNS rebinding) is refused at the connection."""
    import pytest

    from search.web_guard import GuardedResolver, HostPolicy

    resolver = GuardedResolver(HostPolicy("http://wiki.example/"))
    try:
        with pytest.raises(OSError, match="refused addresses"):
            await resolver.resolve("localhost", 80)
    finally:
        await resolver.close()
    allowed = GuardedResolver(HostPolicy("http://wiki.example/", allow_private=("localhost",)))
    try:
        assert await allowed.resolve("localhost", 80)
    finally:
        await allowed.close()
