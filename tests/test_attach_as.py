"""Attached catalogs in every session (issue 29, item 2): a server of a type
that names a database or catalog carries attach_as, and every engine that
gets its secret attaches the catalog under that name the first time its SQL
refers to it -- no ATTACH in the session, none at engine start. Real parts on
127.0.0.1: DuckLake with its metadata in a PostgreSQL database of the test
cluster and its data on the local S3 server; PostgreSQL targets in the same
cluster."""

import os
import shutil

import psycopg
import pytest

import localenv
from conftest import assert_clean_error, ducklake_sql
from duckdb_secrets import catalog, engine_sql, validation
from test_lakehouse import iceberg, iceberg_server, quack_server  # noqa: F401 - fixtures

CANARY = "CANARY-attach-pw-5d1a"


def one(conn, sql, cols="n bigint"):
    return conn.execute(f"SELECT * FROM duckdb.query($q${sql}$q$) AS t({cols})").fetchall()


def raw(conn, sql):
    conn.execute("SELECT duckdb.raw_query(%s)", (sql,))


def databases(conn):
    return {r[0] for r in one(conn, "SELECT database_name FROM duckdb_databases()", "d text")}


def attach_rows(conn):
    return conn.execute("SELECT server, attach_as FROM duckdb.secrets() WHERE attach_as IS NOT NULL "
                        "ORDER BY 1").fetchall()


def new_database(cluster, name, *statements):
    with psycopg.connect(cluster.dsn(), autocommit=True) as a:
        a.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        a.execute(f"CREATE DATABASE {name}")
    with psycopg.connect(cluster.dsn(name), autocommit=True) as c:
        for s in statements:
            c.execute(s)


def drop_database(cluster, name):
    with psycopg.connect(cluster.dsn(), autocommit=True) as a:
        a.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def lakehouse(db, s3, cluster):
    """Server lakehouse (TYPE ducklake, attach_as 'lake'): metadata in a
    database of the test cluster (through the postgres server lake_pg), data
    files on the local S3 (through lake_s3)."""
    meta = f"attach_meta_{os.getpid()}"
    new_database(cluster, meta)
    ducklake_sql(db.conn, s3, cluster, meta, "lakehouse", ", attach_as 'lake'")
    yield meta
    db.close()
    drop_database(cluster, meta)


@pytest.fixture
def targets(db, cluster):
    """Two databases of the test cluster with a table facts each, and server
    pg_a (TYPE postgres, attach_as 'pgt', read only) for the first."""
    names = [f"attach_a_{os.getpid()}", f"attach_b_{os.getpid()}"]
    for name, k in zip(names, ("alpha", "beta"), strict=True):
        new_database(cluster, name, "CREATE TABLE facts (k text, v int)", f"INSERT INTO facts VALUES ('{k}', 1)")
    db.conn.execute(f"CREATE SERVER pg_a TYPE 'postgres' FOREIGN DATA WRAPPER duckdb OPTIONS "
                    f"(host '127.0.0.1', port '{cluster.port}', dbname '{names[0]}', user 'postgres', "
                    "attach_as 'pgt', attach_options 'READ_ONLY')")
    yield names
    db.close()
    for name in names:
        drop_database(cluster, name)


def test_a_new_session_uses_the_ducklake_catalog_with_no_attach(db, s3, lakehouse, cluster):
    writer = db.connect()
    assert "lake" not in databases(writer)          # not at engine start
    raw(writer, "CREATE TABLE lake.t AS SELECT range AS i FROM range(100000)")   # lake.t: lake.main.t
    assert "lake" in databases(writer)
    assert [k for k in s3.keys(lakehouse + "/") if k.endswith(".parquet")]
    # A new session: no ATTACH anywhere, the catalog comes with the secret.
    reader = db.connect()
    assert one(reader, "SELECT count(*) FROM lake.main.t") == [(100000,)]
    assert one(reader, "SELECT sum(i) FROM lake.t", "n numeric") == [(99999 * 100000 // 2,)]
    assert attach_rows(reader) == [("lakehouse", "lake")]
    # What it attached is the server's DuckLake, with its secret.
    assert one(reader, "SELECT count(*) FROM duckdb_databases() WHERE database_name = 'lake' AND type = 'ducklake'") \
        == [(1,)]


def test_a_postgres_target_by_attach_as(db, targets):
    c = db.connect()
    assert one(c, "SELECT k FROM pgt.public.facts", "k text") == [("alpha",)]
    assert one(c, "SELECT count(*) FROM pgt.facts") == [(1,)]
    # attach_options READ_ONLY: DuckDB refuses writes.
    with pytest.raises(psycopg.Error) as e:
        one(c, "INSERT INTO pgt.public.facts VALUES ('x', 2)")
    assert "read-only" in str(e.value) or "read only" in str(e.value).lower(), str(e.value)
    # A query string of several statements is not run again; the catalog is attached for the next call.
    d = db.connect()
    with pytest.raises(psycopg.Error) as e:
        one(d, "SELECT 1; SELECT count(*) FROM pgt.public.facts")
    assert 'attach_as of server "pg_a"' in str(e.value), str(e.value)
    assert one(d, "SELECT 1; SELECT count(*) FROM pgt.public.facts") == [(1,)]


def test_alter_server_takes_effect_at_the_next_use(db, targets):
    c = db.connect()
    assert one(c, "SELECT k FROM pgt.public.facts", "k text") == [("alpha",)]
    # Another database: the engine detaches the old catalog and attaches the new one.
    db.conn.execute(f"ALTER SERVER pg_a OPTIONS (SET dbname '{targets[1]}')")
    assert one(c, "SELECT k FROM pgt.public.facts", "k text") == [("beta",)]
    # attach_options: READ_ONLY dropped, so the catalog now takes writes.
    db.conn.execute("ALTER SERVER pg_a OPTIONS (DROP attach_options)")
    assert one(c, "INSERT INTO pgt.public.facts VALUES ('gamma', 2)") == [(1,)]
    # Another name: the old one is gone, the new one attaches.
    db.conn.execute("ALTER SERVER pg_a OPTIONS (SET attach_as 'pgt2')")
    with pytest.raises(psycopg.Error) as e:
        one(c, "SELECT count(*) FROM pgt.public.facts")
    assert 'Catalog "pgt" does not exist' in str(e.value), str(e.value)
    assert one(c, "SELECT count(*) FROM pgt2.public.facts") == [(2,)]
    assert attach_rows(c) == [("pg_a", "pgt2")]


def test_drop_server_detaches_it_in_every_engine(db, targets):
    c = db.connect()
    assert one(c, "SELECT count(*) FROM pgt.public.facts") == [(1,)]
    raw(c, "USE pgt")          # even as the default database
    assert "pgt" in databases(c)
    db.conn.execute("DROP SERVER pg_a CASCADE")
    assert "pgt" not in databases(c)
    with pytest.raises(psycopg.Error) as e:
        one(c, "SELECT count(*) FROM pgt.public.facts")
    assert 'Catalog "pgt" does not exist' in str(e.value), str(e.value)
    assert e.value.sqlstate == "3D000"         # invalid_catalog_name, not undefined_column
    assert attach_rows(c) == []


def test_a_role_without_the_secret_gets_no_attach(db, targets):
    reader = db.role("reader")
    db.conn.execute(f'GRANT USAGE ON FOREIGN SERVER pg_a TO "{reader}"')
    db.conn.execute(f'GRANT EXECUTE ON FUNCTION duckdb.query(text) TO "{reader}"')
    c = db.connect(reader)
    with pytest.raises(psycopg.Error) as e:
        one(c, "SELECT count(*) FROM pgt.public.facts")
    # the catalog is named with its server and why the role's engine does not get it
    assert e.value.sqlstate == "42501"
    assert e.value.diag.message_primary == f'the catalog "pgt" of server "pg_a" is not available to role "{reader}"'
    assert "needs a superuser" in e.value.diag.message_detail
    assert c.execute("SELECT storage, attach_as FROM duckdb.secrets() WHERE server = 'pg_a'").fetchall() \
        == [("skipped", None)]
    assert "pgt" not in databases(c)


def test_a_failing_attach_names_the_server_and_not_the_secret(db):
    port = localenv.free_port()         # nothing listens there
    db.conn.execute(f"CREATE SERVER pg_down TYPE 'postgres' FOREIGN DATA WRAPPER duckdb OPTIONS "
                    f"(host '127.0.0.1', port '{port}', dbname 'x', user 'app', attach_as 'down')")
    db.conn.execute("SELECT duckdb.set_user_mapping('pg_down', 'CURRENT_USER', %s::jsonb)",
                    ('{"password": "%s"}' % CANARY,))
    for _ in range(2):          # tried again at the next use
        with pytest.raises(psycopg.Error) as e:
            one(db.conn, "SELECT count(*) FROM down.public.t")
        assert 'could not attach catalog "down" of server "pg_down"' in str(e.value), str(e.value)
        assert "connect" in str(e.value).lower(), str(e.value)
        assert_clean_error(e.value, CANARY)
    assert one(db.conn, "SELECT 1::BIGINT") == [(1,)]      # the session goes on


def _servers(conn):
    return conn.execute("SELECT srvname, srvoptions FROM pg_foreign_server ORDER BY 1").fetchall()


@pytest.mark.parametrize("ddl,sqlstate,words", [
    ("CREATE SERVER x TYPE 's3' FOREIGN DATA WRAPPER duckdb OPTIONS (attach_as 'x')", "HV00D",
     ["attach_as", "'ducklake'"]),
    ("CREATE SERVER x TYPE 'postgres' FOREIGN DATA WRAPPER duckdb OPTIONS (attach_as 'memory')", "HV024",
     ["attach_as", "memory"]),
    ("CREATE SERVER x TYPE 'postgres' FOREIGN DATA WRAPPER duckdb OPTIONS (attach_as 'main')", "HV024", ["main"]),
    ("CREATE SERVER x TYPE 'postgres' FOREIGN DATA WRAPPER duckdb OPTIONS (attach_as 'no-pe; DROP')", "HV024",
     ["identifier"]),
    ("CREATE SERVER x TYPE 'postgres' FOREIGN DATA WRAPPER duckdb OPTIONS (attach_as '')", "HV024", ["identifier"]),
    ("CREATE SERVER x TYPE 'postgres' FOREIGN DATA WRAPPER duckdb OPTIONS (attach_as 'p', "
     "attach_options 'read_only, bogus=1')", "HV00D", ['"bogus"', "isolation_level, read_only, schema"]),
    ("CREATE SERVER x TYPE 'postgres' FOREIGN DATA WRAPPER duckdb OPTIONS (attach_as 'p', "
     "attach_options 'read_only=maybe')", "HV024", ["Boolean"]),
    ("CREATE SERVER x TYPE 'postgres' FOREIGN DATA WRAPPER duckdb OPTIONS (attach_as 'p', "
     "attach_options 'isolation_level=dirty')", "HV024", ["isolation_level", "serializable"]),
    ("CREATE SERVER x TYPE 'postgres' FOREIGN DATA WRAPPER duckdb OPTIONS (attach_as 'p', "
     "attach_options 'schema')", "HV024", ["schema", "requires a value"]),
    ("CREATE SERVER x TYPE 'postgres' FOREIGN DATA WRAPPER duckdb OPTIONS (attach_options 'read_only')", "HV024",
     ['requires option "attach_as"']),
    ("CREATE SERVER x TYPE 'ducklake' FOREIGN DATA WRAPPER duckdb OPTIONS (metadata_path 'm.ducklake', "
     "attach_as 'l', attach_options 'snapshot_version=latest')", "HV024", ["integer"]),
    ("CREATE SERVER x TYPE 'iceberg' FOREIGN DATA WRAPPER duckdb OPTIONS (endpoint 'http://127.0.0.1:1', "
     "attach_as 'i')", "HV024", ['"warehouse"']),
    ("CREATE SERVER x TYPE 'quack' FOREIGN DATA WRAPPER duckdb OPTIONS (attach_as 'r')", "HV024", ["scope"]),
    ("CREATE SERVER x TYPE 'postgres' FOREIGN DATA WRAPPER duckdb OPTIONS (attach_as 'Taken')", "42710",
     ['"taken"', 'server "other"']),
    ("ALTER SERVER other OPTIONS (ADD attach_options 'bogus')", "HV00D", ['"bogus"']),
    ("ALTER SERVER other OPTIONS (SET attach_as 'system')", "HV024", ["system"]),
    ("CREATE USER MAPPING FOR CURRENT_USER SERVER other OPTIONS (attach_as 'y')", "HV00D", ["user mapping"]),
])
def test_bad_attach_options_are_refused_at_ddl_time(db, ddl, sqlstate, words):
    db.conn.execute("CREATE SERVER other TYPE 'postgres' FOREIGN DATA WRAPPER duckdb "
                    "OPTIONS (host '127.0.0.1', dbname 'x', attach_as 'taken')")
    before = _servers(db.conn)
    with pytest.raises(psycopg.Error) as e:
        db.conn.execute(ddl)
    assert e.value.sqlstate == sqlstate, (e.value.sqlstate, str(e.value))
    text = " ".join(filter(None, [e.value.diag.message_primary, e.value.diag.message_detail,
                                  e.value.diag.message_hint]))
    for w in words:
        assert w in text, (w, text)
    assert_clean_error(e.value)
    assert _servers(db.conn) == before          # nothing changed
    assert db.conn.execute("SELECT count(*) FROM pg_user_mappings WHERE srvname = 'other'").fetchone() == (0,)


def test_attach_options_are_typed_and_built_as_bound_values():
    """Unit: what validation makes of attach_options, and the ATTACH built from
    it -- the name quoted, the path a literal, everything else bound."""
    spec = validation.secret_spec("pg_x", "postgres", ["host=h", "attach_as=My_Cat",
                                                       "attach_options=READ_ONLY, Isolation_Level=SERIALIZABLE"])
    assert spec["attach"] == {"name": "my_cat", "options": {"read_only": True, "isolation_level": "serializable"}}
    assert engine_sql.attach_sql("pg_x", spec) == (
        'ATTACH IF NOT EXISTS \'\' AS "my_cat" (TYPE postgres, SECRET ?, isolation_level ?, read_only ?)',
        ["pg_x", "serializable", True])
    lake = validation.secret_spec("it's", "ducklake", ["metadata_path=m", "attach_as=l",
                                                       "attach_options=snapshot_version=3"])
    assert engine_sql.attach_sql("it's", lake) == (
        "ATTACH IF NOT EXISTS 'ducklake:it''s' AS \"l\" (snapshot_version ?)", [3])
    ice = validation.secret_spec("ice", "iceberg", ["endpoint=http://127.0.0.1:1", "attach_as=i",
                                                    "attach_options=warehouse=w'h, read_only=false"],
                                 ["token=t"])
    assert engine_sql.attach_sql("ice", ice) == (
        "ATTACH IF NOT EXISTS 'w''h' AS \"i\" (TYPE iceberg, SECRET ?, read_only ?)", ["ice", False])
    q = validation.secret_spec("q", "quack", ["scope=quack:127.0.0.1:9", "attach_as=r"], ["token=t"])
    assert engine_sql.attach_sql("q", q) == ("ATTACH IF NOT EXISTS 'quack:127.0.0.1:9' AS \"r\"", [])
    # the secret itself is the same with or without attach_as
    plain = validation.secret_spec("pg_x", "postgres", ["host=h"])
    assert {k: v for k, v in spec.items() if k != "attach"} == plain


def _inline(sql, params):
    """The ATTACH with its bound values written as literals (raw_query binds nothing)."""
    for p in params:
        value = ("true" if p else "false") if isinstance(p, bool) else str(p) if isinstance(p, int) \
            else "'" + str(p).replace("'", "''") + "'"
        sql = sql.replace("?", value, 1)
    return sql


SAMPLES = {catalog.BOOL: True, catalog.INT: 1, catalog.TEXT: "x"}


@pytest.fixture
def lake_dir():
    path = localenv.scratch_dir("duckdb_secrets_attach.")
    os.chmod(path, 0o777)           # the engine (the postgres OS user) writes its DuckLake here
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_every_attach_option_is_one_duckdb_knows(db, lake_dir):
    """Each type's attach_options keys, all at once, against DuckDB 1.5.5 and
    its shipped extensions in a superuser's engine: whatever else fails (no
    server listens), DuckDB never says it does not know an option."""
    made = {
        "postgres": "TYPE postgres, HOST '127.0.0.1', PORT 1",
        "mysql": "TYPE mysql, HOST '127.0.0.1', PORT 1",
        "iceberg": "TYPE iceberg, TOKEN 't', ENDPOINT 'http://127.0.0.1:1'",
        "ducklake": f"TYPE ducklake, METADATA_PATH '{lake_dir}/m.ducklake', DATA_PATH '{lake_dir}/data/'",
        "uc": "TYPE uc, TOKEN 't', ENDPOINT 'http://127.0.0.1:1'",
        "unity_catalog": "TYPE unity_catalog, TOKEN 't', ENDPOINT 'http://127.0.0.1:1'",
    }
    assert set(made) | {"quack"} == set(catalog.ATTACH_TYPES)     # quack checks options only once connected
    db.conn.execute("SELECT duckdb.load_extension('iceberg'), duckdb.load_extension('unity_catalog')")
    for type_name, body in made.items():
        how = catalog.TYPES[type_name].attach
        options = {k: (o.choices[0] if o.choices else SAMPLES[o.kind]) for k, o in how.options.items()}
        if type_name == "ducklake":
            options.pop("snapshot_version")          # a new lake has no snapshot 1 ...
            options.pop("snapshot_time")             # ... nor one at a time: checked without them
            options["read_only"] = False
        secret = f"chk_{type_name}"
        raw(db.conn, f"CREATE OR REPLACE SECRET {secret} ({body})")
        spec = {"type": type_name, "scope": None, "attach": {"name": f"chk_{type_name}_cat", "options": options}}
        sql = _inline(*engine_sql.attach_sql(secret, spec))
        try:
            raw(db.conn, sql)
        except psycopg.Error as e:
            text = str(e).lower()
            for word in ("unrecognized option", "unsupported option", "unhandled option", "unknown option"):
                assert word not in text, (type_name, str(e))
    for name in ("snapshot_version", "snapshot_time"):       # the lake now has a snapshot
        assert name in catalog.TYPES["ducklake"].attach.options
    raw(db.conn, "DETACH DATABASE IF EXISTS chk_ducklake_cat")
    raw(db.conn, "ATTACH IF NOT EXISTS 'ducklake:chk_ducklake' AS chk_dl (snapshot_version 0, read_only true)")


def test_quack_and_iceberg_by_attach_as(db, s3, quack_server, iceberg):  # noqa: F811 - fixtures above
    """The other path kinds: quack attaches the server's scope (its token from
    the secret), iceberg the warehouse its attach_options name."""
    port, token = quack_server
    db.conn.execute(f"CREATE SERVER q TYPE 'quack' FOREIGN DATA WRAPPER duckdb "
                    f"OPTIONS (scope 'quack:127.0.0.1:{port}', attach_as 'remote')")
    db.conn.execute("SELECT duckdb.set_user_mapping('q', 'CURRENT_USER', %s::jsonb)", ('{"token": "%s"}' % token,))
    iceberg_server(db, iceberg, "CANARY-ice-client-secret", s3)
    db.conn.execute("ALTER SERVER ice OPTIONS (ADD attach_as 'ice_cat', ADD attach_options 'warehouse=warehouse')")
    c = db.connect()
    assert one(c, "SELECT count(*) FROM remote.served") == [(7,)]
    assert one(c, "SELECT label FROM ice_cat.db.events WHERE i = 7", "l text") == [("event 7",)]
    assert attach_rows(c) == [("ice", "ice_cat"), ("q", "remote")]
