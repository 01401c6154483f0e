"""DuckDB's serialized secret format (the bytea column of a duckdb_secrets table).

DuckDB's postgres extension stores each secret as the output of DuckDB's
BinarySerializer: little-endian uint16 field ids, LEB128 integers, strings and
lists prefixed by their length, every object closed by field id 0xFFFF. A
secret is an object with fields 100 type, 101 provider, 102 name, 103 scope
(list of strings), 201 secret_map (a MAP value) and 202 redact_keys (a LIST
value). Values carry their own logical type.

Rows of that table are written by whoever may INSERT into it, so they are
untrusted input: this module reads them in Python with strict bounds (a
crafted row can only be refused, never crash the backend) and understands only
the value types secrets use. It also writes the same format, for DuckDB
clients to read.
"""

import struct

END = 0xFFFF

# DuckDB LogicalTypeId values used by secrets.
ANY, BOOLEAN, TINYINT, SMALLINT, INTEGER, BIGINT = 3, 10, 11, 12, 13, 14
FLOAT, DOUBLE, VARCHAR, BLOB = 22, 23, 25, 26
UTINYINT, USMALLINT, UINTEGER, UBIGINT = 28, 29, 30, 31
STRUCT, LIST, MAP = 100, 101, 102
SIGNED = {TINYINT, SMALLINT, INTEGER, BIGINT}
UNSIGNED = {UTINYINT, USMALLINT, UINTEGER, UBIGINT}
NESTED = {STRUCT, LIST, MAP}
# ExtraTypeInfoType values
LIST_INFO, STRUCT_INFO, STRING_INFO = 4, 5, 3

MAX_BYTES = 1 << 20          # a secret is a few hundred bytes; refuse anything huge
MAX_DEPTH = 8


class Unreadable(Exception):
    """The bytes are not a secret this module can read (the message names why, never a value)."""


class _Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def _take(self, n):
        if n < 0 or self.pos + n > len(self.data):
            raise Unreadable("truncated data")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def field(self):
        return struct.unpack("<H", self._take(2))[0]

    def peek_field(self):
        if self.pos + 2 > len(self.data):
            raise Unreadable("truncated data")
        return struct.unpack_from("<H", self.data, self.pos)[0]

    def expect(self, fid):
        got = self.field()
        if got != fid:
            raise Unreadable(f"unexpected field {got} (wanted {fid})")

    def optional(self, fid):
        if self.peek_field() == fid:
            self.pos += 2
            return True
        return False

    def _varint(self):
        """(value, bits read, last byte) of a LEB128 integer."""
        result = shift = 0
        while True:
            b = self._take(1)[0]
            result |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return result, shift, b
            if shift > 70:
                raise Unreadable("integer too long")

    def uvarint(self):
        return self._varint()[0]

    def svarint(self):
        result, shift, last = self._varint()
        return result - (1 << shift) if last & 0x40 else result

    def count(self):
        n = self.uvarint()
        if n > len(self.data) - self.pos:      # each element takes at least one byte
            raise Unreadable("length beyond the data")
        return n

    def blob(self):
        return self._take(self.count())

    def text(self):
        try:
            return self.blob().decode("utf-8")
        except UnicodeDecodeError:
            raise Unreadable("text is not UTF-8") from None

    def boolean(self):
        b = self._take(1)[0]
        if b > 1:
            raise Unreadable("bad boolean")
        return bool(b)

    def end(self):
        self.expect(END)


# A logical type is (id, children): children is None, a child type (LIST/MAP),
# or a list of (name, type) (STRUCT).

def _read_type(r, depth):
    if depth > MAX_DEPTH:
        raise Unreadable("value nested too deeply")
    r.expect(100)
    tid = r.uvarint()
    info = None
    if r.optional(101):
        if not r.boolean():
            raise Unreadable("bad type information")
        info = _read_type_info(r, depth)
    r.end()
    if tid in (LIST, MAP):
        if info is None or info[0] != LIST_INFO:
            raise Unreadable("list type without its element type")
        return (tid, info[1])
    if tid == STRUCT:
        if info is None or info[0] != STRUCT_INFO:
            raise Unreadable("struct type without its fields")
        return (tid, info[1])
    if tid not in SIGNED | UNSIGNED | {ANY, BOOLEAN, FLOAT, DOUBLE, VARCHAR, BLOB}:
        raise Unreadable(f"unsupported value type {tid}")
    return (tid, None)


def _read_type_info(r, depth):
    r.expect(100)
    kind = r.uvarint()
    if r.optional(101):
        if r.text():
            raise Unreadable("type aliases are not supported")
    if kind == LIST_INFO:
        r.expect(200)
        child = _read_type(r, depth + 1)
        r.end()
        return (kind, child)
    if kind == STRUCT_INFO:
        r.expect(200)
        fields = []
        for _ in range(r.count()):
            r.expect(0)
            name = r.text()
            r.expect(1)
            fields.append((name, _read_type(r, depth + 1)))
            r.end()
        r.end()
        return (kind, fields)
    if kind == STRING_INFO:
        if r.optional(200):
            r.text()            # a collation: irrelevant to the value
        r.end()
        return (kind, None)
    raise Unreadable(f"unsupported type information {kind}")


def _read_value(r, depth=0):
    """One Value object -> Python value (str, bool, int, float, bytes, list, dict, tuple for STRUCT)."""
    if depth > MAX_DEPTH:
        raise Unreadable("value nested too deeply")
    r.expect(100)
    tid, _ = _read_type(r, depth)
    r.expect(101)
    if r.boolean():                     # is_null
        r.end()
        return None
    r.expect(102)
    if tid == BOOLEAN:
        v = r.boolean()
    elif tid in SIGNED:
        v = r.svarint()
    elif tid in UNSIGNED:
        v = r.uvarint()
    elif tid == FLOAT:
        v = struct.unpack("<f", r._take(4))[0]
    elif tid == DOUBLE:
        v = struct.unpack("<d", r._take(8))[0]
    elif tid == VARCHAR:
        v = r.text()
    elif tid == BLOB:
        v = bytes(r.blob())
    elif tid in NESTED:
        r.expect(100)
        children = [_read_value(r, depth + 1) for _ in range(r.count())]
        r.end()
        if tid == LIST:
            v = children
        elif tid == STRUCT:
            v = tuple(children)
        else:
            v = {}
            for entry in children:
                if not isinstance(entry, tuple) or len(entry) != 2 or not isinstance(entry[0], str):
                    raise Unreadable("bad map entry")
                v[entry[0]] = entry[1]
    else:
        raise Unreadable(f"unsupported value type {tid}")
    r.end()
    return v


class Secret:
    """A secret as DuckDB serializes it."""

    __slots__ = ("type", "provider", "name", "scope", "params", "redact_keys")

    def __init__(self, type, provider, name, scope, params, redact_keys):
        self.type = type
        self.provider = provider
        self.name = name
        self.scope = list(scope)
        self.params = dict(params)
        self.redact_keys = list(redact_keys)


def decode(data):
    """bytes -> Secret, or Unreadable."""
    data = bytes(data)
    if len(data) > MAX_BYTES:
        raise Unreadable("too large")
    r = _Reader(data)
    r.expect(100)
    stype = r.text()
    r.expect(101)
    provider = r.text()
    r.expect(102)
    name = r.text()
    scope = []
    if r.optional(103):
        scope = [r.text() for _ in range(r.count())]
    params, redact = {}, []
    if r.optional(201):
        params = _read_value(r)
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise Unreadable("secret_map is not a map")
    if r.optional(202):
        redact = _read_value(r) or []
        if not isinstance(redact, list) or not all(isinstance(k, str) for k in redact):
            raise Unreadable("redact_keys is not a list of names")
    r.end()
    if r.pos != len(data):
        raise Unreadable("trailing bytes")
    return Secret(stype, provider, name, scope, params, redact)


# --- writing -----------------------------------------------------------------

class _Writer:
    def __init__(self):
        self.parts = []

    def field(self, fid):
        self.parts.append(struct.pack("<H", fid))

    def uvarint(self, n):
        out = bytearray()
        while True:
            b = n & 0x7F
            n >>= 7
            if n:
                out.append(b | 0x80)
            else:
                out.append(b)
                break
        self.parts.append(bytes(out))

    def svarint(self, n):
        out = bytearray()
        while True:
            b = n & 0x7F
            n >>= 7
            if (n == 0 and not b & 0x40) or (n == -1 and b & 0x40):
                out.append(b)
                break
            out.append(b | 0x80)
        self.parts.append(bytes(out))

    def text(self, s):
        b = s.encode("utf-8")
        self.uvarint(len(b))
        self.parts.append(b)

    def boolean(self, v):
        self.parts.append(b"\x01" if v else b"\x00")

    def end(self):
        self.field(END)

    def bytes(self):
        return b"".join(self.parts)


_KEY_VALUE = (STRUCT, [("key", (VARCHAR, None)), ("value", (ANY, None))])


def _type_of(v):
    if isinstance(v, bool):
        return (BOOLEAN, None)
    if isinstance(v, int):
        return (INTEGER, None) if -2**31 <= v < 2**31 else (BIGINT, None)
    if isinstance(v, str):
        return (VARCHAR, None)
    if isinstance(v, list):
        return (LIST, (VARCHAR, None))
    if isinstance(v, dict):
        return (MAP, (STRUCT, [("key", (VARCHAR, None)), ("value", (VARCHAR, None))]))
    raise TypeError(f"cannot serialize a {type(v).__name__}")


def _write_type(w, t):
    tid, sub = t
    w.field(100)
    w.uvarint(tid)
    if tid in (LIST, MAP):
        w.field(101)
        w.boolean(True)
        w.field(100)
        w.uvarint(LIST_INFO)
        w.field(200)
        _write_type(w, sub)
        w.end()
    elif tid == STRUCT:
        w.field(101)
        w.boolean(True)
        w.field(100)
        w.uvarint(STRUCT_INFO)
        w.field(200)
        w.uvarint(len(sub))
        for name, child in sub:
            w.field(0)
            w.text(name)
            w.field(1)
            _write_type(w, child)
            w.end()
        w.end()
    w.end()


def _write_value(w, v, t=None):
    t = t or _type_of(v)
    w.field(100)
    _write_type(w, t)
    w.field(101)
    w.boolean(v is None)
    if v is not None:
        w.field(102)
        tid, sub = t
        if tid == BOOLEAN:
            w.boolean(v)
        elif tid in SIGNED:
            w.svarint(v)
        elif tid == VARCHAR:
            w.text(v)
        elif tid == LIST:
            w.field(100)
            w.uvarint(len(v))
            for item in v:
                _write_value(w, item, sub)
            w.end()
        elif tid == MAP:
            w.field(100)
            items = list(v.items())
            w.uvarint(len(items))
            for key, val in items:
                _write_value(w, (key, val), sub)
            w.end()
        elif tid == STRUCT:
            w.field(100)
            w.uvarint(len(v))
            for item in v:
                _write_value(w, item)
            w.end()
        else:
            raise TypeError(f"cannot serialize type {tid}")
    w.end()


def encode(secret):
    """Secret -> bytes DuckDB reads back (keys in DuckDB's case-insensitive order)."""
    w = _Writer()
    w.field(100)
    w.text(secret.type)
    w.field(101)
    w.text(secret.provider)
    w.field(102)
    w.text(secret.name)
    w.field(103)
    w.uvarint(len(secret.scope))
    for s in secret.scope:
        w.text(s)
    w.field(201)
    entries = sorted(secret.params.items(), key=lambda kv: kv[0].lower())
    w.field(100)
    _write_type(w, (MAP, _KEY_VALUE))
    w.field(101)
    w.boolean(False)
    w.field(102)
    w.field(100)
    w.uvarint(len(entries))
    for key, val in entries:
        _write_value(w, (key, val), _KEY_VALUE)
    w.end()
    w.end()
    w.field(202)
    _write_value(w, list(secret.redact_keys), (LIST, (VARCHAR, None)))
    w.end()
    return w.bytes()
