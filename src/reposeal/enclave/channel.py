"""Length-prefixed JSON frames over a Unix stream socket, with file descriptors attached.

The enclave talks to its sandboxed workers this way: a worker receives open, read-only file
descriptors (never paths or folder handles, which could be walked out of), and answers with
JSON. Both ends treat the other as hostile: frame sizes and descriptor counts are bounded.
"""

from __future__ import annotations

import array
import json
import os
import socket
import struct
from typing import Any

from reposeal.alpm.limits import MAX_FDS
from reposeal.errors import ReposealError

HEADER = struct.Struct(">I")


class ChannelError(ReposealError):
    """The other end closed, sent a malformed or oversized frame, or too many descriptors."""


def send(sock: socket.socket, doc: Any, fds: list[int] | None = None) -> None:
    send_bytes(sock, json.dumps(doc, separators=(",", ":")).encode(), fds)


def send_bytes(sock: socket.socket, body: bytes, fds: list[int] | None = None) -> None:
    """One frame of raw bytes (``send`` sends JSON the same way)."""
    frame = HEADER.pack(len(body)) + body
    ancillary = []
    if fds:
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
    sent = sock.sendmsg([frame], ancillary)
    if sent < len(frame):
        sock.sendall(frame[sent:])


def _read_exact(sock: socket.socket, n: int) -> bytes:
    parts, got = [], 0
    while got < n:
        chunk = sock.recv(min(n - got, 1 << 20))
        if not chunk:
            raise ChannelError("the other end closed the channel mid-frame")
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def receive(sock: socket.socket, max_bytes: int) -> tuple[Any, list[int]]:
    """One frame: (document, received descriptors). Descriptors beyond MAX_FDS are closed
    and refused; the caller owns (and must close) the ones returned."""
    body, fds = receive_bytes(sock, max_bytes)
    try:
        return json.loads(body), fds
    except ValueError:
        for fd in fds:
            os.close(fd)
        raise ChannelError("a frame is not valid JSON") from None


def receive_bytes(sock: socket.socket, max_bytes: int) -> tuple[bytes, list[int]]:
    """One frame of raw bytes, and the descriptors that came with it."""
    size = array.array("i").itemsize
    data, ancdata, flags, _ = sock.recvmsg(HEADER.size, socket.CMSG_SPACE(MAX_FDS * size))
    fds: list[int] = []
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            got = array.array("i")
            got.frombytes(payload[: len(payload) - (len(payload) % size)])
            fds.extend(got)
    try:
        if flags & socket.MSG_CTRUNC:
            raise ChannelError(f"more than {MAX_FDS} descriptors in one frame")
        if not data:
            raise ChannelError("the other end closed the channel")
        if len(data) < HEADER.size:
            data += _read_exact(sock, HEADER.size - len(data))
        (length,) = HEADER.unpack(data)
        if length > max_bytes:
            raise ChannelError(f"a frame of {length} bytes exceeds the limit of {max_bytes}")
        return _read_exact(sock, length), fds
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
