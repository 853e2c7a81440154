"""Image URLs in imports, fetched within a budget and only from the public internet.

A catalog file is not trusted: its URLs may point at this server's own services (loopback), the
shop's network (private and link-local addresses, cloud metadata at 169.254.169.254), or a
server that answers a byte a second. Each connection is checked after it is made, on the address
actually connected to (a name that resolves to a public address once and a private one later
gains nothing), redirects included; each download has a total deadline and a size limit; and an
import as a whole has a time budget, after which its remaining URLs fail with the reason.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import time
import urllib.error
import urllib.parse
import urllib.request

from django.core.exceptions import ValidationError
from django.template.defaultfilters import filesizeformat

from catalog.config import catalog_config

CHUNK = 64 * 1024


class AddressRefused(OSError):
    """The URL leads to an address imports may not reach."""


def address_allowed(address: str) -> bool:
    """Whether an import may fetch from this IP address (public unicast, or any with
    CATALOG_IMAGE_URL_ALLOW_PRIVATE)."""
    if catalog_config().image_url_allow_private:
        return True
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def _refused(host: str, peer: str) -> AddressRefused:
    return AddressRefused(
        f"{host} is {peer}, a loopback, private or link-local address; imports fetch "
        "only from public addresses (CATALOG_IMAGE_URL_ALLOW_PRIVATE=1 allows others)"
    )


def _checked_connection(address, timeout=socket._GLOBAL_DEFAULT_TIMEOUT, source_address=None):  # noqa: SLF001
    host, port = address[0], address[1]
    # before connecting: every address the name has (nothing is sent to a refused one) ...
    for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        if not address_allowed(info[4][0]):
            raise _refused(host, info[4][0])
    sock = socket.create_connection(address, timeout, source_address)
    # ... and after: the address actually connected to (the name may resolve anew in between)
    peer = sock.getpeername()[0]
    if not address_allowed(peer):
        sock.close()
        raise _refused(host, peer)
    return sock


class _HTTPConnection(http.client.HTTPConnection):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._create_connection = _checked_connection


class _HTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._create_connection = _checked_connection


class _HTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req):
        return self.do_open(_HTTPConnection, req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req):
        return self.do_open(_HTTPSConnection, req, context=self._context)


class _RedirectHandler(urllib.request.HTTPRedirectHandler):
    """Redirects are followed to http(s) only (each hop's address checked on connecting): urllib's
    own would follow one to ftp:// and log in to whatever listens there."""

    def http_error_302(self, req, fp, code, msg, headers):
        location = headers.get("location") or headers.get("uri")
        if location:
            target = urllib.parse.urljoin(req.full_url, location)
            if urllib.parse.urlsplit(target).scheme.lower() not in ("http", "https"):
                raise AddressRefused(f"it redirects to {target}; imports fetch images over http and https only")
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


def _opener_build() -> urllib.request.OpenerDirector:
    """http and https through the checked connections, and nothing else: no ftp, file or data
    handler (build_opener adds them all), no proxy from the environment (it would connect
    somewhere the address check does not see)."""
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.UnknownHandler(),
        urllib.request.HTTPDefaultErrorHandler(),
        _RedirectHandler(),
        urllib.request.HTTPErrorProcessor(),
        _HTTPHandler(),
        _HTTPSHandler(),
    ):
        opener.add_handler(handler)
    return opener


_opener = _opener_build()


class FetchBudget:
    """The time an import may spend downloading images, all URLs together."""

    def __init__(self, seconds: float | None = None):
        self.seconds = catalog_config().import_fetch_budget_seconds if seconds is None else seconds
        self.spent = 0.0

    def left(self) -> float:
        return self.seconds - self.spent


def image_download(url: str, budget: FetchBudget | None = None) -> bytes:
    """The bytes at an http(s) URL, or ValidationError saying why not: an address imports may not
    reach, an HTTP error, more than CATALOG_MAX_IMAGE_BYTES, slower than
    CATALOG_IMAGE_FETCH_SECONDS in all, or the import's download budget spent."""
    limit = catalog_config().max_image_bytes
    deadline_seconds = catalog_config().image_fetch_seconds
    if budget is not None:
        if budget.left() <= 0:
            raise ValidationError(
                f"image: not downloaded ({url}): this import spent its "
                f"{budget.seconds:g} s for downloading images (CATALOG_IMPORT_FETCH_BUDGET_SECONDS)."
            )
        deadline_seconds = min(deadline_seconds, budget.left())
    started = time.monotonic()
    deadline = started + deadline_seconds
    request = urllib.request.Request(url, headers={"User-Agent": "shop_search-import/0.2"})
    chunks: list[bytes] = []
    size = 0
    try:
        with _opener.open(request, timeout=max(0.1, deadline_seconds)) as resp:
            while True:
                if time.monotonic() > deadline:
                    raise ValidationError(
                        f"image: {url} did not arrive within {deadline_seconds:g} s "
                        "(CATALOG_IMAGE_FETCH_SECONDS); host it somewhere faster."
                    )
                chunk = resp.read1(CHUNK) if hasattr(resp, "read1") else resp.read(CHUNK)
                if not chunk:
                    break
                size += len(chunk)
                if size > limit:
                    raise ValidationError(f"image: {url} is over the {filesizeformat(limit)} limit.")
                chunks.append(chunk)
    except ValidationError:
        raise
    except urllib.error.HTTPError as exc:
        raise ValidationError(f"image: downloading {url} failed with HTTP {exc.code}.") from exc
    except (urllib.error.URLError, TimeoutError, OSError, http.client.HTTPException, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ValidationError(f"image: could not download {url} ({reason}).") from exc
    finally:
        if budget is not None:
            budget.spent += time.monotonic() - started
    return b"".join(chunks)


__all__ = ["AddressRefused", "FetchBudget", "address_allowed", "image_download"]
