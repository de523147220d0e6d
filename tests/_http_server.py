"""A real HTTP server on 127.0.0.1 for fetch, search and crash tests.

Routes are plain functions registered per test; every request is counted by path so tests can
assert that completed tool calls were not repeated. A route may block on a `threading.Event` to
simulate a slow upstream (crash tests kill the worker while it waits).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    # Optional streaming: when set, chunks are written one by one with `chunk_delay` seconds between.
    chunks: list[bytes] | None = None
    chunk_delay: float = 0.0


@dataclass
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


Handler = Callable[[Request], Response]


class LocalHTTPServer:
    """Threaded HTTP server with registrable routes and per-path request counters."""

    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {}
        self.hits: Counter[str] = Counter()
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        owner = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = Request(
                    method=self.command,
                    path=parts.path,
                    query=parts.query,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                with owner._lock:
                    owner.hits[parts.path] += 1
                    owner.requests.append(request)
                handler = owner.routes.get(parts.path)
                response = handler(request) if handler else Response(status=404, body=b"not found")
                self.send_response(response.status)
                for key, value in response.headers.items():
                    self.send_header(key, value)
                try:
                    if response.chunks is not None:
                        self.send_header("Transfer-Encoding", "chunked")
                        self.end_headers()
                        for chunk in response.chunks:
                            if response.chunk_delay:
                                threading.Event().wait(response.chunk_delay)
                            self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                            self.wfile.flush()
                        self.wfile.write(b"0\r\n\r\n")
                    else:
                        self.send_header("Content-Length", str(len(response.body)))
                        self.end_headers()
                        self.wfile.write(response.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = _serve
            do_POST = _serve
            do_HEAD = _serve

        class _Server(ThreadingHTTPServer):
            def handle_error(self, request: object, client_address: object) -> None:
                return  # clients that hang up early (size and time limits) are expected here

        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        # `stop()` waits until the serving loop next looks at its shutdown flag: look often (the default is
        # every 0.5 s, which every test using the server would spend in its teardown).
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def host(self) -> str:
        """`host:port`, the form the fetch allow-list takes."""
        return f"127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def route(self, path: str, handler: Handler) -> None:
        self.routes[path] = handler

    def html(self, path: str, html: str, *, status: int = 200) -> None:
        """Serve a fixed HTML page at `path`."""
        body = html.encode()
        self.route(
            path,
            lambda _req: Response(status=status, body=body, headers={"Content-Type": "text/html; charset=utf-8"}),
        )

    def start(self) -> LocalHTTPServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
