"""PostgreSQL as a target of the engine: named postgres secrets (SERVER TYPE
'postgres' + USER MAPPING) used by ATTACH, options overridden by the ATTACH
string, several side by side, and attaching this very cluster without a hang.

A cluster of its own, where the role `app` must log in with a SCRAM password
(the session cluster trusts every local connection)."""

import os
import shutil
import time

import psycopg
import pytest

import localenv
from conftest import assert_clean_error, fresh_database, secret_lines

pytestmark = pytest.mark.scram

PASSWORD = "CANARY-app-pass-9f1e"
WRONG = "CANARY-wrong-pass-77c2"


@pytest.fixture(scope="module")
def world():
    base = localenv.scratch_dir("duckdb_secrets_pgtarget.")
    cluster = localenv.PgCluster(os.path.join(base, "pg"), settings={"password_encryption": "scram-sha-256"},
                                 hba=["host all app 127.0.0.1/32 scram-sha-256",
                                      "host all reader 127.0.0.1/32 scram-sha-256"]).start()
    with psycopg.connect(cluster.dsn(), autocommit=True) as c:
        c.execute(f"CREATE ROLE app LOGIN PASSWORD '{PASSWORD}'")
        c.execute("CREATE ROLE reader LOGIN PASSWORD 'CANARY-reader-pass-1'")
        for db in ("sales", "hr"):
            c.execute(f"CREATE DATABASE {db} OWNER app")
    for db, rows in (("sales", "('north', 10), ('south', 20)"), ("hr", "('ann', 1)")):
        with psycopg.connect(cluster.dsn(db, "app"), password=PASSWORD, autocommit=True) as c:
            c.execute("CREATE TABLE facts (k text, v int)")
            c.execute(f"INSERT INTO facts VALUES {rows}")
    conn = fresh_database(cluster, "main")
    conn.execute(f"CREATE SERVER pg_sales TYPE 'postgres' FOREIGN DATA WRAPPER duckdb OPTIONS "
                 f"(host '127.0.0.1', port '{cluster.port}', dbname 'sales', user 'app')")
    conn.execute(f"CREATE USER MAPPING FOR postgres SERVER pg_sales OPTIONS (password '{PASSWORD}')")
    conn.execute(f"CREATE SERVER pg_reader TYPE 'postgres' FOREIGN DATA WRAPPER duckdb OPTIONS "
                 f"(host '127.0.0.1', port '{cluster.port}', database 'hr', username 'reader')")
    conn.execute("CREATE USER MAPPING FOR postgres SERVER pg_reader OPTIONS (password 'CANARY-reader-pass-1')")
    yield {"cluster": cluster, "conn": conn}
    conn.close()
    cluster.stop()
    log = cluster.read_log()
    shutil.rmtree(base, ignore_errors=True)
    assert not secret_lines(log, [PASSWORD, WRONG, "CANARY-reader-pass-1"])
    assert "terminated by signal" not in log


@pytest.fixture
def conn(world):
    c = psycopg.connect(world["cluster"].dsn("main"), autocommit=True)
    yield c
    c.close()


def q(conn, sql, cols="x text"):
    return conn.execute(f"SELECT * FROM duckdb.query($duck${sql}$duck$) AS t({cols})").fetchall()


def test_attach_with_a_named_secret_and_a_dbname_override(conn):
    q(conn, "ATTACH '' AS s (TYPE postgres, SECRET pg_sales, SECRET_STORAGE_TABLE '')", "ok boolean")
    assert q(conn, "SELECT k, v FROM s.public.facts ORDER BY k", "k text, v int") == [("north", 10), ("south", 20)]
    # Only dbname from the ATTACH string; host, user and password from the secret.
    q(conn, "ATTACH 'dbname=hr' AS h (TYPE postgres, SECRET pg_sales, SECRET_STORAGE_TABLE '')", "ok boolean")
    assert q(conn, "SELECT k FROM h.public.facts") == [("ann",)]
    assert q(conn, "SELECT current_user FROM postgres_query('h', 'SELECT current_user::text')") == [("app",)]


def test_several_named_secrets_side_by_side(conn):
    q(conn, "ATTACH '' AS s (TYPE postgres, SECRET pg_sales, SECRET_STORAGE_TABLE '')", "ok boolean")
    q(conn, "ATTACH '' AS r (TYPE postgres, SECRET pg_reader, SECRET_STORAGE_TABLE '')", "ok boolean")
    users = q(conn, "SELECT (SELECT u FROM postgres_query('s', 'SELECT current_user::text AS u')) || ',' || "
                    "(SELECT u FROM postgres_query('r', 'SELECT current_user::text AS u'))")
    assert users == [("app,reader",)]
    # reader has no rights on hr's table: PostgreSQL itself says so.
    with pytest.raises(psycopg.Error) as e:
        q(conn, "SELECT k FROM r.public.facts")
    assert "permission denied" in str(e.value)
    shown = dict(conn.execute("SELECT name, secret_string FROM duckdb.secrets() WHERE type = 'postgres'").fetchall())
    assert "password=redacted" in shown["pg_sales"] and "user=reader" in shown["pg_reader"]
    assert "dbname=hr" in shown["pg_reader"]           # the alias 'database' stored as dbname
    assert PASSWORD not in str(shown)


def test_wrong_password_gives_a_clean_error_without_the_password(world, conn):
    world["conn"].execute(f"ALTER USER MAPPING FOR postgres SERVER pg_sales OPTIONS (SET password '{WRONG}')")
    try:
        with pytest.raises(psycopg.Error) as e:
            q(conn, "ATTACH '' AS s (TYPE postgres, SECRET pg_sales)", "ok boolean")
        assert "password authentication failed" in e.value.diag.message_primary
        assert_clean_error(e.value, WRONG, PASSWORD)
    finally:
        world["conn"].execute(f"ALTER USER MAPPING FOR postgres SERVER pg_sales OPTIONS (SET password '{PASSWORD}')")
    # A password written into the ATTACH string itself is masked too.
    with pytest.raises(psycopg.Error) as e:
        q(conn, f"ATTACH 'host=127.0.0.1 port={world['cluster'].port} dbname=sales user=app password={WRONG}' "
                "AS z (TYPE postgres)", "ok boolean")
    assert_clean_error(e.value, WRONG)
    assert "password=********" in e.value.diag.message_primary
    with pytest.raises(psycopg.Error) as e:
        q(conn, f"ATTACH 'postgresql://app:{WRONG}@127.0.0.1:{world['cluster'].port}/sales' AS z (TYPE postgres)",
          "ok boolean")
    assert_clean_error(e.value, WRONG)


def test_self_attach_under_an_exclusive_lock_fails_fast_and_the_backend_stays_usable(world, conn):
    conn.execute(f"CREATE SERVER self_pg TYPE 'postgres' FOREIGN DATA WRAPPER duckdb OPTIONS "
                 f"(host '127.0.0.1', port '{world['cluster'].port}', dbname 'main', user 'postgres')")
    try:
        conn.execute("CREATE TABLE mine (n int)")
        conn.execute("INSERT INTO mine VALUES (1)")
        conn.execute("SET duckdb.attach_lock_timeout = '1s'")
        q(conn, "ATTACH '' AS me (TYPE postgres, SECRET self_pg, SECRET_STORAGE_TABLE '')", "ok boolean")
        assert q(conn, "SELECT current_setting FROM postgres_query('me', "
                       "'SELECT pg_catalog.current_setting(''lock_timeout'')')") == [("1s",)]
        conn.execute("BEGIN")
        conn.execute("LOCK TABLE mine IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        with pytest.raises(psycopg.Error) as e:
            q(conn, "SELECT count(*) FROM me.public.mine", "n bigint")
        elapsed = time.monotonic() - started
        conn.execute("ROLLBACK")
        assert e.value.sqlstate == "55P03"
        assert "separate session" in e.value.diag.message_hint
        assert elapsed < 30, elapsed                       # bounded by the timeout, not a hang
        # Uncommitted rows of the caller are not visible to DuckDB's own connection.
        conn.execute("BEGIN")
        conn.execute("INSERT INTO mine VALUES (2)")
        assert q(conn, "SELECT count(*) FROM me.public.mine", "n bigint") == [(1,)]
        conn.execute("COMMIT")
        assert q(conn, "SELECT count(*) FROM me.public.mine", "n bigint") == [(2,)]
    finally:
        conn.execute("ROLLBACK") if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE else None
        conn.execute("RESET duckdb.attach_lock_timeout")
        conn.execute("DROP SERVER self_pg CASCADE")
        conn.execute("DROP TABLE IF EXISTS mine")


def test_attach_without_secret_gets_the_lock_timeout_too(world, conn):
    port = world["cluster"].port
    q(conn, f"ATTACH 'host=127.0.0.1 port={port} dbname=main user=postgres' AS d (TYPE postgres, "
            "SECRET_STORAGE_TABLE '')", "ok boolean")
    assert q(conn, "SELECT current_setting FROM postgres_query('d', "
                   "'SELECT pg_catalog.current_setting(''lock_timeout'')')") == [("5s",)]
    assert dict(conn.execute("SELECT name, origin FROM duckdb.secrets()").fetchall())["__default_postgres"] == "default"


def test_bad_lock_timeout_setting(conn):
    conn.execute("SET duckdb.attach_lock_timeout = 'soon'")
    with pytest.raises(psycopg.Error) as e:
        q(conn, "SELECT 1", "x int")
    assert e.value.sqlstate == "22023" and "duckdb.attach_lock_timeout" in e.value.diag.message_primary


def test_postgres_secrets_stay_out_of_non_superuser_engines(world, conn):
    world["conn"].execute("DROP ROLE IF EXISTS plain")
    world["conn"].execute("CREATE ROLE plain LOGIN")
    world["conn"].execute("GRANT USAGE ON FOREIGN SERVER pg_sales TO plain")
    world["conn"].execute("CREATE USER MAPPING FOR plain SERVER pg_sales OPTIONS (password 'x-not-used')")
    world["conn"].execute("GRANT EXECUTE ON FUNCTION duckdb.query(text) TO plain")
    try:
        with psycopg.connect(world["cluster"].dsn("main", "plain"), autocommit=True) as c:
            assert c.execute("SELECT count(*) FROM duckdb.secrets() WHERE type = 'postgres' "
                             "AND storage <> 'skipped'").fetchone() == (0,)
            with pytest.raises(psycopg.Error) as e:
                q(c, "ATTACH '' AS s (TYPE postgres, SECRET pg_sales)", "ok boolean")
            assert e.value.sqlstate == "42501"
    finally:
        world["conn"].execute("DROP OWNED BY plain")
        world["conn"].execute("DROP ROLE plain")


def test_no_duckdb_thread_outlives_a_query(conn):
    """PL/Python never finalizes Python: a DuckDB worker or pool thread still
    running when the backend exits races C++ static destructors (it crashed a
    backend at exit now and then). The engine leaves none behind."""
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    q(conn, "ATTACH '' AS s (TYPE postgres, SECRET pg_sales, SECRET_STORAGE_TABLE '')", "ok boolean")
    assert q(conn, "SELECT count(*) FROM s.public.facts", "n bigint") == [(2,)]
    conn.execute("SELECT duckdb.recycle_ddb()")
    assert q(conn, "SELECT 1", "x int") == [(1,)]
    assert os.listdir(f"/proc/{pid}/task") == [str(pid)]


def test_attach_a_database_that_has_a_duckdb_secrets_table(world, conn):
    """DuckDB probes an attached database for a duckdb_secrets table; with
    persistent secrets off that ATTACH would fail ("Unknown secret storage
    found: 'local_file'"). Superusers' engines allow them, with no directory."""
    with psycopg.connect(world["cluster"].dsn("hr", "app"), password=PASSWORD, autocommit=True) as c:
        c.execute("CREATE TABLE IF NOT EXISTS duckdb_secrets (secret_name varchar PRIMARY KEY, "
                  "secret_type varchar NOT NULL, serialized_secret bytea NOT NULL)")
    try:
        q(conn, "ATTACH 'dbname=hr' AS h (TYPE postgres, SECRET pg_sales)", "ok boolean")
        assert q(conn, "SELECT k FROM h.public.facts") == [("ann",)]
        # Nothing is persisted: CREATE PERSISTENT SECRET has nowhere to go.
        with pytest.raises(psycopg.Error):
            q(conn, "CREATE PERSISTENT SECRET p1 (TYPE s3, KEY_ID 'k')", "ok boolean")
    finally:
        with psycopg.connect(world["cluster"].dsn("hr", "app"), password=PASSWORD, autocommit=True) as c:
            c.execute("DROP TABLE duckdb_secrets")
