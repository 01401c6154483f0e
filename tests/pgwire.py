"""A minimal PostgreSQL wire-protocol client, for what libpq never sends: an
Execute with a row limit, which leaves its portal suspended for a later
Execute to resume (as JDBC does with a fetch size). Trust authentication only."""

import socket
import struct


class Wire:
    def __init__(self, port, user, database):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        body = struct.pack("!I", 196608) + b"".join(
            k.encode() + b"\0" + v.encode() + b"\0" for k, v in (("user", user), ("database", database))) + b"\0"
        self.sock.sendall(struct.pack("!I", len(body) + 4) + body)
        self.until_ready()

    def _send(self, kind, body=b""):
        self.sock.sendall(kind + struct.pack("!I", len(body) + 4) + body)

    def _read(self, n):
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise ConnectionError("the server closed the connection")
            out += chunk
        return out

    def message(self):
        """(kind, body); an ErrorResponse's fields as {code: text}."""
        kind = self._read(1)
        size = struct.unpack("!I", self._read(4))[0]
        body = self._read(size - 4)
        if kind == b"E":
            body = {f[:1].decode(): f[1:].decode() for f in body.split(b"\0") if f}
        return kind, body

    def until_ready(self):
        """The messages up to ReadyForQuery: [(kind, body)]."""
        out = []
        while True:
            kind, body = self.message()
            if kind == b"R" and struct.unpack("!I", body[:4])[0] != 0:
                raise ConnectionError("only trust authentication is supported here")
            out.append((kind, body))
            if kind == b"Z":
                return out

    def parse_bind(self, sql):
        self._send(b"P", b"\0" + sql.encode() + b"\0" + struct.pack("!H", 0))
        self._send(b"B", b"\0\0" + struct.pack("!HHH", 0, 0, 0))

    def execute(self, max_rows):
        self._send(b"E", b"\0" + struct.pack("!I", max_rows))
        self._send(b"H")        # Flush: the answer now, no Sync (the portal stays)

    def sync(self):
        self._send(b"S")
        return self.until_ready()

    def read_until(self, kinds):
        while True:
            kind, body = self.message()
            if kind in kinds:
                return kind, body

    def close(self):
        try:
            self._send(b"X")
        finally:
            self.sock.close()
