"""Frames between a backend and its engine's worker process (engine.py, worker.py).

One stream socket (a socketpair) carries frames both ways:

    u32 length | u32 request id | u8 kind | payload (length bytes)

kinds: JSON (a request, a reply, an error), TEXT (a run of formatted rows,
UTF-8, sent straight from DuckDB's buffer), ROWS (rows that came on their own,
a JSON list). Every request carries an id; every reply carries the id of the
request it answers, so replies to a result's prefetched chunk and to a call
made while that result is open (a domain check, a function per row) never mix.

Nothing but JSON and text is ever decoded from the worker: a worker that a
hostile file took over can send wrong answers, never code (no pickle).
"""

import json
import socket
import struct

HEADER = struct.Struct("<IIB")
JSON, TEXT, ROWS = 1, 2, 3
# A frame larger than this is a broken worker, not a result (runs are <= ~16 MB).
MAX_FRAME = 1 << 30


def frame(rid, kind, payload):
    return HEADER.pack(len(payload), rid, kind) + payload


def message(rid, obj):
    return frame(rid, JSON, json.dumps(obj, separators=(",", ":"), default=_plain).encode())


def _plain(value):
    """JSON for what DuckDB returns beyond JSON's types (dates, decimals, UUIDs, ...)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "\\x" + bytes(value).hex()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


class Broken(Exception):
    """The stream broke off or carried something that is not a frame."""


class Reader:
    """Frames from a non-blocking socket, as its bytes arrive."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()
        self.want = None            # (length, rid, kind) of the frame being read

    def feed(self):
        """Read what is there; False at end of stream (or a broken socket)."""
        try:
            data = self.sock.recv(1 << 20, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            return False
        if not data:
            return False
        self.buf += data
        return True

    def frames(self):
        """The complete frames read so far: (rid, kind, value), value decoded (decode())."""
        out = []
        while True:
            if self.want is None:
                if len(self.buf) < HEADER.size:
                    return out
                self.want = HEADER.unpack_from(self.buf)
                if self.want[0] > MAX_FRAME or self.want[2] not in (JSON, TEXT, ROWS):
                    raise Broken("a frame out of bounds")
                del self.buf[:HEADER.size]
            length, rid, kind = self.want
            if len(self.buf) < length:
                return out
            with memoryview(self.buf) as mv:
                value = decode(kind, mv[:length])
            del self.buf[:length]
            self.want = None
            out.append((rid, kind, value))


def decode(kind, payload):
    """A frame's payload as a Python value: dict/list (JSON, ROWS) or str (TEXT)."""
    if kind == TEXT:
        return str(payload, "utf-8", "replace")
    try:
        return json.loads(bytes(payload))
    except ValueError:
        raise Broken("a frame that is not JSON") from None


def blocking_read(sock, n):
    """Exactly n bytes from a blocking socket (the worker's side); b'' at end of stream."""
    view = bytearray(n)
    got = 0
    mv = memoryview(view)
    while got < n:
        k = sock.recv_into(mv[got:], n - got)
        if k == 0:
            return b""
        got += k
    return bytes(view)


def read_frame(sock):
    """One frame from a blocking socket: (rid, kind, payload), or None at end of stream."""
    head = blocking_read(sock, HEADER.size)
    if not head:
        return None
    length, rid, kind = HEADER.unpack(head)
    if length > MAX_FRAME:
        raise Broken("a frame out of bounds")
    payload = blocking_read(sock, length) if length else b""
    if length and not payload:
        return None
    return rid, kind, payload
