"""duckdb.query() result transfer: every row, in order, with NULLs and
awkward text intact; declared column types; the ways without a column list."""

import psycopg
import pytest

from conftest import assert_clean_error


def test_bulk_path_across_chunks_keeps_order_nulls_and_text(db):
    rows = db.conn.execute("""
        SELECT * FROM duckdb.query($$
          SELECT range AS i,
                 CASE WHEN range % 7 = 0 THEN NULL ELSE 'v"' || range || E'\\\\,{}' END AS s,
                 range % 2 = 0 AS even
            FROM range(120000) ORDER BY range
        $$) AS t(i bigint, s text, even boolean)""").fetchall()
    assert len(rows) == 120000                                 # more than two 50,000-row chunks
    assert [r[0] for r in rows] == list(range(120000))         # order kept across chunks
    for i in (0, 1, 49999, 50000, 50001, 119999):
        expected = None if i % 7 == 0 else f'v"{i}\\,{{}}'      # one backslash
        assert rows[i] == (i, expected, i % 2 == 0)


def test_list_columns(db):
    rows = db.conn.execute("SELECT * FROM duckdb.query($$ SELECT range AS i, [range, NULL] AS l FROM range(3) $$) "
                           "AS t(i bigint, l bigint[])").fetchall()
    assert rows == [(0, [0, None]), (1, [1, None]), (2, [2, None])]


def test_empty_result(db):
    assert db.conn.execute("SELECT * FROM duckdb.query('SELECT 1 WHERE false') AS t(x integer)").fetchall() == []


# --- the text transfer: every value DuckDB returns, exactly ------------------------

MIXED = """
    SELECT range AS i,
           TIMESTAMP '2024-02-29 12:34:56.789012' + to_microseconds(range * 1000003) AS ts,
           CASE WHEN range % 5 = 0 THEN NULL ELSE (range * 1.25)::DECIMAL(18, 3) END AS d,
           CASE range % 6 WHEN 0 THEN NULL WHEN 1 THEN '' WHEN 2 THEN 'quote " and \\ backslash'
                WHEN 3 THEN 'line' || chr(10) || 'break, {braces}' WHEN 4 THEN 'ctl' || chr(1) || chr(2) || chr(3)
                ELSE 'NULL' END AS t,
           range * 0.5 AS f, DATE '2024-01-01' + range::INTEGER AS dt, range % 3 = 0 AS b
      FROM range(60500) ORDER BY range"""


def test_mixed_types_arrive_exactly_across_chunks(db):
    """Timestamps, decimals, text with quotes/backslashes/newlines/control
    characters, NULLs and empty strings: every value equals what DuckDB
    itself returns (compared with a DuckDB in the test process)."""
    import duckdb
    want = duckdb.connect().execute(MIXED).fetchall()
    got = db.conn.execute("SELECT * FROM duckdb.query(%s) AS t(i bigint, ts timestamp, d numeric, t text, "
                          "f double precision, dt date, b boolean)", (MIXED,)).fetchall()
    assert len(got) == len(want) == 60500
    for g, w in zip(got, want, strict=True):
        assert g[:3] == w[:3] and g[3] == w[3] and g[4:] == w[4:], (g, w)
    assert got[4][3] == "ctl\x01\x02\x03"      # a row holding the separators comes on its own
    assert got[5][3] == "NULL" and got[0][3] is None and got[1][3] == ""


def test_special_values(db):
    rows = db.conn.execute("""SELECT * FROM duckdb.query($$
        SELECT 'infinity'::DOUBLE, '-infinity'::DOUBLE, 'nan'::DOUBLE, -0.0::DOUBLE, 1e300::DOUBLE,
               'infinity'::DATE::VARCHAR, 'infinity'::TIMESTAMP::VARCHAR,
               170141183460469231731687303715884105727::HUGEINT,
               INTERVAL '1 year 2 months 3 days 04:05:06.5', ''::BLOB, '\\x00\\xff'::BLOB, []::VARCHAR[],
               ['a,b', '{x}', NULL, ' lead'], TIME '23:59:59.999999'
        $$) AS t(a float8, b float8, c float8, d float8, e float8, f text, g text, h numeric,
                 i interval, j bytea, k bytea, l text[], m text[], n time)""").fetchone()
    assert rows[0] == float("inf") and rows[1] == float("-inf") and rows[2] != rows[2]
    assert str(rows[3]) == "-0.0" and rows[4] == 1e300
    assert (rows[5], rows[6]) == ("infinity", "infinity")
    assert rows[7] == 170141183460469231731687303715884105727
    assert str(rows[8]) == "428 days, 4:05:06.500000"      # 1 year 2 months: 14 × 30 days, as psycopg reads it
    assert rows[9] == b"" and rows[10] == b"\x00\xff"
    assert rows[11] == [] and rows[12] == ["a,b", "{x}", None, " lead"]
    assert str(rows[13]) == "23:59:59.999999"


def test_statements_other_than_one_query(db):
    """INSERT ... RETURNING, CREATE TABLE AS (its count), EXPLAIN and several
    statements run once and return what DuckDB returns."""
    c = db.conn
    assert c.execute("SELECT * FROM duckdb.query($$ CREATE TABLE ins AS SELECT range AS i FROM range(4) $$) "
                     "AS t(n bigint)").fetchall() == [(4,)]
    assert c.execute("SELECT * FROM duckdb.query($$ INSERT INTO ins VALUES (10), (11) RETURNING i, 'x\"' || i $$) "
                     "AS t(i bigint, s text)").fetchall() == [(10, 'x"10'), (11, 'x"11')]
    assert c.execute("SELECT * FROM duckdb.query($$ SELECT count(*) FROM ins $$) AS t(n bigint)").fetchall() == [(6,)]
    assert c.execute("SELECT * FROM duckdb.query($$ DELETE FROM ins WHERE i > 9; SELECT count(*) FROM ins $$) "
                     "AS t(n bigint)").fetchall() == [(4,)]
    plan = c.execute("SELECT * FROM duckdb.query($$ EXPLAIN SELECT * FROM ins $$) AS t(k text, v text)").fetchall()
    assert plan and "SEQ_SCAN" in plan[0][1].replace(" ", "_").upper()


def test_a_bind_error_keeps_duckdbs_line(db):
    with pytest.raises(psycopg.Error) as e:
        db.conn.execute("SELECT * FROM duckdb.query($$ SELECT * FROM no_such_table $$) AS t(x int)")
    assert "no_such_table" in str(e.value) and "LINE 1" in (e.value.diag.message_detail or "")


# --- declared types ---------------------------------------------------------------

def test_declared_types_are_read_with_their_input_function(db):
    c = db.conn
    c.execute("SET TimeZone = 'Asia/Kolkata'")
    c.execute("CREATE DOMAIN small_positive AS integer CHECK (VALUE > 0)")
    row = c.execute("""SELECT * FROM duckdb.query($$
        SELECT 42 AS a, 9007199254740993::BIGINT AS b, count(*) AS c, TIMESTAMP '2024-02-29 12:00:00' AS d,
               1.005 AS e, 'abcdef' AS f, 7 AS g, [1, 2] AS h, {'k': 1} AS i, DATE '2024-01-02' AS j
          FROM range(3)
        $$) AS t(a bigint, b numeric, c text, d timestamptz, e numeric(10,2), f varchar(3), g small_positive,
                 h text, i text, j timestamp)""").fetchone()
    assert row[0] == 42 and row[1] == 9007199254740993 and row[2] == "3"
    assert row[3].isoformat() == "2024-02-29T12:00:00+05:30"        # in the session's TimeZone
    assert str(row[4]) == "1.01" and row[5] == "abc" and row[6] == 7
    assert row[7] == "{1,2}" and row[8] == '{"k":1}' and row[9].isoformat() == "2024-01-02T00:00:00"


@pytest.mark.parametrize("query, cols, sqlstate, column", [
    ("SELECT 1 AS id, 'forty-two' AS answer", "id integer, answer integer", "22P02", 'column 2 ("answer")'),
    ("SELECT 5000000000 AS big", "big integer", "22003", 'column 1 ("big")'),
    ("SELECT -1 AS n", "n small_positive_t", "23514", None),
    ("SELECT 'x' AS a, 'y' AS b", "a text, b date", "22007", 'column 2 ("b")'),
])
def test_a_value_that_does_not_convert_is_a_clear_error(db, query, cols, sqlstate, column):
    db.conn.execute("CREATE DOMAIN small_positive_t AS integer CHECK (VALUE > 0)")
    with pytest.raises(psycopg.Error) as e:
        db.conn.execute(f"SELECT * FROM duckdb.query($$ {query} $$) AS t({cols})")
    assert e.value.sqlstate == sqlstate, str(e.value)
    if column:
        assert column in e.value.diag.message_detail
    assert "DuckDB returns these columns" in e.value.diag.message_hint
    assert_clean_error(e.value)
    assert db.conn.execute("SELECT * FROM duckdb.query('SELECT 1') AS t(x int)").fetchall() == [(1,)]


def test_a_wrong_number_of_columns_keeps_the_hint(db):
    with pytest.raises(psycopg.Error) as e:
        db.conn.execute("SELECT * FROM duckdb.query($$ SELECT 1 AS a, 2 AS b $$) AS t(a int)")
    assert e.value.sqlstate == "42804"
    assert e.value.diag.message_hint == 'DuckDB returns these columns: AS t("a" integer, "b" integer)'


def test_create_table_as_with_declared_text(db):
    db.conn.execute("CREATE TABLE counted AS SELECT * FROM duckdb.query($$ SELECT count(*) AS n FROM range(5) $$) "
                    "AS t(n text)")
    assert db.conn.execute("SELECT n, pg_typeof(n)::text FROM counted").fetchall() == [("5", "text")]


def test_the_mismatch_message_is_read_in_any_language():
    from duckdb_secrets import query
    german = "Rückgabetyp tsquery stimmt nicht mit erwartetem Typ macaddr8 in Spalte 3 überein."
    t = query.mismatch_template(german)
    m = t.fullmatch("Rückgabetyp integer stimmt nicht mit erwartetem Typ character varying(10) in Spalte 2 überein.")
    assert (m.group("ret"), m.group("exp"), m.group("col")) == ("integer", "character varying(10)", "2")
    assert query.mismatch_template("something else entirely") is None


# --- without a column list -----------------------------------------------------------

def test_query_json_needs_no_column_list(db):
    rows = db.conn.execute("SELECT * FROM duckdb.query_json($$ SELECT 1 AS a, 'x' AS b, [1, NULL] AS l, "
                           "{'k': 2.5} AS s, NULL AS n, DATE '2024-01-02' AS d $$)").fetchall()
    assert rows == [({"a": 1, "b": "x", "l": [1, None], "s": {"k": 2.5}, "n": None, "d": "2024-01-02"},)]
    n = db.conn.execute("SELECT count(*) FROM duckdb.query_json('SELECT * FROM range(70000)')").fetchone()
    assert n == (70000,)


def test_create_query_view_infers_the_column_list(db):
    c = db.conn
    c.execute("SELECT duckdb.create_query_view('numbers', $$ SELECT range AS n, 'v' || range AS v, 1 AS n "
              "FROM range(3) $$)")
    assert c.execute("SELECT * FROM numbers ORDER BY n").fetchall() == [(0, "v0", 1), (1, "v1", 1), (2, "v2", 1)]
    cols = c.execute("SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                     "WHERE attrelid = 'numbers'::regclass AND attnum > 0 ORDER BY attnum").fetchall()
    assert cols == [("n", "bigint"), ("v", "text"), ("n_1", "integer")]
    assert c.execute("SELECT relpersistence FROM pg_class WHERE oid = 'numbers'::regclass").fetchone() == ("t",)


def test_query_json_and_views_need_the_query_grant(db):
    role = db.role("nogrant")
    c = db.connect(role)
    for sql in ("SELECT * FROM duckdb.query_json('SELECT 1')", "SELECT duckdb.create_query_view('v', 'SELECT 1')"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute(sql)


# --- found by a red team (0.5.0) -------------------------------------------------------

def test_a_value_that_does_not_convert_never_shows_the_roles_secret(db, world, s3, log_since):
    """The conversion error quotes the value: the role's own secret in it is
    masked, in the error and in the server log (reversed in the query text, so
    that only DuckDB's result holds it)."""
    alice = db.connect(world["alice"])
    backwards = s3.secret[::-1]
    with pytest.raises(psycopg.Error) as e:
        alice.execute(f"SELECT * FROM duckdb.query($$ SELECT reverse('{backwards}') AS note $$) AS t(note int)")
    assert e.value.sqlstate == "22P02"
    assert "********" in e.value.diag.message_primary
    assert_clean_error(e.value, s3.secret)
    # A column named by a value: in the HINT's column list, masked too.
    with pytest.raises(psycopg.Error) as e:
        alice.execute(f"SELECT * FROM duckdb.query($$ PIVOT (SELECT reverse('{backwards}') AS k, 1 AS v) ON k "
                      "USING first(v) $$) AS t(a int, b int, c int)")
    assert e.value.sqlstate == "42804"
    assert_clean_error(e.value, s3.secret)
    assert s3.secret not in log_since()


def test_a_nul_character_is_an_error_not_a_shorter_result(db):
    for query, column in (("SELECT CASE WHEN range = 5 THEN 'a' || chr(0) || 'z' ELSE 'b' END AS x, range AS n "
                           "FROM range(100)", 'column 1 ("x")'),
                          ("SELECT range AS n, CASE WHEN range = 7 THEN chr(0) || chr(1) ELSE 'b' END AS x "
                           "FROM range(100)", "a column")):
        with pytest.raises(psycopg.Error) as e:
            db.conn.execute(f"SELECT count(*) FROM duckdb.query($$ {query} $$) AS t(a text, b text)")
        assert e.value.sqlstate == "22021", str(e.value)
        assert column in e.value.diag.message_primary
    assert db.conn.execute("SELECT * FROM duckdb.query('SELECT 1') AS t(x int)").fetchall() == [(1,)]


def test_repeated_column_names_never_take_another_columns_name(db):
    row = db.conn.execute("SELECT * FROM duckdb.query_json($$ SELECT 1 AS a, 2 AS a, 3 AS a_1, 4 AS a $$)").fetchone()
    assert row[0] == {"a": 1, "a_2": 2, "a_1": 3, "a_3": 4}
