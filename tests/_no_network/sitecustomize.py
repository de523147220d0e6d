"""Refuse every non-local connection: in subprocesses whose PYTHONPATH starts with this folder (Python
imports `sitecustomize` at start-up), or in this process for a while (`refused_network`, for commands the
tests run in process).

Unix sockets (the embedded PostgreSQL) and loopback stay usable; any other connect or DNS lookup raises
and is appended to the file named by `RA_NETWORK_LOG` (or given to `refused_network`), so a test can prove
nothing reached the network.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

_LOCAL_NAMES = {"localhost", "127.0.0.1", "::1", ""}
_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex
_getaddrinfo = socket.getaddrinfo
_log: str | None = None


def _refuse(what: str) -> OSError:
    if _log:
        with open(_log, "a") as handle:
            handle.write(what + "\n")
    return OSError(f"network disabled in this test process: {what}")


def _allowed(address: object) -> bool:
    if isinstance(address, str | bytes):  # AF_UNIX path
        return True
    host = address[0] if isinstance(address, tuple) else ""
    return str(host).startswith("127.") or host in _LOCAL_NAMES


def _guarded_connect(self: socket.socket, address: object) -> None:
    if not _allowed(address):
        raise _refuse(f"connect {address!r}")
    _connect(self, address)  # type: ignore[arg-type]


def _guarded_connect_ex(self: socket.socket, address: object) -> int:
    if not _allowed(address):
        raise _refuse(f"connect {address!r}")
    return _connect_ex(self, address)  # type: ignore[arg-type]


def _guarded_getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
    name = host.decode() if isinstance(host, bytes) else str(host) if host is not None else ""
    if name not in _LOCAL_NAMES and not name.startswith("127."):
        raise socket.gaierror(socket.EAI_NONAME, str(_refuse(f"resolve {name}")))
    return _getaddrinfo(host, *args, **kwargs)  # type: ignore[arg-type]


def install(log: str | None) -> None:
    global _log
    _log = log
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = _guarded_getaddrinfo  # type: ignore[assignment]


def uninstall() -> None:
    global _log
    _log = None
    socket.socket.connect = _connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = _getaddrinfo


@contextmanager
def refused_network(log: str | os.PathLike[str]) -> Iterator[None]:
    """While this runs, this whole process may reach loopback and Unix sockets only."""
    install(os.fspath(log))
    try:
        yield
    finally:
        uninstall()


if __name__ == "sitecustomize":  # imported by a subprocess at start-up: guard it for its whole life
    install(os.environ.get("RA_NETWORK_LOG"))
