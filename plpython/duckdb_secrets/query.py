"""Running SQL in the engine and handing results to PostgreSQL.

duckdb.query() is a PL/pgSQL function (so errors are native PostgreSQL
errors): it calls start() here, which runs the statement and returns the
column list DuckDB produces and the SELECT that fetches the rows
(fetch_sql), then RETURN QUERY EXECUTEs that SELECT.

The transfer is text, formatted in bulk and parsed in bulk. DuckDB formats
every row as one string -- each column in PostgreSQL's input syntax, columns
separated by \\x01, NULL written \\x03 -- Python joins a chunk of rows with
\\x02 into one value, and PostgreSQL splits it (string_to_table, split_part)
and parses each field with the column type's input function (a cast from
text, in C). No value is converted in Python. A row whose text contains one
of those control characters arrives on its own, as an array literal.

Because every column arrives as text, a column the caller declares with
another type than DuckDB's is parsed with the declared type's input
function, as dblink does: duckdb.query() learns the declared type from
PostgreSQL's "structure of query does not match" error (retype()).
"""

import datetime
import json
import math
import re

from . import arrowstream
from .errors import CHARACTER_NOT_IN_REPERTOIRE, SYSTEM_ERROR, PgError, caught, from_duckdb

FIELD, ROW, NULL, ALONE = "\x01", "\x02", "\x03", "\x04"

# DuckDB scalar type -> PostgreSQL type for the result column list (docs/reference.md's
# table, which tests/test_types.py checks against what each type reads as). DECIMAL(p,s)
# is numeric; any other scalar (ENUM, BIT, GEOMETRY, ...) is text.
_SCALAR = {
    "BOOLEAN": "boolean",
    "TINYINT": "smallint", "SMALLINT": "smallint", "UTINYINT": "smallint",
    "INTEGER": "integer", "USMALLINT": "integer",
    "BIGINT": "bigint", "UINTEGER": "bigint",
    "UBIGINT": "numeric", "HUGEINT": "numeric", "UHUGEINT": "numeric", "VARINT": "numeric",
    "BIGNUM": "numeric",
    "FLOAT": "real", "DOUBLE": "double precision",
    "VARCHAR": "text", "BLOB": "bytea", "UUID": "uuid", "JSON": "json",
    "DATE": "date", "TIME": "time", "TIME_NS": "time", "TIME WITH TIME ZONE": "timetz",
    "TIMESTAMP": "timestamp", "TIMESTAMP_S": "timestamp", "TIMESTAMP_MS": "timestamp",
    "TIMESTAMP_NS": "timestamp", "TIMESTAMP WITH TIME ZONE": "timestamptz",
    "INTERVAL": "interval",
}
# A list (INTEGER[]) or a fixed-size array (INTEGER[3]): the element type before it.
_LIST = re.compile(r"\[\d*\]$")
_NESTED = ("STRUCT(", "MAP(", "UNION(")
# Types whose text needs no quotes as an array element (PostgreSQL writes them bare).
_BARE = {"boolean", "smallint", "integer", "bigint", "numeric", "real", "double precision", "uuid"}
# Types whose text never holds a control character (no check needed).
_PLAIN = {"boolean", "smallint", "integer", "bigint", "numeric", "real", "double precision",
          "bytea", "uuid", "date", "time", "timetz", "timestamp", "timestamptz", "interval"}


def _text(x, pg):
    """DuckDB SQL for the PostgreSQL input text of scalar x of PostgreSQL type pg."""
    if pg == "bytea":
        return f"('\\x' || hex({x}))"
    if pg in ("date", "timestamp", "timestamptz"):
        # DuckDB writes '0044-03-15 (BC)', PostgreSQL reads '0044-03-15 BC'.
        return f"replace(CAST({x} AS VARCHAR), ' (BC)', ' BC')"
    return f"CAST({x} AS VARCHAR)"


def _quoted(text):
    """DuckDB SQL: text as an element of a PostgreSQL array literal."""
    return f"""('"' || replace(replace({text}, '\\', '\\\\'), '"', '\\"') || '"')"""


def _array_text(x, pg):
    """DuckDB SQL: list x of scalars of PostgreSQL type pg as a one-dimensional array
    literal (NULL elements kept; a NULL list stays NULL)."""
    text = _text("e", pg)
    elem = f"CASE WHEN e IS NULL THEN 'NULL' ELSE {text if pg in _BARE else _quoted(text)} END"
    return f"('{{' || array_to_string(list_transform({x}, lambda e: {elem}), ',') || '}}')"


def _json_text(x, name):
    """DuckDB SQL: nested value x of DuckDB type name as jsonb input text. DuckDB's
    to_json writes a non-finite float bare (NaN, -Infinity), which JSON cannot hold:
    made strings, as PostgreSQL's to_jsonb writes them. A string's characters below
    U+0020 are escaped by to_json, so chr(1) marks the tokens: after a string two
    marks (dropped), around a bare token one each (made quotes)."""
    text = f"CAST(to_json({x}) AS VARCHAR)"
    if "FLOAT" not in name and "DOUBLE" not in name:
        return text
    marked = (f"""regexp_replace({text}, '("(?:[^"\\\\]|\\\\.)*")|(-?Infinity|NaN)', """
              r"""'\1' || chr(1) || '\2' || chr(1), 'g')""")
    return f"replace(replace({marked}, chr(1) || chr(1), ''), chr(1), '\"')"


def _scalar_type(name):
    """The PostgreSQL type of a DuckDB scalar type; None for a nested one."""
    if name.startswith(_NESTED) or _LIST.search(name):
        return None
    if name.startswith("DECIMAL"):
        return "numeric"
    return _SCALAR.get(name, "text")


def column_type(dtype):
    """(PostgreSQL type, function: DuckDB expression -> DuckDB SQL of its
    PostgreSQL input text) for a DuckDB result type: a scalar as _SCALAR says,
    a list or fixed-size array of scalars as an array of their type, anything
    else nested (lists of lists, structs, maps, unions, lists of those) as jsonb."""
    name = str(dtype)
    pg = _scalar_type(name)
    if pg is not None:
        return pg, lambda x: _text(x, pg)
    m = _LIST.search(name)
    elem = None if m is None or name.startswith(_NESTED) else _scalar_type(name[:m.start()])
    if elem is not None:
        return elem + "[]", lambda x: _array_text(x, elem)
    return "jsonb", lambda x: _json_text(x, name)


def row_sql(formats, pg_types):
    """DuckDB SQL formatting one result row (columns #1, #2, ...) as one string."""
    fields = [fmt(f"#{i + 1}") for i, fmt in enumerate(formats)]
    row = ", chr(1), ".join(f"coalesce({f}, chr(3))" for f in fields)
    if len(fields) == 1:
        row += ", chr(1)"               # never empty: an empty string is no row to string_to_table
    row = f"concat({row})"
    risky = [(i, f) for i, (f, pg) in enumerate(zip(fields, pg_types, strict=True)) if pg not in _PLAIN]
    if not risky:
        return row
    alone = ", ',', ".join(f"CASE WHEN {f} IS NULL THEN 'NULL' ELSE {_quoted(f)} END" for f in fields)
    # What would be misread: a separator anywhere, a value that is exactly the
    # NULL mark, a row that would begin with the ALONE mark.
    cond = " OR ".join(f"contains({f}, chr(1)) OR contains({f}, chr(2)) OR {f} = chr(3)"
                       + (f" OR starts_with({f}, chr(4))" if i == 0 else "") for i, f in risky)
    return f"CASE WHEN {cond} THEN concat(chr(4), '{{', {alone}, '}}') ELSE {row} END"


def _interval(td):
    return f"{td.days} days {td.seconds} seconds {td.microseconds} microseconds"


def _blob(b):
    """A BLOB as DuckDB writes it as text (to_json): printable ASCII but \\ " ' as is, \\xHH otherwise."""
    return "".join(chr(c) if 32 <= c < 127 and c not in (34, 39, 92) else f"\\x{c:02X}" for c in b)


def _jsonable(v):
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return "NaN" if v != v else ("Infinity" if v > 0 else "-Infinity")
    if isinstance(v, (bool, int, float, str)) or v is None:
        return v
    if isinstance(v, datetime.timedelta):
        return _interval(v)
    if isinstance(v, bytes):
        return _blob(v)
    return str(v)


def _element(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def py_text(v, pg):
    """PostgreSQL input text of a Python value DuckDB returned, for type pg
    (rows of statements whose result DuckDB cannot format, formatted here:
    run_statement). DuckDB's Python values lose what its text keeps for a few
    types (an infinite DATE or TIMESTAMP is 9999-12-31 or 0001-01-01, an
    INTERVAL's months are 30 days, nanoseconds are cut): docs/reference.md."""
    if v is None:
        return None
    if pg.endswith("[]"):
        q = (lambda t: t) if pg[:-2] in _BARE else _element
        return "{" + ",".join("NULL" if e is None else q(py_text(e, pg[:-2])) for e in v) + "}"
    if pg == "jsonb" or (pg == "json" and not isinstance(v, str)):
        return json.dumps(_jsonable(v))
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, bytes):
        return "\\x" + v.hex()
    if isinstance(v, datetime.timedelta):
        return _interval(v)
    if isinstance(v, str) and pg in ("date", "timestamp", "timestamptz"):
        return v.replace(" (BC)", " BC")       # outside Python's years, DuckDB gives its text
    return str(v)


def py_row(pg_types):
    """A function formatting a row of Python values as row_sql() formats one in DuckDB."""
    def fmt(row):
        fields = [py_text(v, pg) for v, pg in zip(row, pg_types, strict=True)]
        if any(f is not None and _RISKY.search(f) for f in fields):
            return ALONE + "{" + ",".join("NULL" if f is None else _element(f) for f in fields) + "}"
        return FIELD.join(NULL if f is None else f for f in fields) + (FIELD if len(fields) == 1 else "")
    return fmt


def _unterminated(row):
    return row[0][:-1]
_RISKY = re.compile("[\x01-\x04]")


def _ident(name):
    return '"' + str(name).replace('"', '""') + '"'


def fetch_sql(pg_types):
    """The SELECT that duckdb.query() runs to fetch a result, each column
    parsed as the given PostgreSQL type. duckdb._query_chunks() is called in
    the select list: PostgreSQL asks it for one chunk at a time (a function in
    FROM would have every chunk written to a tuplestore first). A chunk is a
    run of rows, or one row on its own (ALONE, then an array literal). The
    columns are c1, c2, ...: DuckDB's column names (which a query can build
    from data) never become statement text, which pg_stat_statements keeps."""
    split = ", ".join(f"NULLIF(pg_catalog.split_part(r, E'\\001', {i + 1}), E'\\003')::{t} AS c{i + 1}"
                      for i, t in enumerate(pg_types))
    alone = ", ".join(f"x[{i + 1}]::{t}" for i, t in enumerate(pg_types))
    # unnest(string_to_array()) in a select list yields the rows one at a time
    # (string_to_table in FROM would fill a tuplestore per chunk): ~7% faster.
    return ("SELECT u.* FROM (SELECT duckdb._query_chunks() AS s) AS c CROSS JOIN LATERAL ("
            f"SELECT {split} FROM (SELECT pg_catalog.unnest(pg_catalog.string_to_array(CASE WHEN NOT "
            "pg_catalog.starts_with(c.s, E'\\004') THEN c.s END, E'\\002')) AS r) AS rr "
            f"UNION ALL SELECT {alone} FROM (SELECT pg_catalog.substr(c.s, 2)::text[]) AS y(x) "
            "WHERE pg_catalog.starts_with(c.s, E'\\004')) AS u")


class Pending:
    """A DuckDB result waiting to be fetched by duckdb._query_chunks().

    source: an iterator of runs of formatted rows, each (joined text, None)
    or (None, [row, ...]) when a row in it came on its own (ALONE)."""

    def __init__(self, source, duck_types, pg_types, names, cell_scrub=None, owner=None):
        self.source = source
        self.duck_types = duck_types
        self.pg_types = list(pg_types)      # DuckDB's, as PostgreSQL types
        self.declared = list(pg_types)      # what the caller's column list says (retype())
        self.names = names
        self.scrub = cell_scrub     # cells may carry a secret DuckDB shows in clear (duckdb_secrets())
        self.owner = owner          # (role, statement): only that role, in that statement, fetches it
        self.error = None
        self.sql = None             # the DuckDB SQL (api: is it logged if it fails)
        self.bound = None           # its parameters' jsonb text
        self.judged = None          # api.Judged: what the SQL, the parameters and the statement may carry
        self.cut = False            # closed before its end (close())

    def close(self):
        """Stop reading (the worker drops the result). A fetch still under way
        ends with an error, never as a short result."""
        self.cut = True
        self.release()

    def release(self):
        """Let go of what is left of the result (read to its end, or no longer wanted)."""
        source, self.source = self.source, iter(())
        if hasattr(source, "close"):
            caught(source.close)

    def coldef(self, named=False):
        cols = self.names if named else [f"c{i + 1}" for i in range(len(self.pg_types))]
        return ", ".join(f"{_ident(n) if named else n} {t}" for n, t in zip(cols, self.pg_types, strict=True))

    def fetch_sql(self):
        return fetch_sql(self.declared)

    def json_sql(self):
        """duckdb.query_json()'s SELECT: each row as a jsonb object whose keys
        (DuckDB's column names) are the statement's parameter $1, a jsonb array,
        never its text. jsonb_build_object takes 100 arguments: 50 columns a call."""
        n = len(self.declared)
        parts = [", ".join(f"$1->>{i}, q.c{i + 1}" for i in range(start, min(start + 50, n)))
                 for start in range(0, n, 50)]
        row = " || ".join(f"pg_catalog.jsonb_build_object({p})" for p in parts) or "'{}'::jsonb"
        return f"SELECT {row} FROM ({self.fetch_sql()}) AS q"

    def chunks(self):
        """Per run, the rows joined; a row that holds a separator on its own
        (it came formatted as ALONE + array literal). An error ends them and is
        kept for _query_end (never raised to PL/Python)."""
        runs = self._runs()
        try:
            while True:
                chunk, error = caught(next, runs, None)
                if error is not None:
                    self.error = error if isinstance(error, PgError) else from_duckdb(error)
                    return
                if chunk is None:
                    if self.cut:
                        self.error = PgError(SYSTEM_ERROR,
                                             "the DuckDB result was closed before it was read to its end")
                    return
                yield chunk
        finally:
            self.release()

    def _runs(self):
        for text, rows in self.source:
            if text is not None:
                if "\x00" in text:
                    raise self._nul(text)
                yield self._scrubbed(text)
                continue
            for row in rows:
                if "\x00" in row:
                    raise self._nul(row)
            run = []
            for row in rows:
                if row.startswith(ALONE):
                    if run:
                        yield self._scrubbed(ROW.join(run))
                        run = []
                    yield self._scrubbed(row)
                else:
                    run.append(row)
            if run:
                yield self._scrubbed(ROW.join(run))

    def _nul(self, text):
        """PostgreSQL text cannot hold a NUL character: an error naming the column
        (never a value cut short, nor the rows after it dropped)."""
        at = text.index("\x00")
        start = text.rfind(ROW, 0, at) + 1
        row = text[start:]
        col = None
        if not row.startswith(ALONE):
            col = row[:at - start].count(FIELD)
        where = (f'column {col + 1} ("{self.names[col]}")' if col is not None and col < len(self.names)
                 else "a column")
        return PgError(CHARACTER_NOT_IN_REPERTOIRE, f"DuckDB returned a value with a NUL character in {where}",
                       detail="PostgreSQL text cannot hold the character \\0.",
                       hint="Remove it in the DuckDB query, e.g. replace(value, chr(0), '').")

    def _scrubbed(self, text):
        return text if self.scrub is None else self.scrub(text)

    def retype(self, detail, template):
        """The fetch SELECT again, with the column PostgreSQL's mismatch detail
        names parsed as the type the caller declared; None if the detail is
        not such a message (a wrong number of columns) or names nothing new."""
        m = template.fullmatch(detail or "")
        if m is None:
            return None
        col = int(m.group("col"))
        if not 1 <= col <= len(self.declared) or self.declared[col - 1] == m.group("exp"):
            return None
        self.declared[col - 1] = m.group("exp")
        return self.fetch_sql()

    def failed(self, message):
        """DETAIL for a value PostgreSQL could not parse as its column's type."""
        def cols(idx):
            return "; ".join(f'column {i + 1} ("{self.names[i]}"): DuckDB returns {self.duck_types[i]}, '
                             f'read as {self.declared[i]}' for i in idx)
        changed = [i for i, t in enumerate(self.declared) if t != self.pg_types[i]]
        # an array's element type is what its input function's message names ("date out of range")
        named = [i for i, t in enumerate(self.declared)
                 if re.search(r"(?<!\w)" + re.escape(t.removesuffix("[]")) + r"(?!\w)", message)]
        longest = max((len(self.declared[i].removesuffix("[]")) for i in named), default=0)
        named = [i for i in named if len(self.declared[i].removesuffix("[]")) == longest]
        named = [i for i in named if i in changed] or named
        suspects = named if len(named) == 1 else (named or changed or range(len(self.declared)))
        return ("In " if len(suspects) == 1 else "In one of: ") + cols(suspects) + "."


def mismatch_template(sample):
    """A pattern for PostgreSQL's 'Returned type X does not match expected
    type Y in column N.' in the server's language, from a sample of it made
    with known values (duckdb._mismatch_sample(): tsquery, macaddr8, 3)."""
    if not sample or sample.count("tsquery") != 1 or sample.count("macaddr8") != 1 or sample.count("3") != 1:
        return None
    pattern = re.escape(sample)
    for word, group in (("tsquery", r"(?P<ret>.+?)"), ("macaddr8", r"(?P<exp>.+?)"), ("3", r"(?P<col>\d+)")):
        pattern = pattern.replace(re.escape(word), group, 1)
    return re.compile(pattern, re.DOTALL)


BATCH = 10000       # rows fetched with the statement (Python values)
FETCH = 50000       # rows per later fetch


def _unique(names):
    """Column names PostgreSQL can take: at most 63 bytes, none twice (a
    repeated name gets _1, _2, ..., never one another column has)."""
    cut = [str(n).encode()[:63].decode(errors="ignore") or "column" for n in names]
    reserved, used, out = set(cut), set(), []
    for base in cut:
        name, k = base, 1
        while name in used or (name != base and name in reserved):
            name, k = f"{base[:56]}_{k}", k + 1
        used.add(name)
        out.append(name)
    return out


def start(plpy, engine, sql, cell_scrub=None, owner=None, fetch=True, params=None):
    """Run sql in the engine (its worker checks it first) with its bound
    parameters; a Pending result, or None if the statement returns no rows.
    fetch=False: only describe the result (a single query is not run)."""
    engine.forget_refusals()
    rid, desc, ahead = engine.query(plpy, sql, fetch, params)
    if desc is None:
        return None
    names, types = desc
    pg_types = [column_type(t)[0] for t in types]
    source = engine.runs(plpy, rid, ahead) if fetch else iter(())
    return Pending(source, types, pg_types, _unique([str(n) for n in names]), cell_scrub, owner)


# --- in the worker process (worker.py) ----------------------------------------------

class Result:
    """A statement's result in the worker: its description, then runs of rows
    formatted for PostgreSQL, one per request ('next')."""

    def __init__(self, names, types):
        self.names = list(names)
        self.types = [str(t) for t in types]
        self.con = None
        self._runs = iter(())
        self._back = None           # a run read ahead (push_back), given next

    def has_rows(self):
        return self._runs is not None

    def next_run(self):
        """(wire.TEXT, bytes) or (wire.ROWS, [row, ...]) or None at the end."""
        if self._back is not None:
            run, self._back = self._back, None
            return run
        return next(self._runs, None)

    def push_back(self, run):
        self._back = run

    def close(self):
        runs, self._runs = self._runs, None
        if hasattr(runs, "close"):
            runs.close()


def run_statement(duckdb, con, sql, stmts, fetch, params=None):
    """Run a checked statement on con (stmts: its statements, as DuckDB split
    them) with its bound parameters (params.values, or None: they bind the
    last statement, as DuckDB binds them): a Result, or None if it returns no rows.

    The rows of a query are formatted by DuckDB (row_sql over the query's
    relation) and read through the Arrow C stream: a single query, the last of
    several statements if it is one, or the materialized result of a last
    statement that returns rows (INSERT/UPDATE/DELETE ... RETURNING, EXPLAIN,
    CALL), whose relation DuckDB holds. Only the rest (a count of changed rows,
    what CREATE SECRET, ATTACH, ... return) is fetched as Python values and
    formatted here (py_row): con.sql() would drop a count."""
    if len(stmts) == 1 and stmts[0].type == duckdb.StatementType.SELECT:
        return _relation_result(duckdb, con, sql, fetch, params)
    *before, last = stmts
    for st in before:
        con.execute(st)
    if _returns_a_relation(duckdb, last):
        return _relation_result(duckdb, con, last, fetch, params)
    cur = con.execute(last) if params is None else con.execute(last, params)
    if not cur.description:
        return None
    result = Result([d[0] for d in cur.description], [d[1] for d in cur.description])
    if fetch:
        pg_types = [column_type(t)[0] for t in result.types]
        result._runs = _fetched_runs(cur.fetchmany(BATCH), cur.fetchmany, py_row(pg_types))
    return result


def _returns_a_relation(duckdb, st):
    """Whether con.sql(st) gives st's rows: a statement that returns rows and
    never a count of changed rows, or a DML statement with RETURNING."""
    kinds = st.expected_result_type
    if duckdb.ExpectedResultType.CHANGED_ROWS not in kinds:
        return duckdb.ExpectedResultType.QUERY_RESULT in kinds
    if st.type not in (duckdb.StatementType.INSERT, duckdb.StatementType.UPDATE, duckdb.StatementType.DELETE):
        return False
    from .statements import KEYWORD, tokens
    try:
        # DuckDB has no DML in a subquery: a RETURNING keyword is the statement's own.
        return any(t.kind == KEYWORD and t.text == "returning" for t in tokens(duckdb, st.query))
    except duckdb.Error:
        return False


def _relation_result(duckdb, con, statement, fetch, params=None):
    """con.sql(statement) as a Result whose rows DuckDB formats; None if it returns none."""
    try:
        rel = con.sql(statement) if params is None else con.sql(statement, params=params)
    except (duckdb.BinderException, duckdb.CatalogException):
        # not bound, so not run: DuckDB's error with its LINE
        con.execute(statement) if params is None else con.execute(statement, params)
        raise
    if rel is None:
        return None
    result = Result(rel.columns, rel.types)
    if fetch:
        result._runs = _single_query(duckdb, rel, result.types)
    return result


def _single_query(duckdb, rel, types):
    """Run a single query, its rows formatted by DuckDB, read through the Arrow
    C stream; the runs of its rows (each one copy out of DuckDB's buffer; rows
    end with ROW). The first batch is read here: an error of the query's is
    the statement's, before any row."""
    kinds = [column_type(t) for t in types]
    out = rel.project(f"concat({row_sql([k[1] for k in kinds], [k[0] for k in kinds])}, chr(2))")
    try:
        capsule = out.__arrow_c_stream__()     # runs the query
    except duckdb.Error as e:
        raise _duckdb_error(duckdb, str(e)) from None
    stream = arrowstream.Stream(capsule)
    if not stream.usable:       # a string layout we do not read (string views): rows one by one
        del stream
        out = rel.project(f"concat({row_sql([k[1] for k in kinds], [k[0] for k in kinds])}, chr(2))")
        return _fetched_runs(out.fetchmany(BATCH), out.fetchmany, _unterminated)
    return _arrow_runs(duckdb, stream, _next_batch(duckdb, stream))


def _arrow_runs(duckdb, stream, batch):
    from . import wire
    while batch is not None:
        try:
            for start, stop in batch.runs():
                raw = batch.raw(start, stop)
                if b"\x04" in raw:
                    yield wire.ROWS, [batch.row(i)[:-1] for i in range(start, stop)]
                else:
                    yield wire.TEXT, raw[:-1]
        finally:
            batch.release()
        batch = _next_batch(duckdb, stream)


def _fetched_runs(first, fetch, rowfmt):
    """Runs of a result fetched as Python values and formatted here (py_row)."""
    from . import wire
    chunk = first
    while chunk:
        rows = list(map(rowfmt, chunk))
        text = ROW.join(rows)
        if ALONE in text:
            yield wire.ROWS, rows
        else:
            yield wire.TEXT, text.encode("utf-8")
        if len(chunk) < BATCH:
            return
        chunk = fetch(FETCH)


def _duckdb_error(duckdb, message):
    """A message of DuckDB's ('IO Error: ...') as the DuckDB exception it names.
    A LINE excerpt would quote the formatting query (row_sql), not the caller's: left out."""
    message = message.split("\n\nLINE ", 1)[0]
    classes = {n.lower(): c for n, c in vars(duckdb).items()
               if n.endswith("Exception") and isinstance(c, type) and issubclass(c, duckdb.Error)}
    m = re.match(r"([A-Za-z ]+?) Error: ", message)
    cls = classes.get(m.group(1).replace(" ", "").lower() + "exception") if m else None
    return (cls or duckdb.Error)(message)


def _next_batch(duckdb, stream):
    try:
        return stream.next()
    except arrowstream.StreamError as e:
        raise _duckdb_error(duckdb, str(e)) from None


def render(con_result, limit=100):
    """A small text table of a result, for duckdb.raw_query()'s NOTICE."""
    desc = con_result.description
    if not desc:
        return "OK"
    rows = con_result.fetchmany(limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    head = [d[0] for d in desc]
    cells = [["NULL" if v is None else str(v) for v in r] for r in rows]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(head)]

    def line(vals):
        return " | ".join(v.ljust(w) for v, w in zip(vals, widths, strict=True)).rstrip()

    out = [line(head), "-+-".join("-" * w for w in widths)] + [line(c) for c in cells]
    out.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''}{', more not shown' if more else ''})")
    return "\n".join(out)
