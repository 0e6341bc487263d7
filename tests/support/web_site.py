"""A small web site on a local aiohttp server (port 0) for crawling tests: pages that link to
each other, a sitemap, robots.txt with a Disallow rule, and every way a page can fail (404, a
redirect loop, not HTML, too large, too slow). ``pages`` can be edited between crawls, and so can
``redirects`` (path -> URL), ``fail`` (path -> HTTP status), ``raw`` (path -> (bytes, Content-Type)),
``sitemap_locs`` (extra sitemap entries) and ``index_children`` (the number of child sitemaps
of /sitemap-index.xml, one page each)."""

from __future__ import annotations

import asyncio

from aiohttp import web

PAGES = {
    "/": ("Welcome", "<p>The team handbook. Start with <a href='/vpn.html'>VPN setup</a>, "
          "<a href='/onboarding.html'>onboarding</a>, <a href='/missing.html'>old page</a>, "
          "<a href='/loop'>loop</a>, <a href='/private/secret.html'>secret</a>, "
          "<a href='/data.json'>data</a>, <a href='/huge.html'>huge</a>, "
          "<a href='/slow.html'>slow</a>, <a href='https://elsewhere.example/'>elsewhere</a>.</p>"),
    "/vpn.html": ("VPN setup", "<p>To connect to the office network, install the Zorbulator VPN "
                  "client and import the profile from the IT portal. Profiles expire after 90 "
                  "days.</p><p><a href='/'>home</a></p>"),
    "/onboarding.html": ("Onboarding", "<p>New engineers get a hardware key on day one and "
                         "register it at the helpdesk.</p>"),
    "/private/secret.html": ("Secret", "<p>Robots must not read this.</p>"),
}


def page(title: str, body: str) -> str:
    return (f"<!doctype html><html><head><title>{title}</title></head>"
            f"<body><h1>{title}</h1>{body}</body></html>")


class WebSite:
    def __init__(self, slow_s: float = 3.0, huge_bytes: int = 2 * 1024 * 1024) -> None:
        self.pages = dict(PAGES)
        self.slow_s = slow_s
        self.huge_bytes = huge_bytes
        self.requests: list[str] = []
        self.redirects: dict[str, str] = {}
        self.fail: dict[str, int] = {}
        self.raw: dict[str, tuple[bytes, str]] = {}
        self.sitemap_locs: list[str] = []
        self.index_children = 0
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> WebSite:
        app = web.Application()
        app.router.add_get("/{path:.*}", self._get)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc) -> None:
        await self._runner.cleanup()

    async def _get(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["path"]
        self.requests.append(path)
        if path in self.fail:
            return web.Response(status=self.fail[path], text="unavailable")
        if path in self.redirects:
            raise web.HTTPFound(self.redirects[path])
        if path in self.raw:
            body, ctype = self.raw[path]
            return web.Response(body=body, headers={"Content-Type": ctype})
        if path == "/sitemap-index.xml":
            children = "".join(f"<sitemap><loc>{self.url}/sitemap-{i}.xml</loc></sitemap>"
                               for i in range(self.index_children))
            return web.Response(
                text=f'<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/'
                     f'sitemap/0.9">{children}</sitemapindex>', content_type="application/xml")
        if path.startswith("/sitemap-") and path.endswith(".xml"):
            n = path[len("/sitemap-"):-4]
            return web.Response(
                text=f'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/'
                     f'sitemap/0.9"><url><loc>{self.url}/p{n}.html</loc></url></urlset>',
                content_type="application/xml")
        if path == "/robots.txt":
            return web.Response(text="User-agent: *\nDisallow: /private/\n")
        if path == "/sitemap.xml":
            urls = "".join(f"<url><loc>{loc}</loc></url>" for loc in [
                *(self.url + p for p in ("/", "/vpn.html", "/missing.html")),
                *self.sitemap_locs])
            return web.Response(
                text=f'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/'
                     f'sitemap/0.9">{urls}</urlset>', content_type="application/xml")
        if path == "/loop":
            raise web.HTTPFound("/loop2")
        if path == "/loop2":
            raise web.HTTPFound("/loop")
        if path == "/data.json":
            return web.json_response({"not": "html"})
        if path == "/huge.html":
            return web.Response(text=page("Huge", "<p>" + "x" * self.huge_bytes + "</p>"),
                                content_type="text/html")
        if path == "/slow.html":
            await asyncio.sleep(self.slow_s)
            return web.Response(text=page("Slow", "<p>slow</p>"), content_type="text/html")
        if path in self.pages:
            return web.Response(text=page(*self.pages[path]), content_type="text/html")
        raise web.HTTPNotFound()
