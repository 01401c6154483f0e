"""Reading a one-column string result through the Arrow C stream interface.

DuckDB hands a relation over as an ArrowArrayStream (its __arrow_c_stream__
PyCapsule; no pyarrow needed). A batch's strings sit in one data buffer, end
to end, with an offsets buffer saying where each begins: a run of rows is one
copy out of that buffer, with no Python object per row. query.py has DuckDB
end every row with its separator, so such a run is already the joined text.

The structures are the Arrow C data interface's (a stable ABI):
https://arrow.apache.org/docs/format/CDataInterface.html
"""

import ctypes
from ctypes import CFUNCTYPE, POINTER, c_char_p, c_int, c_int64, c_void_p


class ArrowSchema(ctypes.Structure):
    pass


ArrowSchema._fields_ = [
    ("format", c_char_p), ("name", c_char_p), ("metadata", c_char_p), ("flags", c_int64),
    ("n_children", c_int64), ("children", POINTER(POINTER(ArrowSchema))), ("dictionary", c_void_p),
    ("release", CFUNCTYPE(None, c_void_p)), ("private_data", c_void_p),
]


class ArrowArray(ctypes.Structure):
    pass


ArrowArray._fields_ = [
    ("length", c_int64), ("null_count", c_int64), ("offset", c_int64), ("n_buffers", c_int64),
    ("n_children", c_int64), ("buffers", POINTER(c_void_p)), ("children", POINTER(POINTER(ArrowArray))),
    ("dictionary", c_void_p), ("release", CFUNCTYPE(None, c_void_p)), ("private_data", c_void_p),
]


class ArrowArrayStream(ctypes.Structure):
    _fields_ = [
        ("get_schema", CFUNCTYPE(c_int, c_void_p, POINTER(ArrowSchema))),
        ("get_next", CFUNCTYPE(c_int, c_void_p, POINTER(ArrowArray))),
        ("get_last_error", CFUNCTYPE(c_char_p, c_void_p)),
        ("release", CFUNCTYPE(None, c_void_p)),
        ("private_data", c_void_p),
    ]


_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = c_void_p
_capsule_pointer.argtypes = [ctypes.py_object, c_char_p]

# Offsets per string format: utf8 (32-bit) and large utf8 (64-bit).
_OFFSET_TYPES = {b"u": ctypes.c_int32, b"U": ctypes.c_int64}
# A run handed to PostgreSQL at a time: at most this many rows, about this many bytes.
RUN_ROWS = 65536
RUN_BYTES = 16 << 20


class StreamError(Exception):
    """get_next/get_schema failed: DuckDB's message (query.py raises it as a DuckDB error)."""


class Batch:
    """One batch of the stream: its string column, released once read."""

    def __init__(self, array, offset_type):
        self.array = array
        col = array.children[0].contents
        self.rows = col.length
        self.data = col.buffers[2]
        self.offsets = (offset_type * (col.length + 1)).from_address(
            col.buffers[1] + ctypes.sizeof(offset_type) * col.offset)

    def text(self, start, stop):
        """Rows [start, stop) as one str (each row ends with the separator)."""
        o0, o1 = self.offsets[start], self.offsets[stop]
        return ctypes.string_at(self.data + o0, o1 - o0).decode("utf-8")

    def raw(self, start, stop):
        """Rows [start, stop) as one bytes object (UTF-8)."""
        o0, o1 = self.offsets[start], self.offsets[stop]
        return ctypes.string_at(self.data + o0, o1 - o0)

    def row(self, i):
        return self.text(i, i + 1)

    def runs(self):
        """(start, stop) of the runs to hand over, by rows and bytes."""
        if self.rows == 0:
            return
        per_row = max(1, (self.offsets[self.rows] - self.offsets[0]) // self.rows)
        step = max(1, min(RUN_ROWS, RUN_BYTES // per_row))
        for start in range(0, self.rows, step):
            yield start, min(start + step, self.rows)

    def release(self):
        array, self.array = self.array, None
        if array is not None and array.release:
            array.release(ctypes.addressof(array))

    __del__ = release


class Stream:
    """The batches of a relation's one-string-column result."""

    def __init__(self, capsule):
        self.capsule = capsule          # keeps the stream alive; its destructor releases it
        self.ptr = _capsule_pointer(capsule, b"arrow_array_stream")
        self.stream = ArrowArrayStream.from_address(self.ptr)
        schema = ArrowSchema()
        self._check(self.stream.get_schema(self.ptr, ctypes.byref(schema)))
        try:
            fmt = schema.children[0].contents.format if schema.n_children == 1 else None
        finally:
            schema.release(ctypes.addressof(schema))
        self.offset_type = _OFFSET_TYPES.get(fmt)

    @property
    def usable(self):
        return self.offset_type is not None

    def next(self):
        """The next Batch, or None at the end. A DuckDB call: run it where PostgreSQL can stop it."""
        array = ArrowArray()
        self._check(self.stream.get_next(self.ptr, ctypes.byref(array)))
        if not array.release:
            return None
        return Batch(array, self.offset_type)

    def _check(self, status):
        if status != 0:
            message = self.stream.get_last_error(self.ptr)
            raise StreamError(message.decode("utf-8", "replace") if message else f"Arrow stream error {status}")
