"""A tiny fixture 'web' on the local HTTP server: a SearXNG-shaped search API and article pages."""

from __future__ import annotations

import json
import threading

from tests._http_server import LocalHTTPServer, Request, Response

ARTICLES: dict[str, tuple[str, str]] = {
    "/pages/http3": (
        "HTTP/3 explained",
        "HTTP/3 runs over QUIC instead of TCP. QUIC provides streams that are independent, so a lost "
        "packet only stalls the stream it belongs to. Connection setup combines the transport and TLS "
        "handshakes, which saves a round trip.",
    ),
    "/pages/http2": (
        "HTTP/2 in practice",
        "HTTP/2 multiplexes many streams over a single TCP connection. Because TCP delivers bytes in "
        "order, one lost packet blocks every stream on the connection. This is called head-of-line blocking.",
    ),
}


def article_html(title: str, body: str) -> str:
    return (
        f"<html><head><title>{title}</title></head><body>"
        "<nav>Home | About | Contact</nav>"
        f"<article><h1>{title}</h1><p>{body}</p></article>"
        "<footer>Copyright fixture web</footer></body></html>"
    )


def install_web(server: LocalHTTPServer, *, pages: dict[str, tuple[str, str]] | None = None) -> list[str]:
    """Serve `pages` and a search API listing them; returns the page URLs in result order."""
    pages = pages or ARTICLES
    urls = [server.url(path) for path in pages]
    for path, (title, body) in pages.items():
        server.html(path, article_html(title, body))

    def search(_request: Request) -> Response:
        results = [
            {"title": title, "url": server.url(path), "content": body[:80]} for path, (title, body) in pages.items()
        ]
        return Response(body=json.dumps({"results": results}).encode(), headers={"Content-Type": "application/json"})

    server.route("/search", search)
    return urls


def block_first_hit(server: LocalHTTPServer, path: str, release: threading.Event) -> None:
    """The first request to `path` (one of `ARTICLES`) hangs until `release` is set; later ones answer at once.

    Crash and kill-switch tests use it to catch a worker in the middle of a tool call.
    """
    title, body = ARTICLES[path]
    html = article_html(title, body).encode()

    def handler(_request: Request) -> Response:
        if server.hits[path] == 1:
            release.wait(timeout=60)
        return Response(body=html, headers={"Content-Type": "text/html"})

    server.route(path, handler)
