"""Every DuckDB type a column can hold reads as its documented PostgreSQL type.

DuckDB's test_all_types() (a min row, a max row and a row of NULLs per type),
each scalar of it in a list with a NULL, and a few values it lacks (JSON,
infinities, BC dates, nanoseconds, non-finite floats and blobs inside nested
values) go through every way a result reaches PostgreSQL: duckdb.query with the
column list duckdb._query_columns gives (the HINT's), duckdb.query_json,
duckdb.create_query_view, the last of several statements and DELETE ...
RETURNING (run_statement's other branch). Each must give the text written
here, or, for a value PostgreSQL cannot hold, the error written here naming
the column. docs/reference.md's type table is checked against the same table.
"""

import os
import re
import sys

import psycopg
import pytest
from psycopg import sql

from conftest import assert_clean_error

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Err:
    """A value PostgreSQL cannot hold: the error's SQLSTATE."""

    def __init__(self, sqlstate):
        self.sqlstate = sqlstate

    def __repr__(self):
        return f"Err({self.sqlstate})"


OUT_OF_RANGE = Err("22008")     # datetime_field_overflow: date/timestamp out of range
NUL = Err("22021")              # character_not_in_repertoire: text cannot hold \0

DBL_MAX = str(int(sys.float_info.max))          # BIGNUM's bounds in test_all_types()
GEOMETRY_MAX = ("GEOMETRYCOLLECTION (POINT (1 2), POINT EMPTY, LINESTRING (0 0, 1 1), LINESTRING EMPTY, "
                "POLYGON ((0 0, 0 1, 1 1, 1 0, 0 0)), POLYGON EMPTY, MULTIPOINT (5 6, EMPTY), "
                "MULTILINESTRING ((0 0, 1 1), EMPTY, (2 2, 3 3), EMPTY), MULTILINESTRING EMPTY, "
                "MULTIPOLYGON (((0 0, 0 1, 1 1, 1 0, 0 0)), EMPTY, ((0 0, 0 2, 2 2, 2 0, 0 0)), EMPTY), "
                "MULTIPOLYGON EMPTY, GEOMETRYCOLLECTION (POINT (5 6)), GEOMETRYCOLLECTION EMPTY)")
DUCKS = "🦆🦆🦆🦆🦆🦆"

# test_all_types(): column -> (DuckDB type, PostgreSQL type, text of the min row, of the max row);
# the third row is NULL in every column. Text is PostgreSQL's output (TimeZone UTC).
ALL_TYPES = {
    "bool": ("BOOLEAN", "boolean", "false", "true"),
    "tinyint": ("TINYINT", "smallint", "-128", "127"),
    "smallint": ("SMALLINT", "smallint", "-32768", "32767"),
    "int": ("INTEGER", "integer", "-2147483648", "2147483647"),
    "bigint": ("BIGINT", "bigint", "-9223372036854775808", "9223372036854775807"),
    "hugeint": ("HUGEINT", "numeric", "-170141183460469231731687303715884105728",
                "170141183460469231731687303715884105727"),
    "uhugeint": ("UHUGEINT", "numeric", "0", "340282366920938463463374607431768211455"),
    "utinyint": ("UTINYINT", "smallint", "0", "255"),
    "usmallint": ("USMALLINT", "integer", "0", "65535"),
    "uint": ("UINTEGER", "bigint", "0", "4294967295"),
    "ubigint": ("UBIGINT", "numeric", "0", "18446744073709551615"),
    "bignum": ("BIGNUM", "numeric", "-" + DBL_MAX, DBL_MAX),
    # 5877642 BC and 5881580 AD: past PostgreSQL's dates (4713 BC - 5874897 AD)
    "date": ("DATE", "date", OUT_OF_RANGE, OUT_OF_RANGE),
    "time": ("TIME", "time", "00:00:00", "24:00:00"),
    # 290309 BC: before PostgreSQL's timestamps (4713 BC); the max (294247 AD) is within
    "timestamp": ("TIMESTAMP", "timestamp", OUT_OF_RANGE, "294247-01-10 04:00:54.775806"),
    "timestamp_s": ("TIMESTAMP_S", "timestamp", OUT_OF_RANGE, "294247-01-10 04:00:54"),
    "timestamp_ms": ("TIMESTAMP_MS", "timestamp", OUT_OF_RANGE, "294247-01-10 04:00:54.775"),
    # ...54.854775806: rounded to the microsecond
    "timestamp_ns": ("TIMESTAMP_NS", "timestamp", "1677-09-22 00:00:00", "2262-04-11 23:47:16.854776"),
    "time_tz": ("TIME WITH TIME ZONE", "timetz", "00:00:00+15:59:59", "24:00:00-15:59:59"),
    "timestamp_tz": ("TIMESTAMP WITH TIME ZONE", "timestamptz", OUT_OF_RANGE, "294247-01-10 04:00:54.776806+00"),
    "float": ("FLOAT", "real", "-3.4028235e+38", "3.4028235e+38"),
    "double": ("DOUBLE", "double precision", "-1.7976931348623157e+308", "1.7976931348623157e+308"),
    "dec_4_1": ("DECIMAL(4,1)", "numeric", "-999.9", "999.9"),
    "dec_9_4": ("DECIMAL(9,4)", "numeric", "-99999.9999", "99999.9999"),
    "dec_18_6": ("DECIMAL(18,6)", "numeric", "-999999999999.999999", "999999999999.999999"),
    "dec38_10": ("DECIMAL(38,10)", "numeric", "-9999999999999999999999999999.9999999999",
                 "9999999999999999999999999999.9999999999"),
    "uuid": ("UUID", "uuid", "00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff"),
    "interval": ("INTERVAL", "interval", "00:00:00", "83 years 3 mons 999 days 00:16:39.999999"),
    "varchar": ("VARCHAR", "text", DUCKS, NUL),         # 'goo\0se'
    "blob": ("BLOB", "bytea", "\\x746869736973616c6f6e67626c6f6200776974686e756c6c6279746573", "\\x00000061"),
    "bit": ("BIT", "text", "0010001001011100010101011010111", "10101"),
    "small_enum": ("ENUM", "text", "DUCK_DUCK_ENUM", "GOOSE"),
    "medium_enum": ("ENUM", "text", "enum_0", "enum_299"),
    "large_enum": ("ENUM", "text", "enum_0", "enum_69999"),
    "int_array": ("INTEGER[]", "integer[]", "{}", "{42,999,NULL,NULL,-42}"),
    "double_array": ("DOUBLE[]", "double precision[]", "{}", "{42,NaN,Infinity,-Infinity,NULL,-42}"),
    "date_array": ("DATE[]", "date[]", "{}", "{1970-01-01,infinity,-infinity,NULL,2022-05-12}"),
    "timestamp_array": ("TIMESTAMP[]", "timestamp[]", "{}",
                        '{"1970-01-01 00:00:00",infinity,-infinity,NULL,"2022-05-12 16:23:45"}'),
    "timestamptz_array": ("TIMESTAMP WITH TIME ZONE[]", "timestamptz[]", "{}",
                          '{"1970-01-01 00:00:00+00",infinity,-infinity,NULL,"2022-05-12 23:23:45+00"}'),
    "varchar_array": ("VARCHAR[]", "text[]", "{}", '{' + DUCKS + ',goose,NULL,""}'),
    "nested_int_array": ("INTEGER[][]", "jsonb", "[]",
                         "[[], [42, 999, null, null, -42], null, [], [42, 999, null, null, -42]]"),
    "struct": ("STRUCT", "jsonb", '{"a": null, "b": null}', '{"a": 42, "b": "' + DUCKS + '"}'),
    "struct_of_arrays": ("STRUCT", "jsonb", '{"a": null, "b": null}',
                         '{"a": [42, 999, null, null, -42], "b": ["' + DUCKS + '", "goose", null, ""]}'),
    "array_of_structs": ("STRUCT[]", "jsonb", "[]",
                         '[{"a": null, "b": null}, {"a": 42, "b": "' + DUCKS + '"}, null]'),
    "map": ("MAP", "jsonb", "{}", '{"key1": "' + DUCKS + '", "key2": "goose"}'),
    "union": ("UNION", "jsonb", '{"name": "Frank"}', '{"age": 5}'),
    "fixed_int_array": ("INTEGER[3]", "integer[]", "{NULL,2,3}", "{4,5,6}"),
    "fixed_varchar_array": ("VARCHAR[3]", "text[]", "{a,NULL,c}", "{d,e,f}"),
    # an inner NULL: not a rectangular PostgreSQL array
    "fixed_nested_int_array": ("INTEGER[3][3]", "jsonb", "[[null, 2, 3], null, [null, 2, 3]]",
                               "[[4, 5, 6], [null, 2, 3], [4, 5, 6]]"),
    "fixed_nested_varchar_array": ("VARCHAR[3][3]", "jsonb", '[["a", null, "c"], null, ["a", null, "c"]]',
                                   '[["d", "e", "f"], ["a", null, "c"], ["d", "e", "f"]]'),
    "fixed_struct_array": ("STRUCT[3]", "jsonb",
                           '[{"a": null, "b": null}, {"a": 42, "b": "' + DUCKS + '"}, {"a": null, "b": null}]',
                           '[{"a": 42, "b": "' + DUCKS + '"}, {"a": null, "b": null}, {"a": 42, "b": "' + DUCKS
                           + '"}]'),
    "struct_of_fixed_array": ("STRUCT", "jsonb", '{"a": [null, 2, 3], "b": ["a", null, "c"]}',
                              '{"a": [4, 5, 6], "b": ["d", "e", "f"]}'),
    "fixed_array_of_int_list": ("INTEGER[][3]", "jsonb", "[[], [42, 999, null, null, -42], []]",
                                "[[42, 999, null, null, -42], [], [42, 999, null, null, -42]]"),
    "list_of_fixed_int_array": ("INTEGER[3][]", "jsonb", "[[null, 2, 3], [4, 5, 6], [null, 2, 3]]",
                                "[[4, 5, 6], [null, 2, 3], [4, 5, 6]]"),
    "time_ns": ("TIME_NS", "time", "00:00:00", "24:00:00"),
    "geometry": ("GEOMETRY", "text", "POINT EMPTY", GEOMETRY_MAX),        # as WKT
}

# Values test_all_types() lacks: name -> (DuckDB expression for the min row, for the max row,
# DuckDB type, PostgreSQL type, text of the min row, of the max row).
EXTRA = {
    "json": ("'[]'::JSON", """'{"k": [1, 2.5, "é"], "n": null}'::JSON""", "JSON", "json",
             "[]", '{"k": [1, 2.5, "é"], "n": null}'),
    "date_inf": ("DATE '-infinity'", "DATE 'infinity'", "DATE", "date", "-infinity", "infinity"),
    "date_bc": ("DATE '4714-11-24 (BC)'", "DATE '5874897-12-31'", "DATE", "date",
                "4714-11-24 BC", "5874897-12-31"),
    "date_past": ("DATE '4714-11-23 (BC)'", "DATE '5874898-01-01'", "DATE", "date", OUT_OF_RANGE, OUT_OF_RANGE),
    "ts_bc": ("TIMESTAMP '4714-11-24 (BC) 00:00:00'", "TIMESTAMP 'infinity'", "TIMESTAMP", "timestamp",
              "4714-11-24 00:00:00 BC", "infinity"),
    "ts_before": ("TIMESTAMP '4714-11-23 (BC) 23:59:59'", "TIMESTAMP '-infinity'", "TIMESTAMP", "timestamp",
                  OUT_OF_RANGE, "-infinity"),
    "ts_ns": ("TIMESTAMP_NS '2024-01-01 00:00:00.123456400'", "TIMESTAMP_NS '2024-01-01 23:59:59.999999501'",
              "TIMESTAMP_NS", "timestamp", "2024-01-01 00:00:00.123456", "2024-01-02 00:00:00"),
    "tstz_inf": ("TIMESTAMPTZ '-infinity'", "TIMESTAMPTZ '2024-02-29 12:00:00.5+05:30'",
                 "TIMESTAMP WITH TIME ZONE", "timestamptz", "-infinity", "2024-02-29 06:30:00.5+00"),
    "time_ns_round": ("TIME_NS '12:00:00.0000004'", "TIME_NS '12:00:00.9999996'", "TIME_NS", "time",
                      "12:00:00", "12:00:01"),
    "interval_neg": ("INTERVAL '-1 year -2 days -00:00:01.5'", "INTERVAL '1 month 1 microsecond'", "INTERVAL",
                     "interval", "-1 years -2 days -00:00:01.5", "1 mon 00:00:00.000001"),
    "real_special": ("'-inf'::FLOAT", "'nan'::FLOAT", "FLOAT", "real", "-Infinity", "NaN"),
    "text_awkward": ("'NULL'", """'a,{b}"c\\d' || chr(10) || ' '""", "VARCHAR", "text", "NULL", 'a,{b}"c\\d\n '),
    # nested: values as DuckDB writes them (to_json); non-finite floats as strings, as to_jsonb writes them
    "nested_floats": ("[[1.5::DOUBLE, 'nan', '-inf']]", "[[], NULL]::DOUBLE[][]", "DOUBLE[][]", "jsonb",
                      '[[1.5, "NaN", "-Infinity"]]', "[[], null]"),
    "struct_floats": ("""[{'f': 'inf'::FLOAT, 's': 'x",NaN,"y'}]""", "[{'f': 2.5::FLOAT, 's': 'NaN'}]",
                      "STRUCT[]", "jsonb", '[{"f": "Infinity", "s": "x\\",NaN,\\"y"}]', '[{"f": 2.5, "s": "NaN"}]'),
    "nested_scalars": ("{'b': unhex('00415c'), 'i': INTERVAL '1 month', 'd': DATE '5877642-06-25 (BC)', "
                       "'t': TIMESTAMP_NS '2024-01-01 00:00:00.123456789', 'h': 1::HUGEINT}",
                       "{'b': NULL, 'i': NULL, 'd': DATE 'infinity', 't': NULL, 'h': -1::HUGEINT}", "STRUCT", "jsonb",
                       '{"b": "\\\\x00A\\\\x5C", "d": "5877642-06-25 (BC)", "h": 1, "i": "1 month", '
                       '"t": "2024-01-01 00:00:00.123456789"}',
                       '{"b": null, "d": "infinity", "h": -1, "i": null, "t": null}'),
    "int_map": ("MAP {1: 'a', 2: NULL}", "CAST(MAP {} AS MAP(INTEGER, VARCHAR))", "MAP", "jsonb",
                '{"1": "a", "2": null}', "{}"),
}

NESTED = ("STRUCT", "MAP", "UNION")


def _array_element(text):
    """text as an element of PostgreSQL's array output (array_out's quoting)."""
    if text == "" or text.upper() == "NULL" or re.search(r'[{},"\\\s]', text):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def _as_list(value):
    """The expected text of [value, NULL] from the expected text of value."""
    if value is None or isinstance(value, Err):
        return value
    value = {"true": "t", "false": "f"}.get(value, value)      # boolean's text in an array
    return "{" + _array_element(value) + ",NULL}"


def _columns():
    """name -> (DuckDB expression, DuckDB type, PostgreSQL type, [min, max, NULL row])."""
    out = {}
    for name, (duck, pg, lo, hi) in ALL_TYPES.items():
        out[name] = (f'"{name}"', duck, pg, [lo, hi, None])
        if not duck.startswith(NESTED) and not duck.endswith("]"):
            # the scalar in a list, with a NULL element (a NULL list in the NULL row)
            out[name + "_list"] = (f'CASE WHEN bool IS NOT NULL THEN ["{name}", NULL] END', duck + "[]", pg + "[]",
                                   [_as_list(lo), _as_list(hi), None])
    for name, (lo_sql, hi_sql, duck, pg, lo, hi) in EXTRA.items():
        out[name] = (f"CASE WHEN bool THEN {hi_sql} WHEN NOT bool THEN {lo_sql} END", duck, pg, [lo, hi, None])
        if not duck.startswith(NESTED) and not duck.endswith("]"):
            out[name + "_list"] = (f"CASE WHEN bool THEN [{hi_sql}, NULL] WHEN NOT bool THEN [{lo_sql}, NULL] END",
                                   duck + "[]", pg + "[]", [_as_list(lo), _as_list(hi), None])
    return out


COLUMNS = _columns()


def _duckdb_sql(name, row):
    """DuckDB SQL: one row (0 min, 1 max, 2 NULL) of the column."""
    return f'SELECT {COLUMNS[name][0]} AS "{name}" FROM test_all_types() LIMIT 1 OFFSET {row}'


# --- the paths ---------------------------------------------------------------------------

def _coldef(conn, query):
    return conn.execute("SELECT (duckdb._query_columns(%s))[5]", (query,)).fetchone()[0]


def _read(conn, path, name, row):
    """The column's text in that row through one path; the error, if any."""
    query = _duckdb_sql(name, row)
    pg = COLUMNS[name][2]
    col = sql.Identifier(name)
    try:
        if path == "query":
            cols = _coldef(conn, query)
            assert cols == f'"{name}" {pg}', cols        # the declared list DuckDB's result has
            stmt = sql.SQL("SELECT {}::text FROM duckdb.query({}) AS t(" + cols + ")").format(col, query)
        elif path == "statements":          # the last of several statements
            stmt = sql.SQL("SELECT {}::text FROM duckdb.query({}) AS t({} " + pg + ")").format(
                col, "SELECT 1; " + query, col)
        elif path == "returning":           # DELETE ... RETURNING: a materialized result
            stmt = sql.SQL("SELECT {}::text FROM duckdb.query({}) AS t({} " + pg + ")").format(
                col, f"CREATE OR REPLACE TEMP TABLE types_r AS {query}; DELETE FROM types_r RETURNING *", col)
        elif path == "json":
            # the same value as PostgreSQL's to_jsonb of the expected text, read as the type
            want = COLUMNS[name][3][row]
            if isinstance(want, Err):
                stmt = sql.SQL("SELECT j::text FROM duckdb.query_json({}) AS j").format(query)
            else:
                same = (sql.SQL("'null'::jsonb") if want is None
                        else sql.SQL("pg_catalog.to_jsonb({}::" + pg + ")").format(want))
                stmt = sql.SQL("SELECT CASE WHEN j -> {} = {} THEN {} ELSE j::text END "
                               "FROM duckdb.query_json({}) AS j").format(name, same, want, query)
        elif path == "view":
            conn.execute("DROP VIEW IF EXISTS types_v")
            conn.execute("SELECT duckdb.create_query_view('types_v', %s)", (query,))
            typ = conn.execute("SELECT atttypid = %s::regtype FROM pg_attribute "
                               "WHERE attrelid = 'types_v'::regclass AND attnum = 1", (pg,)).fetchone()[0]
            assert typ, (name, pg)
            stmt = sql.SQL("SELECT {}::text FROM types_v").format(col)
        rows = conn.execute(stmt).fetchall()
    except psycopg.Error as e:
        return e
    assert len(rows) == 1, rows
    return rows[0][0]


PATHS = ["query", "json", "view", "statements", "returning"]


@pytest.mark.parametrize("path", PATHS)
def test_every_type_reads_as_documented(db, path):
    db.conn.execute("SET TimeZone = 'UTC'")
    wrong = []
    for name, (_, duck, pg, want) in COLUMNS.items():
        for row, expected in enumerate(want):
            got = _read(db.conn, path, name, row)
            if isinstance(expected, Err):
                ok = (isinstance(got, psycopg.Error) and got.sqlstate == expected.sqlstate
                      and f'column 1 ("{name}")' in f"{got.diag.message_primary} {got.diag.message_detail}")
                if isinstance(got, psycopg.Error):
                    assert_clean_error(got)
            else:
                ok = got == expected
            if not ok:
                if isinstance(got, psycopg.Error):
                    got = f"{got.sqlstate} {got.diag.message_primary} | {got.diag.message_detail}"
                wrong.append(f"{name} ({duck} -> {pg}) row {row}: expected {expected!r}, got {got!r}")
    assert not wrong, "\n".join(wrong)


def test_the_hint_gives_the_column_list(db):
    query = "SELECT * FROM test_all_types()"
    with pytest.raises(psycopg.Error) as e:
        db.conn.execute(sql.SQL("SELECT * FROM duckdb.query({}) AS t(x int)").format(query))
    assert e.value.sqlstate == "42804"
    cols = _coldef(db.conn, query)
    assert e.value.diag.message_hint == f"DuckDB returns these columns: AS t({cols})"
    assert cols == ", ".join(f'"{n}" {pg}' for n, (_, pg, _, _) in ALL_TYPES.items())


def test_a_whole_row_of_every_type_reads_and_a_bad_value_names_its_column(db):
    """All columns at once (the max row, without the two PostgreSQL cannot hold)."""
    db.conn.execute("SET TimeZone = 'UTC'")
    names = [n for n, (_, _, _, hi) in ALL_TYPES.items() if not isinstance(hi, Err)]
    query = "SELECT " + ", ".join(f'"{n}"' for n in names) + " FROM test_all_types() LIMIT 1 OFFSET 1"
    cols = _coldef(db.conn, query)
    row = db.conn.execute(sql.SQL("SELECT " + ", ".join(f'"{n}"::text' for n in names)
                                  + " FROM duckdb.query({}) AS t(" + cols + ")").format(query)).fetchone()
    assert list(row) == [ALL_TYPES[n][3] for n in names]
    with pytest.raises(psycopg.Error) as e:
        db.conn.execute(sql.SQL("SELECT * FROM duckdb.query({}) AS t(a integer, d date)").format(
            "SELECT 1 AS a, DATE '5881580-07-10' AS d"))
    assert e.value.sqlstate == "22008"
    assert e.value.diag.message_detail == 'In column 2 ("d"): DuckDB returns DATE, read as date.'
    assert_clean_error(e.value)


def test_a_list_of_decimals_reads_as_numeric_array(db):
    """The case of the issue: DECIMAL(4,1)[] was read as numeric."""
    query = "SELECT [1.5::DECIMAL(4,1), NULL, -999.9] AS ld"
    assert _coldef(db.conn, query) == '"ld" numeric[]'
    rows = db.conn.execute(sql.SQL("SELECT * FROM duckdb.query({}) AS t(ld numeric[])").format(query)).fetchall()
    assert [[str(x) if x is not None else None for x in rows[0][0]]] == [["1.5", None, "-999.9"]]
    assert db.conn.execute(sql.SQL("SELECT * FROM duckdb.query_json({})").format(query)).fetchone() == (
        {"ld": [1.5, None, -999.9]},)


# --- docs/reference.md's table ----------------------------------------------------------

def _doc_table():
    """docs/reference.md's type table: each `DuckDB` name of a row -> the row's `PostgreSQL` type."""
    with open(os.path.join(ROOT, "docs", "reference.md"), encoding="utf-8") as f:
        text = f.read()
    start = text.index("| DuckDB | PostgreSQL |")
    table = {}
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        left, right = line.strip().strip("|").split("|")
        pg = re.findall(r"`([^`]+)`", right)[0]
        for duck in re.findall(r"`([^`]+)`", left):
            table[duck] = pg
    return table


def _documented(duck, table):
    """What the table says a DuckDB type reads as."""
    m = re.fullmatch(r"(.+)\[\d*\]", duck)
    if m:
        elem, kind = m.group(1), ("[]" if duck.endswith("[]") else "[n]")
        if elem.startswith(NESTED) or elem.endswith("]"):
            return table["X" + kind]
        assert table["S" + kind] == "s[]", table["S" + kind]
        return _documented(elem, table) + "[]"
    if duck.startswith(NESTED):
        return table[duck.split("(")[0] + "(...)"]
    return table[re.sub(r"^DECIMAL\(\d+,\d+\)$", "DECIMAL(p,s)", duck).replace("ENUM", "ENUM(...)")]


@pytest.mark.inprocess
def test_the_documented_mapping_is_what_reads():
    table = _doc_table()
    wrong = [f"{name}: {duck} is documented as {_documented(duck, table)}, reads as {pg}"
             for name, (_, duck, pg, _) in COLUMNS.items() if _documented(duck, table) != pg]
    assert not wrong, "\n".join(wrong)


@pytest.mark.inprocess
def test_the_duckdb_types_are_test_all_types():
    """ALL_TYPES holds every column of test_all_types(), with its type."""
    import duckdb
    rel = duckdb.connect().sql("SELECT * FROM test_all_types()")
    got = {}
    for n, t in zip(rel.columns, rel.types, strict=True):
        t = str(t)
        t = re.sub(r"^(STRUCT|MAP|UNION|ENUM)\(.*\)(\[\d*\])?$", r"\1\2", t)
        got[n] = t
    assert got == {n: v[0] for n, v in ALL_TYPES.items()}
    from duckdb_secrets import query
    assert {n: query.column_type(t)[0] for n, t in zip(rel.columns, rel.types, strict=True)} == {
        n: v[1] for n, v in ALL_TYPES.items()}


# --- the results formatted in Python ---------------------------------------------------------

# Where DuckDB's Python values lose what its text keeps (py_text's docstring). Only results that
# are no relation take that way (a count of changed rows, CREATE SECRET's success, ...): every
# query and every RETURNING is formatted by DuckDB, as the tests above read.
PYTHON_LOSES = {
    "timestamp_ns": "nanoseconds cut, not rounded",
    "timestamp_tz": "DuckDB's Python value of the max differs from its text by a millisecond",
    "interval": "months and years as 30-day months",
    "date_array": "infinity as 9999-12-31", "timestamp_array": "infinity as 9999-12-31",
    "timestamptz_array": "infinity as 9999-12-31, no time zone",
    "union": "the member's value without its tag",
    "geometry": "WKB bytes, not WKT",
}


@pytest.mark.inprocess
def test_python_formatting_agrees_with_duckdbs_but_where_documented():
    """py_text (the worker's Python) and column_type (DuckDB's SQL) give the same
    value for every column of test_all_types() outside PYTHON_LOSES: the same text,
    or text PostgreSQL reads as the same value (JSON spacing, hex case, float digits)."""
    import importlib.util
    import json

    import duckdb

    from duckdb_secrets import query
    con = duckdb.connect()
    rel = con.sql("SELECT * FROM test_all_types()")
    # DuckDB needs pytz for a TIMESTAMP WITH TIME ZONE's Python value (the engine has it)
    skipped = set() if importlib.util.find_spec("pytz") else {"timestamp_tz", "timestamptz_array"}
    differ = set()
    for name, t in zip(rel.columns, rel.types, strict=True):
        if name in skipped:
            continue
        pg, fmt = query.column_type(t)
        source = f'SELECT "{name}" FROM test_all_types()'
        by_duckdb = [r[0] for r in con.sql(f'SELECT {fmt("#1")} FROM ({source})').fetchall()]
        by_python = [query.py_text(r[0], pg) for r in con.execute(source).fetchall()]
        for d, p in zip(by_duckdb, by_python, strict=True):
            if pg == "jsonb" and d is not None and p is not None:
                d, p = json.loads(d), json.loads(p)
            elif pg == "bytea" and d is not None:
                d = d.lower()
            elif pg == "real" and d is not None:
                d, p = struct_float(d), struct_float(p)
            if d != p:
                differ.add(name)
    assert differ == set(PYTHON_LOSES) - skipped


def struct_float(text):
    """text as a 4-byte float, as PostgreSQL's real reads it."""
    import struct
    return struct.unpack("f", struct.pack("f", float(text)))[0]
