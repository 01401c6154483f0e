"""Bound parameters (duckdb.query(query, params), duckdb.query_json(query,
params)) and the one GRANT for the query surface (the duckdb_query role)."""

import json

import psycopg
import pytest

from conftest import assert_clean_error, s3_mapping_sql, s3_server_sql


def qp(conn, text, params, cols="x text"):
    return conn.execute(f"SELECT * FROM duckdb.query(%s, %s::jsonb) AS t({cols})",
                        (text, None if params is None else json.dumps(params))).fetchall()


def _s3_reader(db, s3, server):
    """A role in duckdb_query with USAGE on its own S3 server (scope s3://bucket) and mapping."""
    role = db.role(server.split("_")[0])
    db.conn.execute(s3_server_sql(server, s3, scope="s3://bucket"))
    db.conn.execute(s3_mapping_sql(server, s3, f'"{role}"'))
    db.conn.execute(f'GRANT USAGE ON FOREIGN SERVER {server} TO "{role}"; GRANT duckdb_query TO "{role}"')
    return role, db.connect(role)


def test_values_bind_with_their_documented_types(db):
    rows = qp(db.conn, "SELECT $1, $2, $3, $4, $5, $6, $7, typeof($1), typeof($2), typeof($3), typeof($4), "
                       "typeof($6), typeof($7), typeof($8), $8",
              [1, "two", 3.5, True, None, {"k": [1, 2]}, [1, "x"], 2 ** 100],
              "a bigint, b text, c float8, d boolean, e int, f json, g json, t1 text, t2 text, t3 text, t4 text, "
              "t6 text, t7 text, t8 text, h numeric")
    a, b, c, d, e, f, g, *types, h = rows[0]
    assert (a, b, c, d, e, f, g) == (1, "two", 3.5, True, None, {"k": [1, 2]}, [1, "x"])
    assert types == ["BIGINT", "VARCHAR", "DOUBLE", "BOOLEAN", "JSON", "JSON", "HUGEINT"]
    assert h == 2 ** 100


def test_named_parameters_and_exact_decimals_cast_in_the_query(db):
    rows = qp(db.conn, "SELECT $amount::DECIMAL(12,2) AS amount, $who AS who", {"amount": "12.345", "who": "ann"},
              "amount numeric, who text")
    assert [(str(r[0]), r[1]) for r in rows] == [("12.35", "ann")]


def test_a_value_is_never_sql_text(db):
    hostile = "x'); SELECT 'pwned' AS x; --"
    assert qp(db.conn, "SELECT $1 AS x", [hostile]) == [(hostile,)]
    # a value compared, not spliced: the OR never happens
    rows = qp(db.conn, "SELECT count(*)::VARCHAR FROM range(10) WHERE range::VARCHAR = $1", ["1' OR '1'='1"])
    assert rows == [("0",)]


def test_query_json_takes_parameters(db):
    rows = db.conn.execute("SELECT * FROM duckdb.query_json('SELECT $1 AS a, $2 AS b', %s::jsonb)",
                           (json.dumps(["it's", {"n": 1}]),)).fetchall()
    assert rows == [({"a": "it's", "b": {"n": 1}},)]


def test_one_argument_forms_and_null_params_stay(db):
    assert db.conn.execute("SELECT * FROM duckdb.query('SELECT 42') AS t(x int)").fetchall() == [(42,)]
    assert qp(db.conn, "SELECT 42", None, "x int") == [(42,)]


def test_statements_that_are_not_a_single_query_bind_too(db):
    rows = qp(db.conn, "CREATE TEMP TABLE pt(a BIGINT, b VARCHAR); "
                       "INSERT INTO pt VALUES ($1, $2) RETURNING a, b", [7, "seven"], "a bigint, b text")
    assert rows == [(7, "seven")]


@pytest.mark.parametrize("text, params, sqlstate, words", [
    ("SELECT $1, $2", [1], "42P02", "no value given for parameter $2"),
    ("SELECT $1", [1, 2], "22023", "the query has no parameter $2"),
    ("SELECT $a", {"b": 1}, "42P02", "no value given for parameter $a"),
    ("SELECT $1", 5, "22023", "must be a JSON array or object"),
    ("SELECT $1", "text", "22023", "must be a JSON array or object"),
    ("SELECT $1", [10 ** 60], "22003", "parameter $1 is out of range"),
])
def test_bad_parameters_get_clean_errors(db, text, params, sqlstate, words):
    with pytest.raises(psycopg.Error) as e:
        qp(db.conn, text, params)
    assert e.value.sqlstate == sqlstate, str(e.value)
    assert words in e.value.diag.message_primary
    assert "Traceback" not in str(e.value)
    # the error is raised in the function the user called: one CONTEXT line of the extension's
    assert e.value.diag.context.count("\n") == 0, e.value.diag.context
    assert "duckdb.query(text,jsonb)" in e.value.diag.context
    # nothing was left half-done: the next call works
    assert qp(db.conn, "SELECT $1 AS x", ["ok"]) == [("ok",)]


def test_an_error_of_duckdb_query_has_one_context_line(db):
    for stmt in ("SELECT * FROM duckdb.query('SELECT nosuchcolumn') AS t(x int)",
                 "SELECT * FROM duckdb.query_json('SELECT error(''boom'')')",
                 "SELECT duckdb.raw_query('SELECT nosuchcolumn')"):
        with pytest.raises(psycopg.Error) as e:
            db.conn.execute(stmt)
        assert e.value.diag.context.count("\n") == 0, (stmt, e.value.diag.context)


def test_the_statement_check_still_runs_on_the_text_for_a_role(db):
    role = db.role("p")
    db.conn.execute(f'GRANT duckdb_query TO "{role}"')
    c = db.connect(role)
    # a parameter is not a literal: what needs one is refused, as a computed value is
    for text in ("SELECT current_setting($1)", "SELECT * FROM query($1)", "SELECT * FROM query_table($1)"):
        with pytest.raises(psycopg.Error) as e:
            qp(c, text, ["temp_directory"])
        assert e.value.sqlstate == "42501", (text, str(e.value))
        assert_clean_error(e.value)
    with pytest.raises(psycopg.Error) as e:
        c.execute("SELECT * FROM duckdb.query('ATTACH $1 AS x', %s::jsonb) AS t(x text)", ('["/tmp/x.duckdb"]',))
    assert e.value.sqlstate in ("42501", "42601")     # refused, or not a place DuckDB takes a parameter
    assert qp(c, "SELECT $1 + 1 AS x", [41], "x int") == [(42,)]


def test_a_parameterized_read_from_s3(db, s3):
    _, c = _s3_reader(db, s3, "p_s3")
    rows = qp(c, "SELECT n, label FROM read_parquet($path) WHERE n = $n",
              {"path": "s3://bucket/data/numbers.parquet", "n": 7}, "n bigint, label text")
    assert rows == [(7, "row 7")]
    # a JSON array binds as one JSON value: cast to a list it names several files
    files = ["s3://bucket/data/numbers.parquet"] * 2
    with pytest.raises(psycopg.Error) as e:
        qp(c, "SELECT count(*) FROM read_parquet($1)", [files], "n bigint")
    assert e.value.sqlstate == "22023" and "read_parquet($1::VARCHAR[])" in e.value.diag.message_hint
    assert qp(c, "SELECT count(*) FROM read_parquet($1::VARCHAR[])", [files], "n bigint") == [(20,)]


# --- one GRANT for the query surface ---------------------------------------------

SURFACE = [
    ("SELECT * FROM duckdb.query('SELECT 1') AS t(x int)", None),
    ("SELECT * FROM duckdb.query('SELECT $1', '[1]') AS t(x int)", None),
    ("SELECT * FROM duckdb.query_json('SELECT 1 AS x')", None),
    ("SELECT * FROM duckdb.query_json('SELECT $1 AS x', '[1]')", None),
    ("SELECT duckdb.create_query_view('v', 'SELECT 1 AS x')", None),
    ("SELECT duckdb.raw_query('SELECT 1')", None),
]


def test_one_grant_gives_the_whole_query_surface(db):
    role = db.role("g")
    c = db.connect(role)
    for stmt, _ in SURFACE:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute(stmt)
    # the functions behind them (PUBLIC may call those) refuse too
    err = c.execute("SELECT duckdb._query_start('SELECT 1', '[]')").fetchone()[0]
    assert err[:2] == ["42501", "permission denied for function query"]
    db.conn.execute(f'GRANT duckdb_query TO "{role}"')
    for stmt, _ in SURFACE:
        c.execute(stmt)
    assert c.execute("SELECT x FROM v").fetchall() == [(1,)]
    db.conn.execute(f'REVOKE duckdb_query FROM "{role}"')
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        c.execute(SURFACE[0][0])


def test_the_role_is_a_nologin_group_role(db):
    row = db.conn.execute("SELECT rolcanlogin, rolsuper FROM pg_roles WHERE rolname = 'duckdb_query'").fetchone()
    assert row == (False, False)
    assert "duckdb_query" in db.conn.execute(
        "SELECT array_to_string(proacl, ',') FROM pg_proc WHERE oid = 'duckdb.query(text,jsonb)'::regprocedure"
    ).fetchone()[0]


def test_a_login_role_of_that_name_is_not_used(db, cluster):
    db.conn.execute("ALTER ROLE duckdb_query LOGIN")
    try:
        with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as admin:
            admin.execute("DROP DATABASE IF EXISTS qrole")
            admin.execute("CREATE DATABASE qrole")
        with psycopg.connect(cluster.dsn("qrole"), autocommit=True) as conn, pytest.raises(psycopg.Error) as e:
            conn.execute("CREATE EXTENSION duckdb_secrets CASCADE")
        assert e.value.sqlstate == "42710"
        assert "not a group role" in str(e.value)
    finally:
        db.conn.execute("ALTER ROLE duckdb_query NOLOGIN")
    with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS qrole")


# --- what the red team found: parameters and the server log ------------------------

def test_a_credential_in_the_parameters_stays_out_of_the_log_and_the_error(db, log_since):
    c = db.connect()
    for text, params in (("SELECT * FROM read_parquet($1)", ["https://user:ParamPw88xyz@127.0.0.1:9/x"]),
                         ("SELECT * FROM read_parquet($1)", ["https://127.0.0.1:9/x?sig=SigPar22xyz&a=1"]),
                         ("SELECT 1", ["password=PlainPw77xyz"])):
        with pytest.raises(psycopg.Error) as e:
            c.execute("SELECT * FROM duckdb.query_json(%s, %s::jsonb)", (text, json.dumps(params)))
        for word in ("ParamPw88xyz", "SigPar22xyz", "PlainPw77xyz"):
            assert word not in str(e.value)
    log = log_since()
    for word in ("ParamPw88xyz", "SigPar22xyz", "PlainPw77xyz"):
        assert word not in log


def test_a_secret_of_the_role_given_as_a_parameter_stays_out_of_the_log(db, s3, log_since):
    _, c = _s3_reader(db, s3, "pl_s3")
    for text in ("SELECT error($1)", "SELECT 1", "SELECT $1::INTEGER"):
        with pytest.raises(psycopg.Error) as e:
            c.execute("SELECT * FROM duckdb.query_json(%s, %s::jsonb)", (text, json.dumps([s3.secret])))
        assert_clean_error(e.value, s3.secret)
    assert s3.secret not in log_since()


@pytest.mark.parametrize("params, sqlstate", [
    ("[" + "9" * 5000 + "]", "22003"),
    ("[" + "[" * 1100 + "]" * 1100 + "]", "54001"),
    ('{"a": ' + "[" * 1100 + "]" * 1100 + "}", "54001"),
])
def test_parameters_jsonb_takes_and_python_does_not_get_clean_errors(db, params, sqlstate):
    with pytest.raises(psycopg.Error) as e:
        db.conn.execute("SELECT * FROM duckdb.query_json('SELECT $1', %s::jsonb)", (params,))
    assert e.value.sqlstate == sqlstate, str(e.value)
    assert "internal error" not in str(e.value) and "Recursion" not in str(e.value)


def test_set_user_mapping_with_deeply_nested_options_is_refused_quietly(db, log_since):
    role = db.role("n")
    db.conn.execute("CREATE SERVER nest_s3 TYPE 's3' FOREIGN DATA WRAPPER duckdb OPTIONS (region 'us-east-1')")
    options = '{"secret": "LogLeakC1xyz", "x": ' + "[" * 1100 + "]" * 1100 + "}"
    with pytest.raises(psycopg.Error) as e:
        db.conn.execute(f"SELECT duckdb.set_user_mapping('nest_s3', '{role}', '{options}')")
    assert e.value.sqlstate == "54001", str(e.value)
    assert "LogLeakC1xyz" not in str(e.value)
    assert "LogLeakC1xyz" not in log_since()


# --- the second red-team round ----------------------------------------------------

def test_column_names_built_from_data_are_masked_and_never_statement_text(db, s3):
    role = db.role("k")
    db.conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    db.conn.execute("SELECT pg_stat_statements_reset()")
    db.conn.execute(s3_server_sql("k_s3", s3, scope="s3://bucket"))
    # the mapping's values as a bind parameter: no statement text of this test holds the secret
    db.conn.execute("SELECT duckdb.set_user_mapping('k_s3', %s, %s::jsonb)",
                    (role, json.dumps({"key_id": s3.key_id, "secret": s3.secret})))
    db.conn.execute(f'GRANT USAGE ON FOREIGN SERVER k_s3 TO "{role}"; GRANT duckdb_query TO "{role}"')
    c = db.connect(role)
    # a column named by the role's own secret (PIVOT turns a value into a column name)
    qp(c, "CREATE TABLE kt AS SELECT $1 AS k, 1 AS v", [s3.secret], "n bigint")
    rows = c.execute("SELECT * FROM duckdb.query_json($$ PIVOT kt ON k USING first(v) $$)").fetchall()
    assert len(rows) == 1 and s3.secret not in json.dumps(rows[0][0]), "a key holds the secret"
    kept = [r[0].replace(s3.secret, "<SECRET>")[:300] for r in db.conn.execute(
        "SELECT query FROM pg_stat_statements WHERE query LIKE %s", (f"%{s3.secret}%",))]
    assert kept == []


def test_a_secret_as_bytes_is_masked_in_bytea_cells(db, s3):
    _, c = _s3_reader(db, s3, "b_s3")
    for text, cols in (("SELECT $1::BLOB AS b", "b bytea"), ("SELECT [$1::BLOB] AS b", "b bytea[]")):
        rows = c.execute(f"SELECT * FROM duckdb.query(%s, %s::jsonb) AS t({cols})",
                         (text, json.dumps([s3.secret]))).fetchall()
        value = rows[0][0] if cols == "b bytea" else rows[0][0][0]
        assert s3.secret.encode() not in bytes(value)
        assert bytes(value) == b"*" * len(s3.secret.encode())


@pytest.mark.parametrize("url", [
    "https://example.com/x?Authorization=Bearer%20Hid3Value1xyz",
    "https://example.com/x?key=Hid3Value1xyz",
    "https://example.com/x?api-key=Hid3Value1xyz",
    "https://Hid3Value1xyz@example.com/x",
    "https://example.com/x?sv=2024&%73ig=Hid3Value1xyz",
])
def test_credential_pieces_of_a_refused_url_are_masked(db, url, log_since):
    role = db.role("u")
    db.conn.execute(f'GRANT duckdb_query TO "{role}"')
    c = db.connect(role)
    for stmt, args in (("SELECT * FROM duckdb.query_json('SELECT * FROM read_csv($1)', %s::jsonb)",
                        (json.dumps([url]),)),
                       ("SELECT * FROM duckdb.query_json(%s)", (f"SELECT * FROM read_csv('{url}')",))):
        with pytest.raises(psycopg.Error) as e:
            c.execute(stmt, args)
        assert "Hid3Value1xyz" not in str(e.value), str(e.value)
    assert "Hid3Value1xyz" not in log_since()


def test_a_parameter_quoted_by_postgresqls_conversion_error_is_masked(db, log_since):
    for value, cols in (("token=Hid4Value2xyz", "x date"), ("https://u:Hid4Value2xyz@h/x", "x uuid")):
        with pytest.raises(psycopg.Error) as e:
            qp(db.conn, "SELECT $1 AS x", [value], cols)
        assert e.value.sqlstate.startswith("22"), str(e.value)
        assert "Hid4Value2xyz" not in str(e.value)
    assert "Hid4Value2xyz" not in log_since()


def test_set_user_mapping_refuses_an_option_given_twice_in_any_case(db):
    role = db.role("d")
    db.conn.execute("CREATE SERVER dup_s3 TYPE 's3' FOREIGN DATA WRAPPER duckdb OPTIONS (region 'us-east-1')")
    with pytest.raises(psycopg.Error) as e:
        db.conn.execute("SELECT duckdb.set_user_mapping('dup_s3', %s, %s::jsonb)",
                        (role, '{"secret": "Aaaa1111", "SECRET": "Bbbb2222"}'))
    assert e.value.sqlstate == "42710"
    assert "Aaaa1111" not in str(e.value) and "Bbbb2222" not in str(e.value)
