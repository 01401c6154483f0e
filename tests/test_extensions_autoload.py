"""A superuser's engine loads what a query needs from the shipped extension
directory, as DuckDB does (autoload, never install, never download); a
non-superuser's engine loads only what its secrets need. Every shipped name is
accepted by duckdb.install_extension, as pg_duckdb's users expect."""

import json
import os
import subprocess
import sys
import tempfile

import psycopg
import pytest

import localenv
from conftest import assert_clean_error, q, refused, s3_server_sql
from duckdb_secrets import shipped

HERE = os.path.dirname(os.path.abspath(__file__))
NOT_LOADED = ("not found", "exists in the", "requires the extension", "no-extension-directory",
              "install", "is not in the catalog")


def dsn(db):
    return f"host={db.cluster.host} port={db.cluster.port} user=postgres dbname={db.dbname}"


def forms(db, tmp):
    """(what, DuckDB SQL, column list): each needs an extension nothing loaded yet."""
    sqlite = os.path.join(tmp, "x.sqlite")
    return [
        ("postgres ATTACH with TYPE", f"ATTACH '{dsn(db)}' AS p (TYPE postgres)", None),
        ("postgres: prefix", f"ATTACH 'postgres:{dsn(db)}' AS p2", None),
        ("postgres_scan", f"SELECT count(*) FROM postgres_scan('{dsn(db)}', 'duckdb', 'extensions')", "n bigint"),
        ("az:// path", "SELECT count(*) FROM read_parquet('az://container/x.parquet')", "n bigint"),
        ("delta_scan", f"SELECT count(*) FROM delta_scan('{tmp}/no-delta-table')", "n bigint"),
        ("read_xlsx", f"SELECT count(*) FROM read_xlsx('{tmp}/no.xlsx')", "n bigint"),
        ("ST_Point", "SELECT ST_AsText(ST_Point(1, 2))", "x text"),
        ("sqlite ATTACH", f"ATTACH '{sqlite}' AS s (TYPE sqlite)", None),
        ("stem", "SELECT stem('running', 'english')", "x text"),
        ("INET", "SELECT '127.0.0.1'::INET::VARCHAR", "x text"),
        ("dbgen", "CALL dbgen(sf = 0)", "x text"),
        ("iceberg_scan", f"SELECT count(*) FROM iceberg_scan('{tmp}/no-table/metadata.json')", "n bigint"),
    ]


def run(conn, sql, cols):
    if cols is None:
        conn.execute("SELECT duckdb.raw_query(%s)", (sql,))
        return None
    return q(conn, sql, cols)


def test_each_form_autoloads_in_a_fresh_superuser_engine(db):
    tmp = tempfile.mkdtemp(prefix="duckdb_secrets_autoload.")
    os.chmod(tmp, 0o777)
    try:
        for what, sql, cols in forms(db, tmp):
            db.conn.execute("SELECT duckdb.recycle_ddb()")          # a fresh engine for each form
            try:
                got = run(db.conn, sql, cols)
            except psycopg.Error as e:          # data errors are fine; "not loaded" is not
                text = str(e).lower()
                assert not [w for w in NOT_LOADED if w in text], (what, str(e))
                assert_clean_error(e)
                continue
            if what == "ST_Point":
                assert got == [("POINT (1 2)",)]
            elif what == "stem":
                assert got == [("run",)]
            elif what == "INET":
                assert got == [("127.0.0.1",)]
    finally:
        subprocess.run(["rm", "-rf", tmp], check=True)


def test_nothing_is_loaded_before_a_query_needs_it(db):
    loaded = "SELECT string_agg(extension_name, ',' ORDER BY extension_name) FROM duckdb_extensions() WHERE loaded"
    before = q(db.conn, loaded)[0][0].split(",")
    assert "spatial" not in before and "postgres_scanner" not in before
    q(db.conn, "SELECT ST_AsText(ST_Point(1, 2))")
    assert "spatial" in q(db.conn, loaded)[0][0].split(",")


def test_an_extension_that_is_not_shipped_is_named_not_its_path(db):
    with pytest.raises(psycopg.Error) as e:
        db.conn.execute("SELECT duckdb.raw_query('ATTACH ''md:my_db''')")
    assert e.value.sqlstate == "0A000", str(e.value)
    assert 'DuckDB extension "motherduck" is not shipped with duckdb_secrets' == e.value.diag.message_primary
    assert "duckdb_secrets/extensions" not in str(e.value) and "no-extension-directory" not in str(e.value)


@pytest.mark.parametrize("name", shipped.EXTENSIONS)
def test_install_extension_accepts_every_shipped_name(db, name):
    db.conn.execute("SELECT duckdb.install_extension(%s)", (name,))
    assert db.conn.execute("SELECT count(*) FROM duckdb.extensions WHERE name = %s", (name,)).fetchone() == (1,)


def test_install_extension_of_a_name_not_shipped_lists_the_shipped_ones(db):
    with pytest.raises(psycopg.Error) as e:
        db.conn.execute("SELECT duckdb.install_extension('motherduck')")
    assert e.value.sqlstate == "22023"
    for name in shipped.EXTENSIONS:
        assert name in e.value.diag.message_detail


def test_a_non_superusers_engine_loads_only_what_its_secrets_need(db, s3):
    reader = db.role("reader")
    db.conn.execute(s3_server_sql("r_s3", s3, scope="s3://bucket"))
    db.conn.execute(f'GRANT USAGE ON FOREIGN SERVER r_s3 TO "{reader}"')
    db.conn.execute(f'GRANT EXECUTE ON FUNCTION duckdb.query(text), duckdb.raw_query(text) TO "{reader}"')
    with db.connect(reader) as c:
        assert q(c, "SELECT current_setting('autoload_known_extensions')::text") == [("false",)]
        for sql, name in (("SELECT ST_AsText(ST_Point(1, 2))", "spatial"), ("SELECT stem('running', 'english')", "fts"),
                          ("SELECT '127.0.0.1'::INET::VARCHAR", "inet")):
            with pytest.raises(psycopg.Error) as e:
                q(c, sql)
            assert_clean_error(e.value, s3.secret)
            assert e.value.sqlstate == "42501", str(e.value)
            assert e.value.diag.message_primary == (f'the DuckDB extension "{name}" is not available to '
                                                    "this role's engine")
            assert "INSTALL" not in str(e.value)
        refused(c, "LOAD spatial", {"42501", "58000", "XX000"})
        loaded = {r[0] for r in q(c, "SELECT extension_name FROM duckdb_extensions() WHERE loaded")}
        assert loaded <= {"httpfs", "aws", "azure", "core_functions", "icu", "json", "parquet"}, loaded
    # What a non-superuser's engine could ever load from its directory.
    assert shipped.role_extensions() == {"httpfs", "aws", "azure"}


def test_ducklake_attached_directly_is_read_by_a_plain_duckdb_client(db, s3):
    """ATTACH 'ducklake:postgres:...' in a superuser's engine (no ducklake server,
    nothing loaded first), data on S3 with the server's secret; the S3 secret
    stored in the catalog database (store_table_secret) lets an ordinary DuckDB
    client read the same lake, as DuckDB's postgres secrets page describes."""
    db.conn.execute(s3_server_sql("lake_s3", s3, scope="s3://bucket/direct-lake/"))
    db.conn.execute(f"CREATE USER MAPPING FOR CURRENT_USER SERVER lake_s3 "
                    f"OPTIONS (key_id '{s3.key_id}', secret '{s3.secret}')")
    attach = (f"ATTACH 'ducklake:postgres:{dsn(db)}' AS dl "
              "(DATA_PATH 's3://bucket/direct-lake/', DATA_INLINING_ROW_LIMIT 0)")
    db.conn.execute("SELECT duckdb.raw_query(%s)", (attach,))
    db.conn.execute("SELECT duckdb.raw_query($$ CREATE TABLE dl.cities AS SELECT * FROM "
                    "(VALUES ('Lisbon', 545000), ('Oslo', 709000)) t(city, pop) $$)")
    assert [k for k in s3.keys("direct-lake/") if k.endswith(".parquet")]
    db.conn.execute("SELECT duckdb.store_table_secret('lake_s3', include_sensitive => true)")
    statements = [f"ATTACH 'ducklake:postgres:{dsn(db)}' AS dl", "SELECT city, pop FROM dl.cities ORDER BY city",
                  "SELECT name, storage FROM duckdb_secrets()"]
    r = subprocess.run([sys.executable, os.path.join(HERE, "duckdb_client.py"), json.dumps(statements)],
                       capture_output=True, text=True, timeout=120, env={**os.environ, **localenv.SAFE_ENV})
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out[1] == [["Lisbon", 545000], ["Oslo", 709000]], out
    assert out[2] == [["lake_s3", "postgres___ducklake_metadata_dl"]]
    assert s3.secret not in r.stdout
