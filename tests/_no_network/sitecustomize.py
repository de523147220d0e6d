"""Loaded by subprocesses whose PYTHONPATH starts with this folder: refuse every non-local connection.

Unix sockets (the embedded PostgreSQL) and loopback stay usable; any other connect or DNS lookup raises
and is appended to the file named by `RA_NETWORK_LOG`, so a test can prove nothing reached the network.
"""

from __future__ import annotations

import os
import socket

_LOG = os.environ.get("RA_NETWORK_LOG")
_LOCAL_NAMES = {"localhost", "127.0.0.1", "::1", ""}


def _refuse(what: str) -> OSError:
    if _LOG:
        with open(_LOG, "a") as handle:
            handle.write(what + "\n")
    return OSError(f"network disabled in this test process: {what}")


_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex
_getaddrinfo = socket.getaddrinfo


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


socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
socket.getaddrinfo = _guarded_getaddrinfo  # type: ignore[assignment]
