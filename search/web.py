"""Web sources: one page, the pages of a sitemap, or a same-host crawl, fetched with aiohttp.

Polite by default: robots.txt is honoured (for our User-Agent), a bounded number of requests are
in flight, each has a timeout and a size limit. Confined by default: every request and redirect
hop stays on the source's site and off private addresses (``search.web_guard``). Every page that cannot be indexed (unreachable,
slow, HTTP error, redirect loop, not HTML, too large, refused by robots.txt) becomes a
`LoadFailure` with the URL as its path; the crawl goes on. Pages become `Document`s whose
``doc_id`` is derived from the source name and the normalised URL, so it is stable across runs
and an unchanged page is not re-embedded (the indexer compares content hashes).
"""

from __future__ import annotations

import asyncio
import logging
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import urldefrag, urljoin, urlsplit, urlunsplit
from urllib.robotparser import RobotFileParser

import aiohttp

from search.errors import LoadError
from search.models import Document, LoadFailure
from search.text import content_hash
from search.web_guard import HOSTS_SETTING, GuardedResolver, HostPolicy, Refused

log = logging.getLogger(__name__)

HTML_TYPES = ("text/html", "application/xhtml+xml")
XML_TYPES = ("application/xml", "text/xml")
SKIP_EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif", ".svg", ".css", ".js", ".ico", ".zip",
                   ".pdf", ".mp4", ".woff", ".woff2")


@dataclass(frozen=True)
class CrawlLimits:
    max_pages: int = 200
    max_depth: int = 3
    concurrency: int = 4
    timeout_s: float = 15.0
    max_bytes: int = 5 * 1024 * 1024
    user_agent: str = "lorebot"
    # Private, loopback and link-local targets are refused unless listed (hosts, IPs, networks
    # or "*"); other hosts than the source's are refused unless listed (see search.web_guard).
    allow_private: tuple[str, ...] = ()
    allow_hosts: tuple[str, ...] = ()


MAX_REDIRECTS = 10
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class FetchError(Exception):
    """One URL could not be fetched; the message is the reason shown in the job summary.

    ``transient``: the page may well be there next time (a 5xx, a timeout), so what it would
    have led to is unknown, not gone."""

    def __init__(self, reason: str, *, transient: bool = False) -> None:
        super().__init__(reason)
        self.transient = transient


class CrawlResult(list):
    """The documents and failures of a crawl; ``stale`` says why the crawl could not see the
    whole source this time (its start page or sitemap failed): pages not seen are then unknown,
    not gone, and must be kept."""

    stale: str | None = None


def normalize_url(url: str) -> str:
    """Drop the fragment, lower-case scheme and host, and give an empty path a '/'."""
    url, _ = urldefrag(url)
    parts = urlsplit(url)
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path or "/",
                       parts.query, ""))


def page_doc_id(source: str, url: str) -> str:
    from search.loaders import make_doc_id

    return make_doc_id(source, normalize_url(url))


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.nofollow = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "a" and a.get("href") and "nofollow" not in (a.get("rel") or ""):
            self.links.append(a["href"])
        elif tag == "meta" and (a.get("name") or "").lower() == "robots":
            self.nofollow = "nofollow" in (a.get("content") or "").lower()


def extract_links(html_text: str, base: str) -> list[str]:
    parser = _Links()
    try:
        parser.feed(html_text)
    except Exception:  # noqa: BLE001 - a broken page still gets indexed, just not followed
        return []
    if parser.nofollow:
        return []
    out = []
    for href in parser.links:
        url = urljoin(base, href.strip())
        if url.startswith(("http://", "https://")):
            out.append(normalize_url(url))
    return out


def html_to_document(source: str, url: str, data: bytes, charset: str | None = None) -> Document:
    """Convert HTML to Markdown with markitdown's HTML converter (the one folders use);
    ``charset`` is the one the server declared in its Content-Type."""
    from search.converted_formats import convert
    from search.text_formats import clean_title, first_h1

    text, title = convert(".html", data, charset=charset)
    text = text.strip()
    if not text:
        raise LoadError("the page has no text")
    # A <title> may hold entities or markup too; a placeholder one says less than the page's h1.
    title = clean_title(title) or first_h1(text) or url
    return Document(
        doc_id=page_doc_id(source, url), source=source, title=title, text=text,
        content_hash=content_hash(title, text), path=normalize_url(url), url=normalize_url(url),
    )


class Fetcher:
    """GETs with limits, and a robots.txt cache per host."""

    def __init__(self, session: aiohttp.ClientSession, limits: CrawlLimits,
                 policy: HostPolicy) -> None:
        self.session = session
        self.limits = limits
        self.policy = policy
        self._robots: dict[str, RobotFileParser | None] = {}
        self._sem = asyncio.Semaphore(limits.concurrency)

    async def get(self, url: str, accept: tuple[str, ...]) -> tuple[str, bytes, str | None]:
        """(final URL, body, declared charset) or FetchError with a reason.

        Redirects are followed here, not by aiohttp, so that every hop is checked against the
        source's site and the private-address rule before it is requested."""
        async with self._sem:
            for hop in range(MAX_REDIRECTS + 1):
                try:
                    await self.policy.check(url, what="redirected to" if hop else "the URL")
                except Refused as exc:
                    raise FetchError(str(exc)) from exc
                location = await self._get_once(url, accept)
                if isinstance(location, tuple):
                    return location
                url = location
            raise FetchError(f"redirect loop (more than {MAX_REDIRECTS} redirects)")

    async def _get_once(self, url: str, accept: tuple[str, ...]):
        """The response for one request, or the URL it redirects to."""
        timeout = aiohttp.ClientTimeout(total=self.limits.timeout_s)
        headers = {"User-Agent": self.limits.user_agent}
        try:
            async with self.session.get(url, timeout=timeout, headers=headers,
                                        allow_redirects=False) as resp:
                if resp.status in _REDIRECTS and resp.headers.get("Location"):
                    return urldefrag(urljoin(url, resp.headers["Location"].strip()))[0]
                if resp.status >= 400:
                    raise FetchError(f"HTTP {resp.status}",
                                     transient=resp.status >= 500 or resp.status == 429)
                ctype = (resp.content_type or "").lower()
                if accept and ctype not in accept:
                    raise FetchError(f"not HTML ({ctype or 'no content type'})")
                if (resp.content_length or 0) > self.limits.max_bytes:
                    raise FetchError(self._too_large())
                body = bytearray()
                async for block in resp.content.iter_chunked(65536):
                    body += block
                    if len(body) > self.limits.max_bytes:
                        raise FetchError(self._too_large())
                return str(resp.url), bytes(body), resp.charset
        except asyncio.TimeoutError as exc:
            raise FetchError(f"timed out after {self.limits.timeout_s:g} s",
                             transient=True) from exc
        except aiohttp.ClientConnectorError as exc:
            raise FetchError(f"unreachable ({exc.os_error or exc})", transient=True) from exc
        except aiohttp.ClientError as exc:
            raise FetchError(f"fetch failed ({type(exc).__name__}: {exc})",
                             transient=True) from exc

    def _too_large(self) -> str:
        return f"larger than {self.limits.max_bytes / 1024 / 1024:g} MB (LOREBOT_SOURCES__MAX_PAGE_MB)"

    async def allowed(self, url: str) -> bool:
        parts = urlsplit(url)
        host = f"{parts.scheme}://{parts.netloc}"
        if host not in self._robots:
            rules = None
            try:
                _, body, _ = await self.get(host + "/robots.txt", ())
                rules = RobotFileParser()
                rules.parse(body.decode("utf-8", "replace").splitlines())
            except FetchError:
                rules = None  # no robots.txt (or unreadable): everything allowed
            self._robots[host] = rules
        rules = self._robots[host]
        return rules is None or rules.can_fetch(self.limits.user_agent, url)


async def crawl(
    source: str,
    start: str,
    mode: str,
    limits: CrawlLimits = CrawlLimits(),
    *,
    on_progress: Callable[[int, int], None] | None = None,
) -> CrawlResult:
    """Fetch a web source: ``mode`` is ``url`` (one page), ``sitemap`` or ``crawl`` (follow
    same-site links breadth-first up to ``max_depth``). Returns documents and failures, with
    ``stale`` set when the start page or a sitemap could not be fetched this time."""
    results = CrawlResult()
    policy = HostPolicy(start, limits.allow_private, limits.allow_hosts)
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(policy))
    async with aiohttp.ClientSession(connector=connector) as session:
        fetcher = Fetcher(session, limits, policy)
        if mode == "sitemap":
            listing = _Sitemap(fetcher, limits.max_pages)
            try:
                urls = await listing.urls(start)
            except FetchError as exc:
                results.append(LoadFailure(normalize_url(start), f"sitemap: {exc}"))
                results.stale = f"the sitemap could not be read ({exc}); pages indexed before are kept"
                return results
            results.extend(listing.failures)
            if listing.broken:
                results.stale = "a sitemap could not be read; pages indexed before are kept"
            frontier = [(u, limits.max_depth) for u in urls[: limits.max_pages]]  # no following
            follow = False
        else:
            frontier = [(normalize_url(start), 0)]
            follow = mode == "crawl"
        seen = {u for u, _ in frontier}
        done = 0
        while frontier:
            batch, frontier = frontier, []
            outcomes = await asyncio.gather(*(_page(fetcher, source, u) for u, _ in batch))
            for (url, depth), (item, links, transient) in zip(batch, outcomes, strict=True):
                results.append(item)
                done += 1
                start_failed = mode != "sitemap" and depth == 0 and isinstance(item, LoadFailure)
                if (start_failed or (transient and follow)) and not results.stale:
                    # What this page links to is unknown this time, not gone (and a start page
                    # refused by a new rule must not empty a source indexed before it).
                    results.stale = (f"{url} could not be fetched ({item.reason}); pages "
                                     "indexed before are kept")
                if not follow or depth >= limits.max_depth:
                    continue
                for link in links:
                    if (policy.on_site(link) and link not in seen
                            and not urlsplit(link).path.lower().endswith(SKIP_EXTENSIONS)
                            and len(seen) < limits.max_pages):
                        seen.add(link)
                        frontier.append((link, depth + 1))
            if on_progress:
                on_progress(done, done + len(frontier))
    return results


async def _page(fetcher: Fetcher, source: str, url: str):
    """(document or failure, links, whether the failure may be transient)."""
    try:
        if not await fetcher.allowed(url):
            raise FetchError("disallowed by robots.txt")
        final_url, body, charset = await fetcher.get(url, HTML_TYPES)
        doc = await asyncio.to_thread(html_to_document, source, url, body, charset)
        links = extract_links(body.decode(_codec(charset), "replace"), final_url)
        return doc, links, False
    except (FetchError, LoadError) as exc:
        log.info("Skipped %s: %s", url, exc)
        return LoadFailure(normalize_url(url), str(exc)), [], getattr(exc, "transient", False)


def _codec(charset: str | None) -> str:
    import codecs

    try:
        return codecs.lookup(charset).name if charset else "utf-8"
    except LookupError:
        return "utf-8"


class _Sitemap:
    """The page URLs of a sitemap or sitemap index: at most ``cap`` of them (a sitemap index's
    children are fetched only until the page cap is reached), on the source's site only."""

    def __init__(self, fetcher: Fetcher, cap: int) -> None:
        self.fetcher = fetcher
        self.cap = cap
        self.failures: list[LoadFailure] = []
        self.broken = False  # a child sitemap failed: some pages are unknown this time

    async def urls(self, url: str, depth: int = 0) -> list[str]:
        _, body, _ = await self.fetcher.get(url, ())
        try:
            root = ET.fromstring(body)
        except ET.ParseError as exc:
            raise FetchError(f"not a valid sitemap ({exc})") from exc
        ns = "{http://www.sitemaps.org/schemas/sitemap/0.9}"
        locs = [(el.text or "").strip() for el in root.iter() if el.tag in (f"{ns}loc", "loc")]
        if root.tag.endswith("sitemapindex"):
            urls: list[str] = []
            for loc in locs if depth < 2 else ():
                if len(urls) >= self.cap:
                    break
                try:
                    urls += await self.urls(loc, depth + 1)
                except FetchError as exc:
                    self.broken = True
                    self.failures.append(LoadFailure(normalize_url(loc), f"sitemap: {exc}"))
            return list(dict.fromkeys(urls))[: self.cap]
        urls = []
        for loc in dict.fromkeys(normalize_url(u) for u in locs if u):
            if self.fetcher.policy.on_site(loc):
                urls.append(loc)
            elif len(self.failures) < self.cap:
                self.failures.append(LoadFailure(loc, (
                    f"not on the source's site; add its host to {HOSTS_SETTING} to allow it")))
        return urls[: self.cap]
