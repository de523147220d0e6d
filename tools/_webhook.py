"""POSTing a webhook under the fetch SSRF rules: one hop, resolved once, checked, pinned; no redirects.

The same checks as `fetch_page` (tools/_fetch.py): the scheme must be http(s); the host is resolved once and
every address must be public, or private/loopback with the URL's host (or `host:port`) in `allow_hosts`
(`RESEARCH_AGENT_FETCH_ALLOW_HOSTS`); cloud metadata addresses never pass. The request then goes to the
address that was checked, so a DNS answer that changes between check and connect (rebinding) cannot
redirect it. A redirect is an answer like any other non-2xx: it is not followed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

import httpx2
from pydantic_ai._ssrf import ResolvedUrl, build_url_with_ip  # pinned with tools/_fetch.py (decision 0002)

from tools._fetch import (
    FetchNetworkError,
    FetchTimeoutError,
    _Hop,
    _host_header,
    _parse_allow_hosts,
    _resolve_hop,
    _ssl_context,
)

__all__ = ["WebhookAnswer", "check_webhook_url", "post_webhook"]


@dataclass(frozen=True, kw_only=True)
class WebhookAnswer:
    """What the receiver answered."""

    status: int
    reason: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


async def check_webhook_url(url: str, *, allow_hosts: frozenset[str]) -> None:
    """Raise a `FetchError` (`BlockedURLError`, `InvalidURLError`, `FetchNetworkError` when the name does not
    resolve) unless `fetch_url` could reach `url` under `allow_hosts`. Resolves DNS; connects nothing."""
    _parse_allow_hosts(allow_hosts)
    await _resolve_hop(url, allow_hosts=allow_hosts)


async def post_webhook(
    url: str,
    *,
    body: bytes,
    headers: Mapping[str, str],
    allow_hosts: frozenset[str],
    timeout_seconds: float,
) -> WebhookAnswer:
    """POST `body` to `url` within `timeout_seconds` in all (DNS included), after the SSRF checks.

    Raises:
        FetchError: refused (`BlockedURLError`, `InvalidURLError`), timed out or unreachable.
    """
    _parse_allow_hosts(allow_hosts)
    try:
        async with asyncio.timeout(timeout_seconds):
            hop = await _resolve_hop(url, allow_hosts=allow_hosts)
            async with httpx2.AsyncClient(
                verify=_ssl_context(),
                trust_env=False,  # no environment proxies: we connect to the address we checked, nothing else
                follow_redirects=False,
                timeout=httpx2.Timeout(timeout_seconds),
                limits=httpx2.Limits(max_keepalive_connections=0),
            ) as client:
                return await _post(client, hop, body=body, headers=headers)
    except TimeoutError as e:
        raise FetchTimeoutError(f"{url} did not answer within {timeout_seconds:g} s.", url=url) from e


async def _post(client: httpx2.AsyncClient, hop: _Hop, *, body: bytes, headers: Mapping[str, str]) -> WebhookAnswer:
    sent = {**headers, "Host": _host_header(hop), "Content-Length": str(len(body))}
    extensions: dict[str, object] = {}
    if hop.is_https:  # TLS verifies the certificate for the name, not the address we connect to
        extensions["sni_hostname"] = hop.hostname.encode("idna").decode("ascii")
    last_error: Exception | None = None
    for ip in hop.ips:  # all already checked, in DNS order; the first that accepts wins
        target = ResolvedUrl(resolved_ip=ip, hostname=hop.hostname, port=hop.port, is_https=hop.is_https, path=hop.path)
        request = httpx2.Request("POST", build_url_with_ip(target), headers=sent, content=body, extensions=extensions)
        try:
            response = await client.send(request, stream=True, follow_redirects=False)
        except httpx2.ConnectError as e:
            last_error = e
            continue
        except httpx2.TimeoutException as e:
            raise FetchTimeoutError(f"{hop.url} did not answer in time.", url=hop.url) from e
        except (httpx2.HTTPError, httpx2.InvalidURL) as e:
            raise FetchNetworkError(f"Could not post to {hop.url}: {type(e).__name__}: {e}", url=hop.url) from e
        await response.aclose()  # the answer's body is never read: only its status counts
        return WebhookAnswer(status=response.status_code, reason=response.reason_phrase)
    raise FetchNetworkError(f"Could not connect to {hop.hostname} for {hop.url}: {last_error}", url=hop.url)
