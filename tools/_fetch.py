"""SSRF-safe page download: validated hops, pinned connections, capped bodies, a total time limit.

Every redirect hop is parsed, resolved once, checked against the private/metadata ranges of
`pydantic_ai._ssrf` (with our per-host allow-list on top) and then connected to the validated IP
itself, so a DNS answer that changes between check and connect cannot redirect us. Bodies are read
as a stream against a byte cap that also bounds gzip output, and the whole fetch, redirects included,
runs under one wall-clock deadline.
"""

from __future__ import annotations

import asyncio
import codecs
import functools
import ipaddress
import logging
import re
import ssl
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar, Final, Literal
from urllib.parse import urljoin, urlsplit

import certifi
import httpx2
from pydantic_ai._ssrf import (
    ResolvedUrl,
    _domain_key,  # private: why we pin pydantic-ai-slim==2.62.* (docs/decisions/0002-safe-fetch.md)
    build_url_with_ip,
    extract_host_and_port,
    is_cloud_metadata_ip,
    is_private_ip,
    resolve_hostname,
)

from tools._extract import extract_main_text
from tools._types import FetchedPage, ToolErrorCode
from tools.errors import ResearchAgentError

__all__ = [
    "BlockedURLError",
    "FetchError",
    "FetchHTTPError",
    "FetchLimits",
    "FetchNetworkError",
    "FetchTimeoutError",
    "FetchTooLargeError",
    "InvalidURLError",
    "TooManyRedirectsError",
    "UnsupportedContentError",
    "check_destination",
    "fetch_page",
]

logger = logging.getLogger(__name__)

_ACCEPT: Final = (
    "text/html,application/xhtml+xml;q=0.9,text/markdown;q=0.9,text/plain;q=0.8,application/json;q=0.8,*/*;q=0.1"
)
# Only codings we can size-limit while streaming (see `pydantic_ai._ssrf._BOUNDED_ACCEPT_ENCODING`).
_ACCEPT_ENCODING: Final = "gzip"
_HTML_TYPES: Final = frozenset({"text/html", "application/xhtml+xml"})
_TEXT_APPLICATION_TYPES: Final = frozenset(
    {"application/json", "application/xml", "application/x-yaml", "application/yaml", "application/toml"}
)
_RETRYABLE_STATUSES: Final = frozenset({408, 425, 429, 500, 502, 503, 504})
_META_CHARSET: Final = re.compile(rb"<meta[^>]{0,200}?charset\s*=\s*[\"']?\s*([A-Za-z0-9_.:-]{1,40})", re.IGNORECASE)
_HTML_SNIFF: Final = re.compile(
    rb"^\s*(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html|head|body)[\s>]", re.IGNORECASE | re.DOTALL
)
_UNDECODABLE: Final = re.compile("[\ufffd\x01-\x08\x0b\x0e-\x1f\x7f]")
_MD_HEADING: Final = re.compile(r"^#\s+(.+)$", re.MULTILINE)
_BLANK_LINES: Final = re.compile(r"\n{3,}")
_BOMS: Final = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


@dataclass(frozen=True, kw_only=True)
class FetchLimits:
    """Caps for one fetch; `timeout_seconds` is total wall time, redirects and DNS included."""

    max_bytes: int = 2_000_000
    timeout_seconds: float = 15.0
    max_redirects: int = 5
    user_agent: str = "research-agent/0.1 (+https://github.com/pydantic/pydantic-ai)"

    def __post_init__(self) -> None:
        if self.max_bytes <= 0 or self.timeout_seconds <= 0 or self.max_redirects < 0:
            raise ValueError("FetchLimits needs max_bytes > 0, timeout_seconds > 0 and max_redirects >= 0")


# ---------------------------------------------------------------------------------------------------
# Errors


class FetchError(ResearchAgentError):
    """A fetch that could not produce a page; `code` is what the model sees as `ToolFailure.error`."""

    code: ClassVar[ToolErrorCode] = "network_error"

    def __init__(self, message: str, *, url: str) -> None:
        super().__init__(message)
        self.message = message
        self.url = url

    @property
    def retryable(self) -> bool:
        """Whether the same call might succeed later (the model may retry it)."""
        return False


class InvalidURLError(FetchError):
    """The URL cannot be parsed into a scheme, host and port."""

    code = "invalid_argument"


class BlockedURLError(FetchError):
    """The URL (or a redirect hop) points at a scheme or address we refuse to touch."""

    code = "blocked_url"


class FetchTooLargeError(FetchError):
    """The body (on the wire or decompressed) exceeds `FetchLimits.max_bytes`."""

    code = "too_large"


class FetchTimeoutError(FetchError):
    """The fetch did not finish within `FetchLimits.timeout_seconds`."""

    code = "timeout"

    @property
    def retryable(self) -> bool:
        return True


class FetchHTTPError(FetchError):
    """The server answered with a non-success status."""

    code = "http_error"

    def __init__(self, message: str, *, url: str, status: int) -> None:
        super().__init__(message, url=url)
        self.status = status

    @property
    def retryable(self) -> bool:
        return self.status in _RETRYABLE_STATUSES


class TooManyRedirectsError(FetchHTTPError):
    """The redirect chain is longer than `FetchLimits.max_redirects`."""


class UnsupportedContentError(FetchError):
    """The body is not text we can read (images, PDF, archives, undecodable bytes, unknown encodings)."""

    code = "unsupported_content"


class FetchNetworkError(FetchError):
    """DNS, connection or protocol failure."""

    code = "network_error"

    @property
    def retryable(self) -> bool:
        return True


# ---------------------------------------------------------------------------------------------------
# Destination checks (pure: no I/O, so a refusal provably happens before any connection)


@dataclass(frozen=True)
class _Allowed:
    host: str
    port: int | None


def _host_key(host: str) -> str:
    """Comparable form of a host: canonical IP text for literals, IDNA/case/trailing-dot folded names."""
    try:
        return ipaddress.ip_address(host.strip("[]")).compressed
    except ValueError:
        return _domain_key(host)


def _parse_allow_hosts(entries: Iterable[str]) -> frozenset[_Allowed]:
    parsed: set[_Allowed] = set()
    for entry in entries:
        raw = entry.strip()
        host, port = raw, None
        if raw.startswith("["):  # [v6] or [v6]:port
            host, _, rest = raw[1:].partition("]")
            port = (int(rest[1:]) if rest[1:].isdigit() else -1) if rest.startswith(":") else None
        elif raw.count(":") == 1:  # host:port (a bare IPv6 literal has several colons)
            host, _, port_text = raw.partition(":")
            port = int(port_text) if port_text.isdigit() else -1
        if not host or "/" in host or (port is not None and not 0 < port < 65536):
            raise ValueError(f"invalid allow_hosts entry {entry!r}: expected 'host' or 'host:port'")
        parsed.add(_Allowed(_host_key(host), port))
    return frozenset(parsed)


def _is_allow_listed(hostname: str, port: int, allowed: frozenset[_Allowed]) -> bool:
    key = _host_key(hostname)
    return _Allowed(key, None) in allowed or _Allowed(key, port) in allowed


def check_destination(*, url: str, hostname: str, port: int, ips: Sequence[str], allow_hosts: frozenset[str]) -> None:
    """Refuse the hop unless every address is public, or private and allow-listed; metadata never passes.

    Pure and synchronous, so it is called between DNS resolution and connecting and can be tested alone.
    """
    allowed = _parse_allow_hosts(allow_hosts)
    for ip in ips:
        if is_cloud_metadata_ip(ip):
            raise BlockedURLError(f"Refused {url}: {ip} is a cloud metadata endpoint, which is never fetched.", url=url)
        if is_private_ip(ip) and not _is_allow_listed(hostname, port, allowed):
            where = f"{hostname} is" if _host_key(hostname) == _host_key(ip) else f"{hostname} resolves to"
            raise BlockedURLError(
                f"Refused {url}: {where} the private/internal address {ip}. "
                "Only public web addresses can be fetched; use a public URL for this source.",
                url=url,
            )


# ---------------------------------------------------------------------------------------------------
# The hop loop


@dataclass(frozen=True, kw_only=True)
class _Hop:
    url: str
    hostname: str
    port: int
    is_https: bool
    path: str
    ips: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class _RawBody:
    final_url: str
    status_code: int
    media_type: str
    charset: str | None
    body: bytes


async def fetch_page(
    url: str,
    *,
    limits: FetchLimits,
    allow_hosts: frozenset[str] = frozenset(),
    client: httpx2.AsyncClient | None = None,
) -> FetchedPage:
    """Download `url` safely and reduce it to its main text.

    `allow_hosts` entries (`host` or `host:port`) open private/loopback destinations by URL host;
    cloud metadata addresses stay blocked regardless. A caller-supplied `client` must not use a proxy
    (the proxy would resolve the name itself, undoing the pinning); by default each fetch gets its own
    client without connection reuse, so a TLS connection is never shared between hostnames.

    Raises:
        FetchError: one of its subclasses; `code` says which `ToolErrorCode` it maps to.
    """
    _parse_allow_hosts(allow_hosts)  # a bad entry is a configuration error: fail before any I/O
    try:
        async with asyncio.timeout(limits.timeout_seconds):
            if client is not None:
                raw = await _download(url, limits=limits, allow_hosts=allow_hosts, client=client)
            else:
                async with _new_client(limits) as own_client:
                    raw = await _download(url, limits=limits, allow_hosts=allow_hosts, client=own_client)
    except TimeoutError as e:
        raise FetchTimeoutError(
            f"Fetching {url} took longer than {limits.timeout_seconds:g} s and was stopped. "
            "The site may be slow or down; try again later or use another source.",
            url=url,
        ) from e
    # Decoding and extraction are CPU-bound on server-controlled input: keep them off the event loop.
    return await asyncio.to_thread(_to_page, url, raw)


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """Loading the CA bundle costs ~20 ms; every fetch client shares one verified context."""
    return ssl.create_default_context(cafile=certifi.where())


def _new_client(limits: FetchLimits) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(
        verify=_ssl_context(),
        trust_env=False,  # no environment proxies: we connect to the IP we validated, nothing else
        follow_redirects=False,
        timeout=httpx2.Timeout(limits.timeout_seconds),
        limits=httpx2.Limits(max_keepalive_connections=0),
    )


async def _download(
    url: str, *, limits: FetchLimits, allow_hosts: frozenset[str], client: httpx2.AsyncClient
) -> _RawBody:
    current = url
    last_status = 0
    for _ in range(limits.max_redirects + 1):
        hop = await _resolve_hop(current, allow_hosts=allow_hosts)
        response = await _send(client, hop, limits=limits)
        try:
            last_status = response.status_code
            if response.is_redirect:
                location = response.headers["location"].strip()
                current = urljoin(current, location)
                continue
            if not response.is_success:
                raise FetchHTTPError(
                    f"{current} answered HTTP {response.status_code} {response.reason_phrase}.",
                    url=current,
                    status=response.status_code,
                )
            media_type, charset = _content_type(response)
            if _kind(media_type) == "binary":
                raise UnsupportedContentError(
                    f"{current} is {media_type} content, which cannot be read as text. fetch_url reads HTML, "
                    "plain text, Markdown and JSON; look for an HTML version of this document.",
                    url=current,
                )
            body = await _read_capped(response, url=current, max_bytes=limits.max_bytes)
            return _RawBody(
                final_url=current,
                status_code=response.status_code,
                media_type=media_type,
                charset=charset,
                body=body,
            )
        finally:
            await response.aclose()
    raise TooManyRedirectsError(
        f"{url} redirected more than {limits.max_redirects} times; giving up.", url=url, status=last_status
    )


async def validate_destination(url: str, *, allow_hosts: frozenset[str]) -> None:
    """Raise a `FetchError` unless `url` may be fetched under `allow_hosts`; resolves DNS, connects nothing.

    Used before serving a cached page: the cache is shared by runs with different allow-lists.
    """
    await _resolve_hop(url, allow_hosts=allow_hosts)


async def _resolve_hop(url: str, *, allow_hosts: frozenset[str]) -> _Hop:
    """Validate the scheme, resolve the host once, and check every address before anything connects."""
    scheme = urlsplit(url).scheme.lower()
    if not scheme:
        raise InvalidURLError(f"{url!r} is not an absolute URL; it must start with https:// or http://.", url=url)
    if scheme not in ("http", "https"):
        raise BlockedURLError(
            f"Refused {url}: the {scheme}: scheme is not allowed; only http:// and https:// URLs are read.",
            url=url,
        )
    try:
        hostname, path, port, is_https = extract_host_and_port(url)
    except ValueError as e:
        raise InvalidURLError(f"{url!r} is not a valid URL: {e}", url=url) from e
    try:
        ips: list[str] = [ipaddress.ip_address(hostname).compressed]
    except ValueError:
        try:
            ips = await resolve_hostname(hostname.encode("idna").decode("ascii"))
        except UnicodeError as e:
            raise InvalidURLError(f"{url!r} has an invalid host name {hostname!r}.", url=url) from e
        except ValueError as e:
            raise FetchNetworkError(f"Could not resolve the host {hostname!r} of {url}.", url=url) from e
    check_destination(url=url, hostname=hostname, port=port, ips=ips, allow_hosts=allow_hosts)
    return _Hop(url=url, hostname=hostname, port=port, is_https=is_https, path=path, ips=tuple(ips))


def _host_header(hop: _Hop) -> str:
    try:
        host = hop.hostname.encode("idna").decode("ascii")
    except UnicodeError:
        host = hop.hostname  # an IP literal
    if ":" in host:
        host = f"[{host}]"
    return host if hop.port == (443 if hop.is_https else 80) else f"{host}:{hop.port}"


async def _send(client: httpx2.AsyncClient, hop: _Hop, *, limits: FetchLimits) -> httpx2.Response:
    """Try the validated addresses in DNS order (all already checked); the first that accepts wins."""
    headers = {
        "Host": _host_header(hop),
        "User-Agent": limits.user_agent,
        "Accept": _ACCEPT,
        "Accept-Encoding": _ACCEPT_ENCODING,
    }
    extensions: dict[str, object] = {"timeout": httpx2.Timeout(limits.timeout_seconds).as_dict()}
    if hop.is_https:
        # TLS must verify the certificate for the name, not the IP we connect to.
        extensions["sni_hostname"] = hop.hostname.encode("idna").decode("ascii")
    last_error: Exception | None = None
    for ip in hop.ips:
        target = ResolvedUrl(resolved_ip=ip, hostname=hop.hostname, port=hop.port, is_https=hop.is_https, path=hop.path)
        try:
            # Built directly (not `client.build_request`): the client's cookies and default headers stay out.
            request = httpx2.Request("GET", build_url_with_ip(target), headers=headers, extensions=extensions)
            return await client.send(request, stream=True, follow_redirects=False)
        except httpx2.ConnectError as e:
            last_error = e
        except httpx2.TimeoutException as e:
            raise FetchTimeoutError(f"{hop.url} did not respond in time.", url=hop.url) from e
        except (httpx2.HTTPError, httpx2.InvalidURL) as e:
            raise FetchNetworkError(f"Could not fetch {hop.url}: {type(e).__name__}: {e}", url=hop.url) from e
    raise FetchNetworkError(f"Could not connect to {hop.hostname} for {hop.url}: {last_error}", url=hop.url)


# ---------------------------------------------------------------------------------------------------
# Reading the body


def _content_type(response: httpx2.Response) -> tuple[str, str | None]:
    value = response.headers.get("content-type", "")
    media_type, *params = (part.strip() for part in value.split(";"))
    charset = None
    for param in params:
        name, _, param_value = param.partition("=")
        if name.strip().lower() == "charset":
            charset = param_value.strip().strip("\"'") or None
    return media_type.lower(), charset


def _kind(media_type: str) -> Literal["html", "text", "unknown", "binary"]:
    if not media_type:
        return "unknown"
    if media_type in _HTML_TYPES:
        return "html"
    if (
        media_type.startswith("text/")
        or media_type in _TEXT_APPLICATION_TYPES
        or media_type.endswith(("+json", "+xml"))
    ):
        return "text"
    return "binary"


def _content_encodings(response: httpx2.Response) -> list[str]:
    codings = (
        part.strip().lower() for value in response.headers.get_list("content-encoding") for part in value.split(",")
    )
    return [coding for coding in codings if coding and coding != "identity"]


def _too_large(url: str, max_bytes: int) -> FetchTooLargeError:
    return FetchTooLargeError(
        f"{url} is larger than the {max_bytes:,}-byte limit and was not read. Look for a shorter page "
        "(a summary, abstract or specific section).",
        url=url,
    )


async def _read_capped(response: httpx2.Response, *, url: str, max_bytes: int) -> bytes:
    """Stream the body, never holding more than `max_bytes` (plus the chunk being checked)."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(url, max_bytes)
    encodings = _content_encodings(response)
    if encodings and encodings not in (["gzip"], ["x-gzip"]):
        raise UnsupportedContentError(
            f"{url} was sent with content-encoding {', '.join(encodings)}, which was not requested and is "
            "refused (only gzip can be size-limited while decompressing).",
            url=url,
        )
    gunzip = _CappedGunzip(url=url, max_bytes=max_bytes) if encodings else None
    wire = 0
    body = bytearray()
    try:
        async for chunk in response.aiter_raw():
            wire += len(chunk)
            if wire > max_bytes:
                raise _too_large(url, max_bytes)
            if gunzip is not None:
                gunzip.feed(chunk)
            else:
                body += chunk
    except httpx2.TimeoutException as e:
        raise FetchTimeoutError(f"{url} stopped sending data before the page was complete.", url=url) from e
    except httpx2.HTTPError as e:
        raise FetchNetworkError(f"The connection to {url} failed mid-download: {type(e).__name__}.", url=url) from e
    return gunzip.finish() if gunzip is not None else bytes(body)


class _CappedGunzip:
    """Gzip decoding whose output can never exceed `max_bytes` (decompression-bomb safe).

    Follows `pydantic_ai._ssrf._read_gzip_body`: zlib's `max_length` bounds each step's output, and
    concatenated members (with zero padding) are accepted like CPython's gzip reader does.
    """

    def __init__(self, *, url: str, max_bytes: int) -> None:
        self._url = url
        self._max_bytes = max_bytes
        self._decompressor = zlib.decompressobj(zlib.MAX_WBITS | 16)
        self._started = False
        self._out = bytearray()

    def feed(self, data: bytes) -> None:
        while data:
            if not self._started:
                self._started = True
            elif self._decompressor.eof:
                data = data.lstrip(b"\x00")
                if not data:
                    return
                self._decompressor = zlib.decompressobj(zlib.MAX_WBITS | 16)
            # One byte past the cap tells an oversized body from one that exactly fills it.
            room = self._max_bytes + 1 - len(self._out)
            try:
                self._out += self._decompressor.decompress(data, room)
            except zlib.error as e:
                raise self._corrupt(e) from e
            if len(self._out) > self._max_bytes:
                raise _too_large(self._url, self._max_bytes)
            data = self._decompressor.unconsumed_tail or self._decompressor.unused_data

    def finish(self) -> bytes:
        if not self._started:
            return b""
        try:
            self._out += self._decompressor.flush()
        except zlib.error as e:
            raise self._corrupt(e) from e
        if len(self._out) > self._max_bytes:
            raise _too_large(self._url, self._max_bytes)
        if not self._decompressor.eof:
            raise self._corrupt("truncated gzip stream")
        return bytes(self._out)

    def _corrupt(self, detail: object) -> FetchNetworkError:
        return FetchNetworkError(f"{self._url} sent a corrupt gzip body ({detail}).", url=self._url)


# ---------------------------------------------------------------------------------------------------
# Bytes to text


def _to_page(url: str, raw: _RawBody) -> FetchedPage:
    kind = _kind(raw.media_type)
    if kind == "unknown":
        kind = "html" if _HTML_SNIFF.match(raw.body[:4096]) else "text"
    is_html = kind == "html"
    text = _decode(raw, is_html=is_html)
    if is_html:
        title, text = extract_main_text(text, url=raw.final_url)
        media_type = raw.media_type or "text/html"
    else:
        heading = _MD_HEADING.search(text[:10_000]) if "markdown" in raw.media_type else None
        title = heading.group(1).strip() if heading else ""
        text = _BLANK_LINES.sub("\n\n", text).strip()
        media_type = raw.media_type or "text/plain"
    return FetchedPage(
        url=url,
        final_url=raw.final_url,
        status_code=raw.status_code,
        content_type=media_type,
        title=title,
        text=text,
        fetched_at=datetime.now(UTC),
    )


def _decode(raw: _RawBody, *, is_html: bool) -> str:
    """Decode with the BOM, declared or `<meta>` charset (else UTF-8); refuse bytes that are not text."""
    body = raw.body
    for bom, bom_codec in _BOMS:
        if body.startswith(bom):
            return body.decode(bom_codec, errors="replace")
    if b"\x00" in body[:8192]:
        raise _binary(raw)
    charset = raw.charset
    if charset is None and is_html:
        meta = _META_CHARSET.search(body[:4096])
        charset = meta.group(1).decode("ascii") if meta else None
    try:
        text = body.decode(charset or "utf-8", errors="replace")
    except LookupError:  # unknown label, or a codec that is not a text encoding (`rot13`, `base64`)
        text = body.decode("utf-8", errors="replace")
    sample = text[:65_536]
    if sample and len(_UNDECODABLE.findall(sample)) > max(8, len(sample) // 100):
        raise _binary(raw)
    return text


def _binary(raw: _RawBody) -> UnsupportedContentError:
    declared = raw.media_type or "no content type"
    return UnsupportedContentError(
        f"{raw.final_url} ({declared}) contains binary data, not readable text; it was not returned.",
        url=raw.final_url,
    )
