"""Hostile inputs for DuckDB: SQL, Parquet, Iceberg metadata, CSV and JSON
that crash a DuckDB process (or are meant to try), for the tests that show a
crash in DuckDB costs the role an error and not the PostgreSQL backend.

Everything here is deterministic (seeded) and generated, not stored: the
deep inputs are written by hand (the Parquet footer in Thrift's compact
protocol, the Iceberg metadata as JSON text), the corrupted and fuzzed files
are mutations of files DuckDB itself writes. Every DuckDB that reads one of
them runs in a child process (run_in_child, ChildDuckDB), never in the
caller's: a crash there is a signal to report, not the end of the tests.

What crashed DuckDB 1.5.5 (Python package, 8 MB main-thread stack, Linux
x86_64, threads=1), each time:
- DEEP_VARIANT_SQL, DEEP_JSON_STRUCTURE_SQL (SIGSEGV): the JSON to VARIANT
  cast and json_structure recurse once a nesting level (100,000 levels
  already crash both). json_structure of 12,000,000 levels needs a
  memory_limit above 256MB first (at 256MB: an OutOfMemoryException);
- deep_schema_parquet() (SIGSEGV): the Parquet reader builds its column
  readers recursively from the schema (read_parquet crashes from 10,000
  levels, parquet_schema from 30,000; depth 3 reads fine: 0 rows);
- deep_iceberg_metadata() (SIGSEGV): iceberg_scan parses the current schema
  recursively (crashes from about 20,000 levels; 10,000 read fine);
- corrupted_parquet(): one byte changed in the DELTA_LENGTH_BYTE_ARRAY
  column chunk of a file DuckDB wrote (CORRUPT_OFFSET, CORRUPT_BYTE)
  corrupts the heap: SELECT * dies by SIGSEGV or SIGABRT ("malloc():
  unaligned tcache chunk detected"), depending on the heap's layout.
"""

import dataclasses
import hashlib
import json
import os
import random
import selectors
import signal
import struct
import subprocess
import sys
import tempfile
import time

# --- deep nesting in SQL ---------------------------------------------------------------------


def deep_json_text(levels):
    """DuckDB SQL for a JSON text of `levels` nested arrays, built by DuckDB
    itself (repeat), so that the statement stays short."""
    return f"(repeat('[', {int(levels)}) || repeat(']', {int(levels)}))"


# Both need a memory_limit of 1GB or so to reach the crash (json_structure of
# the default 12,000,000 levels fails cleanly at 256MB).
DEEP_VARIANT_LEVELS = 6_000_000
DEEP_JSON_STRUCTURE_LEVELS = 12_000_000
DEEP_VARIANT_SQL = f"SELECT ({deep_json_text(DEEP_VARIANT_LEVELS)}::JSON::VARIANT IS NULL)::varchar"
DEEP_JSON_STRUCTURE_SQL = f"SELECT json_structure({deep_json_text(DEEP_JSON_STRUCTURE_LEVELS)})::varchar IS NULL"


# --- Thrift compact protocol (the Parquet footer) ---------------------------------------------

_I32, _I64, _BINARY, _LIST, _STRUCT = 5, 6, 8, 9, 12      # compact protocol type ids


def _uvarint(n):
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _zigzag(n):
    return _uvarint((n << 1) ^ (n >> 63))


def _field(delta, ttype):
    """A field header: the id as a delta from the previous field's (1..15)."""
    assert 1 <= delta <= 15
    return bytes([(delta << 4) | ttype])


def _binary(s):
    return _uvarint(len(s)) + s


def _list_header(size, elem_type):
    return bytes([(size << 4) | elem_type]) if size < 15 else bytes([0xF0 | elem_type]) + _uvarint(size)


_STOP = b"\x00"
_OPTIONAL = 1           # FieldRepetitionType
_INT32 = 1              # parquet Type


def deep_schema_parquet(depth=3_000_000):
    """A Parquet file with no row groups (num_rows 0) whose schema nests
    `depth` OPTIONAL groups, one child each, around one INT32 leaf. The
    footer is valid: depth 3 reads as 0 rows. 8 bytes a level (~24 MB at the
    default), built in a fraction of a second."""
    # SchemaElement: 1 type, 3 repetition_type, 4 name, 5 num_children (i32 fields zigzag varints)
    root = _field(4, _BINARY) + _binary(b"schema") + _field(1, _I32) + _zigzag(1) + _STOP
    group = (_field(3, _I32) + _zigzag(_OPTIONAL) + _field(1, _BINARY) + _binary(b"g")
             + _field(1, _I32) + _zigzag(1) + _STOP)
    leaf = (_field(1, _I32) + _zigzag(_INT32) + _field(2, _I32) + _zigzag(_OPTIONAL)
            + _field(1, _BINARY) + _binary(b"v") + _STOP)
    # FileMetaData: 1 version, 2 schema (flattened depth-first), 3 num_rows, 4 row_groups
    meta = b"".join([
        _field(1, _I32), _zigzag(1),
        _field(1, _LIST), _list_header(depth + 2, _STRUCT), root, group * depth, leaf,
        _field(1, _I64), _zigzag(0),
        _field(1, _LIST), _list_header(0, _STRUCT),
        _STOP,
    ])
    return b"PAR1" + meta + struct.pack("<I", len(meta)) + b"PAR1"


# --- deep Iceberg schema ----------------------------------------------------------------------

_ICEBERG_HEAD = (
    '{"format-version":2,"table-uuid":"5f0c2a9e-3d7b-4c1e-9a62-0d4e8b7f1c35","location":%s,'
    '"last-sequence-number":0,"last-updated-ms":1700000000000,"last-column-id":%d,'
    '"current-schema-id":0,"schemas":[{"type":"struct","schema-id":0,"fields":[')
_ICEBERG_LEVEL = '{"id":%d,"name":"f","required":false,"type":{"type":"struct","fields":['
_ICEBERG_TAIL = (
    ']}],"default-spec-id":0,"partition-specs":[{"spec-id":0,"fields":[]}],"last-partition-id":999,'
    '"default-sort-order-id":0,"sort-orders":[{"order-id":0,"fields":[]}],"properties":{},'
    '"current-snapshot-id":-1,"refs":{},"snapshots":[],"snapshot-log":[],"metadata-log":[]}')


def deep_iceberg_metadata(depth=2_000_000, location="/nonexistent/deep_iceberg"):
    """An Iceberg metadata.json (format-version 2) of a table with no
    snapshot whose only schema nests `depth` structs (one field each) around
    an int. iceberg_scan needs nothing beside it: with no snapshot there is
    no manifest list to read, and the schema is parsed at bind. Built as
    text, no recursion; ~78 bytes a level (~157 MB at the default, ~1 s)."""
    parts = [_ICEBERG_HEAD % (json.dumps(location), depth + 1)]
    parts.extend(_ICEBERG_LEVEL % i for i in range(1, depth + 1))
    parts.append('{"id":%d,"name":"v","required":false,"type":"int"}' % (depth + 1))
    parts.append("]}}" * depth)
    parts.append(_ICEBERG_TAIL)
    return "".join(parts).encode()


def write_deep_iceberg_table(directory, depth=2_000_000):
    """The table: directory/metadata/v1.metadata.json (the only file it
    needs). Returns the path to give iceberg_scan."""
    path = os.path.join(directory, "metadata", "v1.metadata.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(deep_iceberg_metadata(depth, location=os.path.abspath(directory)))
    return path


# --- DuckDB in a child process ----------------------------------------------------------------

@dataclasses.dataclass
class Outcome:
    """How one statement ended in a child: status is "ok" (rows: the row
    count, first_rows: up to 20 rows as text), "error" (error_class, message:
    DuckDB's exception), "signal" (signal: the number that killed the child),
    "timeout" (the child was killed) or "exit" (exit_code: it exited)."""
    status: str
    rows: int | None = None
    first_rows: list | None = None
    error_class: str | None = None
    message: str | None = None
    signal: int | None = None
    exit_code: int | None = None
    seconds: float = 0.0

    @property
    def signal_name(self):
        return signal.Signals(self.signal).name if self.signal else None

    def __str__(self):
        detail = {"ok": lambda: f"{self.rows} rows", "error": lambda: f"{self.error_class}: {self.message}",
                  "signal": lambda: self.signal_name, "exit": lambda: f"exit code {self.exit_code}",
                  "timeout": lambda: f"after {self.seconds:.1f} s"}[self.status]()
        return f"{self.status} ({detail})"


# The child: one statement a line on stdin (JSON), one answer a line on
# what was its stdout (its fd 1 then goes to stderr), a fresh in-memory database for each (an InternalException
# invalidates a database, and one file's leftovers must not meet the next).
_CHILD = r"""
import json, resource, sys
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
cfg = json.loads(sys.argv[1])
if cfg["address_space"]:
    resource.setrlimit(resource.RLIMIT_AS, (cfg["address_space"], cfg["address_space"]))
import os
out = os.fdopen(os.dup(1), "w")     # the answers; anything DuckDB or Python prints goes to stderr
os.dup2(2, 1)
import duckdb
print(json.dumps({"ready": duckdb.__version__}), file=out, flush=True)
for line in sys.stdin:
    sql = json.loads(line)
    try:
        con = duckdb.connect(config=cfg["config"])
        for ext in cfg["load"]:
            con.execute("LOAD '" + ext.replace("'", "''") + "'")
        cur = con.execute(sql)
        n, first = 0, []
        while True:
            chunk = cur.fetchmany(2048)
            if not chunk:
                break
            if len(first) < 20:
                first.extend(repr(r)[:300] for r in chunk[:20 - len(first)])
            n += len(chunk)
        con.close()
        answer = {"status": "ok", "rows": n, "first_rows": first}
    except Exception as e:  # noqa: BLE001 -- every DuckDB error is an answer
        answer = {"status": "error", "error_class": type(e).__name__, "message": str(e)[:500]}
    print(json.dumps(answer), file=out, flush=True)
"""


def child_env():
    env = dict(os.environ, AWS_EC2_METADATA_DISABLED="true")
    env.pop("PYTHONPATH", None)
    return env


def superuser_extension_directory():
    """$(pg_config --pkglibdir)/duckdb_secrets/extensions/superuser, or None."""
    try:
        lib = subprocess.run(["pg_config", "--pkglibdir"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    path = os.path.join(lib, "duckdb_secrets", "extensions", "superuser")
    return path if os.path.isdir(path) else None


def shipped_extension(name, version="v1.5.5", platform="linux_amd64"):
    """The path of a shipped extension file, or None if it is missing."""
    root = superuser_extension_directory()
    if root is None:
        return None
    path = os.path.join(root, version, platform, f"{name}.duckdb_extension")
    return path if os.path.isfile(path) else None


class ChildDuckDB:
    """A plain DuckDB (the Python package of sys.executable) in a child
    process, for statements that may crash it: threads=1, a memory_limit,
    no extension autoloading, and optionally extension files LOADed first.
    run() answers an Outcome; a child that died or was killed at a timeout
    is replaced by a new one at the next run(). Close it (or use `with`)."""

    def __init__(self, *, memory_limit="256MB", threads=1, load=(), address_space=None, config=None):
        cfg = {"threads": threads, "memory_limit": memory_limit, "autoinstall_known_extensions": False,
               "autoload_known_extensions": False}
        ext_dir = superuser_extension_directory()
        if load and ext_dir:
            cfg.update(extension_directory=ext_dir, allow_unsigned_extensions=True)
        cfg.update(config or {})
        self._args = json.dumps({"config": cfg, "load": list(load), "address_space": address_space})
        self._proc = None
        self._stderr = None
        self.version = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _start(self):
        self._stderr = tempfile.TemporaryFile()
        self._proc = subprocess.Popen([sys.executable, "-c", _CHILD, self._args], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=self._stderr, env=child_env(),
                                      cwd=tempfile.gettempdir())
        ready = self._proc.stdout.readline()
        if not ready:
            raise RuntimeError(f"the DuckDB child did not start (exit {self._proc.wait()})")
        self.version = json.loads(ready)["ready"]

    def run(self, sql, timeout=60.0):
        if self._proc is None:
            self._start()
        proc, start = self._proc, time.monotonic()
        try:
            proc.stdin.write((json.dumps(sql) + "\n").encode())
            proc.stdin.flush()
        except BrokenPipeError:
            pass
        line = None
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            if sel.select(timeout):
                line = proc.stdout.readline()
        seconds = time.monotonic() - start
        if line:
            return Outcome(seconds=seconds, **json.loads(line))
        self._proc = None
        if line is None:            # no answer in time: this child is killed (by its pid), not reused
            proc.kill()
            proc.wait()
            self._close_pipes(proc)
            return Outcome("timeout", seconds=seconds, message=self._stderr_tail())
        code = proc.wait()
        self._close_pipes(proc)
        said = self._stderr_tail()
        if code < 0:
            return Outcome("signal", signal=-code, seconds=seconds, message=said)
        return Outcome("exit", exit_code=code, seconds=seconds, message=said)

    def _stderr_tail(self):
        """The end of what the child wrote to stderr (glibc's "free(): invalid
        pointer" before a SIGABRT, say), or None."""
        err, self._stderr = self._stderr, None
        if err is None:
            return None
        with err:
            err.seek(max(0, err.seek(0, os.SEEK_END) - 300))
            return err.read().decode(errors="replace").strip() or None

    @staticmethod
    def _close_pipes(proc):
        for pipe in (proc.stdin, proc.stdout):
            try:
                pipe.close()
            except OSError:
                pass

    def close(self):
        proc, self._proc = self._proc, None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        if proc is not None:
            try:
                proc.stdin.close()
            except OSError:
                pass
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            self._close_pipes(proc)


def run_in_child(sql, timeout=60.0, **kwargs):
    """One statement in a fresh child (ChildDuckDB's keyword arguments)."""
    with ChildDuckDB(**kwargs) as child:
        return child.run(sql, timeout)


def sql_string(s):
    return "'" + str(s).replace("'", "''") + "'"


def read_sql(kind, path):
    """The DuckDB statement that reads a file of a kind ("parquet", "csv",
    "json") whole (ChildDuckDB consumes every row)."""
    fn = {"parquet": "read_parquet", "csv": "read_csv", "json": "read_json"}[kind]
    return f"SELECT * FROM {fn}({sql_string(path)})"


# --- one byte that crashes the Parquet reader ------------------------------------------------

CORRUPT_BASE_SQL = ("COPY (SELECT i, ['a' || i, repeat('x', i % 50)] AS l FROM range(2000) t(i)) TO {path} "
                    "(FORMAT parquet, COMPRESSION zstd, PARQUET_VERSION V2)")
# What DuckDB 1.5.5 writes for CORRUPT_BASE_SQL, every run (checked), and the
# byte that crashes it, found by find_crashing_mutation(base, CORRUPT_SEED).
CORRUPT_BASE_SHA256 = "22fb8e53be33295413ab98467cdf42762cc5b39153e21d98a0b9962662117847"
CORRUPT_SEED = 2
CORRUPT_OFFSET = 845
CORRUPT_BYTE = 123
CORRUPT_TRIES = 8151            # the tries find_crashing_mutation(base, CORRUPT_SEED, ...) needed
# What the base file holds (2000 rows, the lists' text); the corrupted file
# crashes it too, but less surely than SELECT * (read_sql), which the search
# uses: the byte corrupts the heap, and whether a read dies of it depends on
# the heap's layout (the environment's size, the file name's length). SELECT *
# died 100 times of 100 across such layouts, CORRUPT_READ_SQL 99 (and 0 of
# 10 with one layout met under pytest: "Out of buffer" instead).
CORRUPT_READ_SQL = ("SELECT count(*), sum(length(list_aggregate(l, 'string_agg', ','))) "
                    "FROM read_parquet({path})")


def _write_with_duckdb(statements, timeout=120.0):
    """Runs COPY statements (valid data, but DuckDB all the same) in a child."""
    with ChildDuckDB(memory_limit="1GB") as child:
        for sql in statements:
            outcome = child.run(sql, timeout)
            if outcome.status != "ok":
                raise RuntimeError(f"DuckDB did not write the base file: {outcome}: {sql}")


def corrupted_parquet_base():
    """The base file, written by DuckDB (a child) now: 2,000 rows of an
    INT64 and a LIST(VARCHAR) column, zstd, V2 pages (~4.5 KB)."""
    with tempfile.TemporaryDirectory(prefix="hostile.") as tmp:
        path = os.path.join(tmp, "base.parquet")
        _write_with_duckdb([CORRUPT_BASE_SQL.format(path=sql_string(path))])
        with open(path, "rb") as f:
            return f.read()


def list_column_chunk(base):
    """(start, end) of the DELTA_LENGTH_BYTE_ARRAY column chunk (page headers,
    levels and values) of the base file, from its footer (read in a child)."""
    with tempfile.TemporaryDirectory(prefix="hostile.") as tmp:
        path = os.path.join(tmp, "base.parquet")
        with open(path, "wb") as f:
            f.write(base)
        sql = ("SELECT data_page_offset, total_compressed_size FROM parquet_metadata(" + sql_string(path)
               + ") WHERE encodings LIKE '%DELTA_LENGTH_BYTE_ARRAY%'")
        with ChildDuckDB() as child:
            outcome = child.run(sql, 60)
    if outcome.status != "ok" or outcome.rows != 1:
        raise RuntimeError(f"no DELTA_LENGTH_BYTE_ARRAY chunk in the base file: {outcome}")
    start, size = (int(x) for x in outcome.first_rows[0].strip("()").split(","))
    return start, start + size


def mutate(base, offset, byte):
    data = bytearray(base)
    data[offset] = byte
    return bytes(data)


def find_crashing_mutation(base, seed, limit, timeout=20.0, lookback=8, restart_every=50, progress=None):
    """Changes one byte (seeded: offset and value) in the list column's
    chunk of `base` and reads the mutant (read_sql: SELECT *), up to `limit`
    tries, until DuckDB dies by a signal. One child reads mutant after
    mutant (~10 ms each), and is replaced every `restart_every` (a heap
    that has served thousands of reads can absorb a corruption that kills a
    fresh process); when it dies, the mutant it died on and the `lookback`
    before it (a mutant may corrupt the heap and a later one pay for it) are
    each read alone by a fresh child, and the first that kills it is the
    answer: (offset, byte, tries, signal number), tries counting up to that
    mutant. None if no mutant in `limit` tries did."""
    rng = random.Random(seed)
    start, end = list_column_chunk(base)
    recent = []
    with tempfile.TemporaryDirectory(prefix="hostile.") as tmp, ChildDuckDB() as child:
        path = os.path.join(tmp, "mutant.parquet")
        sql = read_sql("parquet", path)
        for tries in range(1, limit + 1):
            offset = rng.randrange(start, end)
            byte = (base[offset] + rng.randrange(1, 256)) % 256
            recent = [*recent[-lookback:], (tries, offset, byte)]
            with open(path, "wb") as f:
                f.write(mutate(base, offset, byte))
            if tries % restart_every == 1:
                child.close()
            outcome = child.run(sql, timeout)
            if progress:
                progress(tries, offset, byte, outcome)
            if outcome.status != "signal":
                continue
            for at, off, value in reversed(recent):
                with open(path, "wb") as f:
                    f.write(mutate(base, off, value))
                alone = run_in_child(sql, timeout)
                if alone.status == "signal":
                    return off, value, at, alone.signal
            recent = []
    return None


def corrupted_parquet():
    """The base file with the byte changed that crashes DuckDB 1.5.5 reading
    it (CORRUPT_READ_SQL; SELECT * reads the same pages)."""
    base = corrupted_parquet_base()
    digest = hashlib.sha256(base).hexdigest()
    if digest != CORRUPT_BASE_SHA256:
        raise RuntimeError(f"DuckDB wrote another base file (sha256 {digest}, expected {CORRUPT_BASE_SHA256}): "
                           "the stored mutation is for another file; find one with find_crashing_mutation")
    return mutate(base, CORRUPT_OFFSET, CORRUPT_BYTE)


# --- mutation fuzz of Parquet, CSV and JSON ---------------------------------------------------

_NESTED = ("SELECT i, [i, i + 1, NULL] AS li, {'a': i, 'b': 'x' || i, 'c': [{'d': i / 3.0}]} AS s, "
           "['a' || i, NULL, repeat('y', i % 30)] AS ls, map([i % 3], ['v' || (i % 4)]) AS m FROM range(1500) t(i)")
_TYPES = ("SELECT i, (i * 12.345)::DECIMAL(9, 3) AS d9, (i * 12345.678)::DECIMAL(18, 3) AS d18, "
          "(i * 1234567.891)::DECIMAL(38, 6) AS d38, DATE '2000-01-01' + i::INTEGER AS dt, "
          "TIMESTAMP '2020-01-01' + INTERVAL (i) SECOND AS ts, i % 2 = 0 AS b, i / 7.0 AS f, "
          "CASE WHEN i % 5 = 0 THEN NULL ELSE md5(i::VARCHAR) END AS h, (i % 10)::VARCHAR AS cat FROM range(1500) t(i)")
_STRINGS = ("SELECT i, 'he said \"hi\", ' || i AS q, 'line1' || chr(10) || 'line2 ' || i AS nl, "
            "repeat('ü€', i % 7) || i AS u, (i / 3)::DECIMAL(10, 2) AS d, DATE '2001-01-01' + i::INTEGER AS dt "
            "FROM range(800) t(i)")

_PARQUET_SHAPES = {"nested": _NESTED, "types": _TYPES, "strings": _STRINGS}
_PARQUET_OPTIONS = [("zstd", "V2", ""), ("snappy", "V1", ""), ("uncompressed", "V2", ", ROW_GROUP_SIZE 500"),
                    ("zstd", "V1", ", ROW_GROUP_SIZE 700"), ("snappy", "V2", ""), ("uncompressed", "V1", "")]


def _base_statements():
    """(kind, name, COPY statement with a {path} placeholder) of every base file."""
    out = []
    for shape, query in _PARQUET_SHAPES.items():
        for codec, version, extra in _PARQUET_OPTIONS:
            out.append(("parquet", f"{shape}-{codec}-{version.lower()}",
                        f"COPY ({query}) TO {{path}} (FORMAT parquet, COMPRESSION {codec}, "
                        f"PARQUET_VERSION {version}{extra})"))
    out += [
        ("csv", "strings", f"COPY ({_STRINGS}) TO {{path}} (FORMAT csv, HEADER)"),
        ("csv", "types", f"COPY ({_TYPES}) TO {{path}} (FORMAT csv, HEADER)"),
        ("csv", "strings-tab-noheader", f"COPY ({_STRINGS}) TO {{path}} (FORMAT csv, DELIMITER '\t', HEADER false)"),
        ("csv", "nested-quoted", f"COPY ({_NESTED}) TO {{path}} (FORMAT csv, HEADER, FORCE_QUOTE *)"),
        ("json", "nested-lines", f"COPY ({_NESTED}) TO {{path}} (FORMAT json)"),
        ("json", "nested-array", f"COPY ({_NESTED}) TO {{path}} (FORMAT json, ARRAY true)"),
        ("json", "types-lines", f"COPY ({_TYPES}) TO {{path}} (FORMAT json)"),
        ("json", "strings-array", f"COPY ({_STRINGS}) TO {{path}} (FORMAT json, ARRAY true)"),
    ]
    return out


_BASES = {}


def base_files(kind):
    """{name: bytes} of the base files of a kind, written by DuckDB (a child)
    at the first call (~1 s for all, 20-200 KB each)."""
    if not _BASES:
        statements = _base_statements()
        with tempfile.TemporaryDirectory(prefix="hostile.") as tmp:
            paths = [os.path.join(tmp, f"{k}-{name}.{k}") for k, name, _ in statements]
            _write_with_duckdb([sql.replace("{path}", sql_string(p)) for (_, _, sql), p in zip(statements, paths,
                                                                                         strict=True)])
            for (k, name, _), p in zip(statements, paths, strict=True):
                with open(p, "rb") as f:
                    _BASES.setdefault(k, {})[name] = f.read()
    return dict(_BASES[kind])


_INTERESTING = [0x00, 0x01, 0x7F, 0x80, 0xFF, 0xFE, 0x40, 0x20]


def _bit_flips(rng, data, _kind):
    data = bytearray(data)
    for _ in range(rng.choice([1, 1, 2, 4, 8])):
        pos = rng.randrange(len(data))
        data[pos] ^= 1 << rng.randrange(8)
    return bytes(data)


def _byte_replace(rng, data, kind):
    data = bytearray(data)
    for _ in range(rng.choice([1, 1, 2, 4])):
        pos = rng.randrange(len(data))
        data[pos] = rng.choice(_INTERESTING) if rng.random() < 0.5 else rng.randrange(256)
    return bytes(data)


def _truncate(rng, data, _kind):
    return data[:rng.randrange(1, len(data))]


def _duplicate_range(rng, data, _kind):
    start = rng.randrange(len(data))
    end = min(len(data), start + rng.choice([1, 4, 16, 64, 256, 1024]))
    at = rng.randrange(len(data) + 1)
    return data[:at] + data[start:end] + data[at:]


def _remove_range(rng, data, _kind):
    start = rng.randrange(len(data))
    end = min(len(data), start + rng.choice([1, 4, 16, 64, 256, 1024]))
    return data[:start] + data[end:]


def _footer_bounds(data):
    """(start, end) of a Parquet file's footer (FileMetaData), if its length is sane."""
    if len(data) < 12 or data[-4:] != b"PAR1":
        return None
    length = struct.unpack("<I", data[-8:-4])[0]
    return (len(data) - 8 - length, len(data) - 8) if 0 < length <= len(data) - 12 else None


def _footer_tweak(rng, data, kind):
    """Parquet only: the footer length, or a byte of the footer's Thrift
    (field headers, varint lengths, counts, offsets) nudged by a small amount
    or set to an extreme; other kinds get a byte replacement."""
    bounds = _footer_bounds(data) if kind == "parquet" else None
    if bounds is None:
        return _byte_replace(rng, data, kind)
    data = bytearray(data)
    if rng.random() < 0.25:
        length = struct.unpack("<I", data[-8:-4])[0]
        length = rng.choice([length + rng.choice([-3, -2, -1, 1, 2, 3]), 0, 0xFFFFFFFF, len(data), length * 2])
        data[-8:-4] = struct.pack("<I", length % (1 << 32))
    else:
        pos = rng.randrange(*bounds)
        data[pos] = rng.choice([(data[pos] + rng.choice([-2, -1, 1, 2])) % 256, data[pos] | 0x80, 0x00, 0xFF,
                                data[pos] ^ 0x10])
    return bytes(data)


MUTATIONS = {"bitflip": _bit_flips, "replace": _byte_replace, "truncate": _truncate, "duplicate": _duplicate_range,
             "remove": _remove_range, "footer": _footer_tweak}
_WEIGHTS = {"parquet": {"bitflip": 3, "replace": 3, "truncate": 1, "duplicate": 1, "remove": 1, "footer": 3},
            "csv": {"bitflip": 3, "replace": 3, "truncate": 1, "duplicate": 2, "remove": 2},
            "json": {"bitflip": 3, "replace": 3, "truncate": 1, "duplicate": 2, "remove": 2}}


def mutants(kind, seed, count):
    """(name, bytes) of `count` mutants of the base files of a kind
    ("parquet", "csv", "json"), the same for the same seed: a base file
    (base_files) with one mutation (MUTATIONS: bit flips, byte replacements,
    a truncation, a range duplicated or removed, and for Parquet a tweak of
    the footer length or of a byte of the footer). The name says which."""
    bases = base_files(kind)
    names = sorted(bases)
    weights = _WEIGHTS[kind]
    rng = random.Random(f"{kind}:{seed}")
    for i in range(count):
        base = rng.choice(names)
        mutation = rng.choices(list(weights), weights=list(weights.values()))[0]
        yield f"{kind}-{i:05d}-{base}-{mutation}", MUTATIONS[mutation](rng, bases[base], kind)


FUZZ_ADDRESS_SPACE = 4 << 30     # a mutant that asks for gigabytes outside the memory_limit fails, not the machine


def fuzz(kind, seed, count, timeout=10.0, memory_limit="256MB", directory=None):
    """Reads each of mutants(kind, seed, count) (read_sql) in a plain
    DuckDB child (threads=1, memory_limit, FUZZ_ADDRESS_SPACE) and yields
    (name, Outcome). One child reads mutant after mutant; one that died by a
    signal is read again alone by a fresh child, and the outcome yielded is
    that one's (status "signal" only if the mutant alone kills DuckDB; a
    mutant that killed the shared child but not a fresh one has
    status "ok"/"error" and signal set to the shared child's signal)."""
    with tempfile.TemporaryDirectory(prefix="hostile.", dir=directory) as tmp, \
            ChildDuckDB(memory_limit=memory_limit, address_space=FUZZ_ADDRESS_SPACE) as child:
        for name, data in mutants(kind, seed, count):
            path = os.path.join(tmp, f"{name}.{kind}")
            with open(path, "wb") as f:
                f.write(data)
            sql = read_sql(kind, path)
            outcome = child.run(sql, timeout)
            if outcome.status == "signal":
                alone = run_in_child(sql, timeout, memory_limit=memory_limit, address_space=FUZZ_ADDRESS_SPACE)
                if alone.status != "signal":
                    alone.signal = outcome.signal
                outcome = alone
            yield name, outcome
            if outcome.status in ("ok", "error", "timeout"):
                os.unlink(path)
