"""Lakehouse secret types end to end, with real parts started here on
127.0.0.1: DuckLake with its metadata in a PostgreSQL database and its data on
the local S3 server; quack against a DuckDB process running quack_serve."""

import os
import subprocess

import psycopg
import pytest

import localenv
from conftest import advance_clock, assert_clean_error, ducklake_sql, s3_mapping_sql, s3_server_sql
from iceberg_rest import Catalog

DEPS = "/usr/lib/postgresql/15/lib/duckdb_secrets/deps"


def raw(conn, sql):
    conn.execute("SELECT duckdb.raw_query(%s)", (sql,))


def one(conn, sql, cols="n bigint"):
    return conn.execute(f"SELECT * FROM duckdb.query($q${sql}$q$) AS t({cols})").fetchall()


@pytest.fixture
def lake(db, s3, cluster):
    meta = f"lake_meta_{os.getpid()}"
    with psycopg.connect(cluster.dsn(), autocommit=True) as a:
        a.execute(f"DROP DATABASE IF EXISTS {meta}")
        a.execute(f"CREATE DATABASE {meta}")
    # A prefix of its own: other tests glob s3://bucket/lake/.
    ducklake_sql(db.conn, s3, cluster, meta, "lake")
    yield meta
    db.close()
    with psycopg.connect(cluster.dsn(), autocommit=True) as a:
        a.execute(f"DROP DATABASE IF EXISTS {meta} WITH (FORCE)")


def test_ducklake_metadata_in_postgres_data_on_s3(db, s3, lake, cluster):
    raw(db.conn, "ATTACH 'ducklake:lake' AS l")
    raw(db.conn, "CREATE TABLE l.t AS SELECT range AS i FROM range(100000)")     # more than DuckLake inlines
    raw(db.conn, "INSERT INTO l.t SELECT range + 100000 FROM range(100000)")
    assert one(db.conn, "SELECT count(*) FROM l.t") == [(200000,)]
    # The metadata is in PostgreSQL, the data files on S3.
    with psycopg.connect(cluster.dsn(lake), autocommit=True) as m:
        assert m.execute("SELECT count(*) FROM ducklake_table").fetchone()[0] >= 1
    assert [k for k in s3.keys(lake + "/") if k.endswith(".parquet")], s3.keys()
    # Another session reads what the first one wrote.
    other = db.connect()
    raw(other, "ATTACH 'ducklake:lake' AS l")
    assert one(other, "SELECT sum(i) FROM l.t", "n numeric") == [(199999 * 200000 // 2,)]


def test_ducklake_with_a_wrong_s3_key_fails_cleanly(db, s3, lake):
    raw(db.conn, "ATTACH 'ducklake:lake' AS l")
    raw(db.conn, "CREATE TABLE l.w AS SELECT range AS i FROM range(100000)")
    db.conn.execute("ALTER USER MAPPING FOR PUBLIC SERVER lake_s3 OPTIONS (SET secret 'CANARY-lake-wrong')")
    other = db.connect()
    raw(other, "ATTACH 'ducklake:lake' AS l")
    with pytest.raises(psycopg.Error) as e:
        one(other, "SELECT sum(i) FROM l.w", "n numeric")       # count(*) comes from the metadata
    assert_clean_error(e.value, "CANARY-lake-wrong", s3.secret)
    assert "403" in str(e.value) or "Forbidden" in str(e.value) or "Access" in str(e.value), str(e.value)


def test_a_non_superuser_gets_no_lakehouse_secret(db, lake):
    reader = db.role("reader")
    db.conn.execute(f'GRANT USAGE ON FOREIGN SERVER lake, lake_pg TO "{reader}"')
    db.conn.execute(f'GRANT EXECUTE ON FUNCTION duckdb.query(text), duckdb.raw_query(text) TO "{reader}"')
    c = db.connect(reader)
    assert not {"lake", "lake_pg"} & {r[0] for r in c.execute(
        "SELECT name FROM duckdb.secrets() WHERE storage <> 'skipped'")}
    for attach in ["ATTACH 'ducklake:lake' AS l", "ATTACH 'quack:127.0.0.1:1' AS r",
                   "ATTACH 'w' AS i (TYPE iceberg, ENDPOINT 'http://127.0.0.1:1')",
                   "ATTACH 'c' AS u (TYPE uc)",
                   "SELECT * FROM quack_query('quack:127.0.0.1:1', 'SELECT 1')",
                   "SELECT * FROM quack_serve('quack:127.0.0.1:1')"]:
        with pytest.raises(psycopg.Error) as e:
            raw(c, attach)
        assert e.value.sqlstate in ("42501", "42883", "42P01"), (attach, str(e.value))


QUACK_SERVER = """
import glob, sys, time
sys.path.insert(0, {deps!r})
import duckdb
con = duckdb.connect(config={{"autoload_known_extensions": False, "autoinstall_known_extensions": False}})
for ext in ("httpfs", "quack"):
    con.execute("LOAD '" + glob.glob({deps!r} + "/duckdb_extension_" + ext + "/extensions/*/" + ext
                + ".duckdb_extension")[0] + "'")
con.execute("CREATE TABLE served AS SELECT range AS i FROM range(7)")
con.execute("SELECT * FROM quack_serve('quack:127.0.0.1:{port}', token => '{token}')").fetchall()
print("ready", flush=True)
while True:
    time.sleep(1)
"""


@pytest.fixture
def quack_server():
    port, token = localenv.free_port(), "CANARY-quack-token-7e1"
    proc = subprocess.Popen(["/usr/bin/python3", "-c", QUACK_SERVER.format(deps=DEPS, port=port, token=token)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **localenv.SAFE_ENV})
    try:
        line = proc.stdout.readline()
        assert line.strip() == "ready", proc.stderr.read()
        yield port, token
    finally:
        proc.kill()
        proc.wait()


def test_quack_attaches_with_the_servers_token(db, quack_server):
    port, token = quack_server
    db.conn.execute(f"CREATE SERVER q TYPE 'quack' FOREIGN DATA WRAPPER duckdb "
                    f"OPTIONS (scope 'quack:127.0.0.1:{port}')")
    db.conn.execute("SELECT duckdb.set_user_mapping('q', 'CURRENT_USER', %s::jsonb)", ('{"token": "%s"}' % token,))
    raw(db.conn, f"ATTACH 'quack:127.0.0.1:{port}' AS r")
    assert one(db.conn, "SELECT count(*) FROM r.served") == [(7,)]


def test_quack_with_a_wrong_token_is_refused_cleanly(db, quack_server):
    port, token = quack_server
    db.conn.execute(f"CREATE SERVER q TYPE 'quack' FOREIGN DATA WRAPPER duckdb "
                    f"OPTIONS (scope 'quack:127.0.0.1:{port}')")
    db.conn.execute("CREATE USER MAPPING FOR CURRENT_USER SERVER q OPTIONS (token 'CANARY-quack-wrong')")
    with pytest.raises(psycopg.Error) as e:
        raw(db.conn, f"ATTACH 'quack:127.0.0.1:{port}' AS r")
        one(db.conn, "SELECT count(*) FROM r.served")
    assert "Authentication failed" in str(e.value), str(e.value)
    assert_clean_error(e.value, "CANARY-quack-wrong", token)
    assert one(db.conn, "SELECT 1::BIGINT") == [(1,)]         # the session goes on


@pytest.fixture
def iceberg(s3, tmp_path_factory):
    d = tmp_path_factory.mktemp("iceberg")
    cat = Catalog(s3, "ice-reader", "CANARY-ice-client-secret", warehouse_dir=str(d)).start()
    cat.create_table("db", "events", [(i, f"event {i}") for i in range(12)])
    yield cat
    cat.stop()


def iceberg_server(db, cat, secret, s3):
    db.conn.execute(s3_server_sql("ice_s3", s3, scope=f"s3://{s3.bucket}/iceberg"))
    db.conn.execute(s3_mapping_sql("ice_s3", s3))
    db.conn.execute("CREATE SERVER ice TYPE 'iceberg' FOREIGN DATA WRAPPER duckdb "
                    f"OPTIONS (endpoint '{cat.url}', client_id 'ice-reader')")
    db.conn.execute("SELECT duckdb.set_user_mapping('ice', 'CURRENT_USER', %s::jsonb)",
                    ('{"client_secret": "%s"}' % secret,))


def test_iceberg_rest_catalog_with_oauth2_client_credentials(db, s3, iceberg):
    iceberg_server(db, iceberg, "CANARY-ice-client-secret", s3)
    before = iceberg.token_requests
    raw(db.conn, f"ATTACH 'warehouse' AS ice_cat (TYPE iceberg, SECRET ice, ENDPOINT '{iceberg.url}')")
    assert one(db.conn, "SELECT count(*) FROM ice_cat.db.events") == [(12,)]
    assert one(db.conn, "SELECT label FROM ice_cat.db.events WHERE i = 7", "l text") == [("event 7",)]
    assert iceberg.token_requests > before and iceberg.refused == 0


def test_iceberg_with_a_wrong_client_secret_fails_cleanly(db, s3, iceberg):
    iceberg_server(db, iceberg, "CANARY-ice-wrong", s3)
    notices = []
    db.conn.add_notice_handler(lambda d: notices.append(d.message_primary))
    with pytest.raises(psycopg.Error) as e:
        raw(db.conn, f"ATTACH 'warehouse' AS ice_cat (TYPE iceberg, SECRET ice, ENDPOINT '{iceberg.url}')")
    assert_clean_error(e.value, "CANARY-ice-wrong", "CANARY-ice-client-secret")
    assert [n for n in notices if 'server "ice"' in n]           # skipped with a warning; the rest loads
    assert iceberg.refused >= 1
    assert one(db.conn, "SELECT 1::BIGINT") == [(1,)]


@pytest.mark.expiry
def test_iceberg_tokens_are_fetched_anew_before_they_expire(db, s3, iceberg):
    """The catalog's tokens live an hour: the engine creates the secret anew (a
    new token) after 80% of that, so the catalog never sees an expired token.
    The hour passes on the backend's clock and on the catalog's."""
    iceberg_server(db, iceberg, "CANARY-ice-client-secret", s3)
    attach = f"ATTACH 'warehouse' AS ice_cat (TYPE iceberg, SECRET ice, ENDPOINT '{iceberg.url}')"
    raw(db.conn, attach)
    first = iceberg.token_requests
    assert one(db.conn, "SELECT count(*) FROM ice_cat.db.events") == [(12,)]
    advance_clock(db.conn, iceberg.token_lifetime + 1)
    iceberg.advance += iceberg.token_lifetime + 1         # the first token has expired
    raw(db.conn, "DETACH ice_cat")            # (an attached catalog keeps the token it was given)
    raw(db.conn, attach)
    assert one(db.conn, "SELECT count(*) FROM ice_cat.db.events") == [(12,)]
    assert iceberg.token_requests > first
    assert iceberg.refused == 0, "a request reached the catalog with an expired token"


def test_a_superusers_query_loads_the_extension_it_needs(db, quack_server):
    """No quack secret in the engine: ATTACH 'quack:...' with a TOKEN of its own
    still finds the extension, loaded for that query (not at engine start)."""
    port, token = quack_server
    loaded = "SELECT count(*) FROM duckdb_extensions() WHERE loaded AND extension_name = 'qu' || 'ack'"
    assert one(db.conn, loaded) == [(0,)]
    raw(db.conn, f"ATTACH 'quack:127.0.0.1:{port}' AS r (TOKEN '{token}')")
    assert one(db.conn, "SELECT count(*) FROM r.served") == [(7,)]
