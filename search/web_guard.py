"""Where a web source may go: its own site, and no private network unless allowed.

A URL source is typed by an admin but fetched from the indexing host, inside its network: left
open, a redirect or a sitemap entry would read internal pages (or cloud metadata at
169.254.169.254) and index them under the site's name. So every request, and every redirect hop,
must stay on the source's origin (scheme, host, port; an http -> https upgrade of the same host
is the same site) unless the host is listed in ``allow_hosts``, and must not reach a private,
loopback, link-local or otherwise non-public address unless listed in ``allow_private``. The
check resolves the host itself, and the connector's resolver checks again what it connects to,
so a name that resolves differently the second time (DNS rebinding) is refused as well.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver
from aiohttp.resolver import DefaultResolver

_DEFAULT_PORTS = {"http": 80, "https": 443}
PRIVATE_SETTING = "LOREBOT_SOURCES__ALLOW_PRIVATE_HOSTS"
HOSTS_SETTING = "LOREBOT_SOURCES__ALLOW_OTHER_HOSTS"


class Refused(Exception):
    """A URL the policy does not allow; the message says why and which setting allows it."""


def origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme, 0)
    except ValueError as exc:
        raise Refused(f"not a valid URL ({exc})") from exc
    return scheme, host, port


def _shown(o: tuple[str, str, int]) -> str:
    scheme, host, port = o
    return f"{scheme}://{host}" + ("" if _DEFAULT_PORTS.get(scheme) == port else f":{port}")


def _why_private(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    mapped = getattr(ip, "ipv4_mapped", None)
    if mapped is not None:
        ip = mapped
    for name in ("loopback", "link_local", "private", "multicast", "unspecified", "reserved"):
        if getattr(ip, f"is_{name}"):
            return name.replace("_", "-")
    return None if ip.is_global else "non-public"


class HostPolicy:
    """The hosts and addresses one web source may reach."""

    def __init__(self, start: str, allow_private: Sequence[str] = (),
                 allow_hosts: Sequence[str] = ()) -> None:
        self.origin = origin(start)
        self.allow_any_private = "*" in allow_private
        self.private_names = {a.lower() for a in allow_private if not _network(a)}
        self.private_networks = [n for n in map(_network, allow_private) if n]
        self.allow_hosts = {a.lower().rstrip("/") for a in allow_hosts}

    def on_site(self, url: str) -> bool:
        """Whether ``url`` is on the source's own site or an allowed other host."""
        try:
            scheme, host, port = o = origin(url)
        except Refused:
            return False
        if scheme not in _DEFAULT_PORTS:
            return False
        if o == self.origin or host in self.allow_hosts or f"{host}:{port}" in self.allow_hosts:
            return True
        # http://wiki/ redirecting to https://wiki/ is the same site over TLS.
        return self.origin == ("http", host, 80) and o == ("https", host, 443)

    def check_site(self, url: str, *, what: str = "the URL") -> None:
        if not self.on_site(url):
            raise Refused(f"{what} {url} is not on the source's site ({_shown(self.origin)}); "
                          f"add its host to {HOSTS_SETTING} to allow it")

    def address_allowed(self, host: str, address: str) -> str | None:
        """None when ``address`` (which ``host`` resolved to) may be reached, else why not."""
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return f"{address} is not an IP address"
        why = _why_private(ip)
        if why is None or self.allow_any_private or host.lower() in self.private_names:
            return None
        if any(ip in net for net in self.private_networks):
            return None
        return (f"{host} is a {why} address ({ip}); web sources may not reach the private "
                f"network unless {PRIVATE_SETTING} lists it")

    async def check(self, url: str, *, what: str = "the URL") -> None:
        """Refuse ``url`` when it leaves the site or its host resolves to a refused address."""
        self.check_site(url, what=what)
        _, host, port = origin(url)
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise Refused(f"unreachable (cannot resolve {host}: {exc.strerror or exc})") from exc
        for info in infos:
            reason = self.address_allowed(host, info[4][0])
            if reason:
                raise Refused(reason)


def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        return None


class GuardedResolver(AbstractResolver):
    """The connector's resolver: what it connects to passes the policy too (DNS rebinding)."""

    def __init__(self, policy: HostPolicy) -> None:
        self.policy = policy
        self.inner = DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET):
        results = await self.inner.resolve(host, port, family)
        allowed = [r for r in results if self.policy.address_allowed(host, r["host"]) is None]
        if not allowed:
            raise OSError(f"{host} resolves only to refused addresses")
        return allowed

    async def close(self) -> None:
        await self.inner.close()
