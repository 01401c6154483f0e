"""Secrets kept in a duckdb_secrets table, shared with ordinary DuckDB clients.

Inward: a real DuckDB client process (python duckdb 1.5.5 + the postgres
extension wheel) stores secrets in the test database with CREATE SECRET ...
IN postgres_<alias>; the engine inside PostgreSQL loads the rows the current
role can SELECT (Row-Level Security decides) and reads S3 with them.
Outward: duckdb.store_table_secret() writes a server's secret; the client
attaches the database and reads S3 with it.
"""

import json
import os
import subprocess
import sys

import psycopg
import pytest

import localenv
from conftest import assert_clean_error, file_setting, s3_mapping_sql, s3_server_sql

HERE = os.path.dirname(os.path.abspath(__file__))
PARQUET = "s3://bucket/data/numbers.parquet"
READ = (f"SELECT * FROM duckdb.query($$ SELECT count(*), sum(n) FROM read_parquet('{PARQUET}') $$) "
        "AS t(c bigint, s numeric)")


def client(db, *statements, table="duckdb_secrets", attach=None):
    """Runs statements in a DuckDB client process attached to the test database as p."""
    attach = attach or (f"ATTACH 'host={db.cluster.host} port={db.cluster.port} user=postgres dbname={db.dbname}' "
                        f"AS p (TYPE postgres, SECRET_STORAGE_TABLE {table})")
    r = subprocess.run([sys.executable, os.path.join(HERE, "duckdb_client.py"), json.dumps([attach, *statements])],
                       capture_output=True, text=True, timeout=120, env={**os.environ, **localenv.SAFE_ENV})
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    return out[1:]


def s3_secret_sql(name, s3, secret=None, scope="s3://bucket"):
    return (f"CREATE SECRET {name} IN postgres_p (TYPE s3, KEY_ID '{s3.key_id}', SECRET '{secret or s3.secret}', "
            f"REGION '{s3.region}', ENDPOINT '{s3.endpoint}', URL_STYLE 'path', USE_SSL false, SCOPE '{scope}')")


def secrets(conn):
    return {r[0]: r[1:] for r in conn.execute(
        "SELECT name, server, origin, type, scope, secret_string FROM duckdb.secrets()").fetchall()}


def test_secret_stored_by_a_duckdb_client_is_used_for_an_s3_read(db, s3, log_since):
    assert client(db, s3_secret_sql("from_client", s3)) == [[[True]]]
    shown = secrets(db.conn)
    assert shown["from_client"][:4] == (None, "public.duckdb_secrets", "s3", ["s3://bucket"])
    assert "secret=redacted" in shown["from_client"][4] and s3.secret not in shown["from_client"][4]
    assert db.conn.execute(READ).fetchone() == (10, 45)
    assert db.conn.execute("SELECT name, storage FROM duckdb.which_secret(%s, 's3')",
                           (PARQUET,)).fetchone() == ("from_client", "memory")
    # A row deleted (or changed) by anyone is seen at the next use, without reconnecting.
    db.conn.execute("DELETE FROM duckdb_secrets WHERE secret_name = 'from_client'")
    assert "from_client" not in secrets(db.conn)
    assert s3.secret not in log_since()


def test_row_level_security_decides_which_tenant_gets_which_secret(db, s3, log_since):
    wrong = "CANARY-tenant-b-wrong-secret"
    client(db, s3_secret_sql("tenant_a", s3), s3_secret_sql("tenant_b", s3, secret=wrong))
    a, b = db.role("tenant_a"), db.role("tenant_b")
    db.conn.execute(f'GRANT EXECUTE ON FUNCTION duckdb.query(text) TO "{a}", "{b}"')
    db.conn.execute(f'GRANT SELECT ON duckdb_secrets TO "{a}", "{b}"')
    db.conn.execute("CREATE TABLE tenants (role name PRIMARY KEY, secret varchar)")
    db.conn.execute("INSERT INTO tenants VALUES (%s, 'tenant_a'), (%s, 'tenant_b')", (a, b))
    db.conn.execute("GRANT SELECT ON tenants TO PUBLIC")
    db.conn.execute("ALTER TABLE duckdb_secrets ENABLE ROW LEVEL SECURITY")
    db.conn.execute("CREATE POLICY own_secret ON duckdb_secrets FOR SELECT USING "
                    "(secret_name IN (SELECT secret FROM tenants WHERE role = current_user))")

    ca, cb = db.connect(a), db.connect(b)
    assert set(secrets(ca)) == {"tenant_a"}
    assert set(secrets(cb)) == {"tenant_b"}
    assert ca.execute(READ).fetchone() == (10, 45)
    with pytest.raises(psycopg.Error) as e:
        cb.execute(READ)                        # B's own (wrong) secret: 403, not A's
    assert "403" in e.value.diag.message_primary
    assert_clean_error(e.value, wrong, s3.secret)
    # The superuser (who bypasses RLS) sees both.
    assert {"tenant_a", "tenant_b"} <= set(secrets(db.conn))
    # Moving a tenant's row in the policy table moves the secret at the next use.
    db.conn.execute("UPDATE tenants SET secret = 'tenant_a' WHERE role = %s", (b,))
    assert set(secrets(cb)) == {"tenant_a"}
    assert wrong not in log_since() and s3.secret not in log_since()


def test_a_role_without_select_gets_nothing_from_the_table(db, s3):
    client(db, s3_secret_sql("hidden", s3))
    r = db.role()
    c = db.connect(r)
    assert secrets(c) == {}


def test_store_table_secret_for_a_duckdb_client(db, s3, log_since):
    db.conn.execute(s3_server_sql("shared_s3", s3, scope="s3://bucket"))
    db.conn.execute(f"CREATE USER MAPPING FOR CURRENT_USER SERVER shared_s3 "
                    f"OPTIONS (key_id '{s3.key_id}', secret '{s3.secret}')")
    # Sensitive parts need the explicit flag: the table stores them unencrypted.
    with pytest.raises(psycopg.Error) as e:
        db.conn.execute("SELECT duckdb.store_table_secret('shared_s3')")
    assert e.value.sqlstate == "42501" and "include_sensitive" in e.value.diag.message_hint
    assert_clean_error(e.value, s3.secret)
    assert db.conn.execute("SELECT to_regclass('duckdb_secrets')").fetchone() == (None,)

    assert db.conn.execute("SELECT duckdb.store_table_secret('shared_s3', include_sensitive => true)"
                           ).fetchone() == ("public.duckdb_secrets",)
    got = client(db, "SELECT name, type, storage, scope FROM duckdb_secrets()",
                 f"SELECT count(*), sum(n) FROM read_parquet('{PARQUET}')")
    assert got[0] == [["shared_s3", "s3", "postgres_p", ["s3://bucket"]]]
    assert got[1] == [[10, 45]]
    # Our engine now has it twice (server and table row): the server wins, with a warning.
    notices = []
    db.conn.add_notice_handler(lambda d: notices.append(d.message_primary))
    assert secrets(db.conn)["shared_s3"][1] == "server"
    assert any("server of the same name takes precedence" in n for n in notices)
    assert s3.secret not in log_since()


def test_ducklake_with_a_postgres_catalog_finds_the_stored_secret(db, s3, log_since):
    """DuckLake whose catalog is this database: the data files go to S3 with the
    secret store_table_secret wrote into the catalog database; the engine in
    PostgreSQL then reads those files with the server's secret."""
    db.conn.execute(s3_server_sql("lake_s3", s3, scope="s3://bucket/lake/"))
    db.conn.execute(f"CREATE USER MAPPING FOR CURRENT_USER SERVER lake_s3 "
                    f"OPTIONS (key_id '{s3.key_id}', secret '{s3.secret}')")
    db.conn.execute("SELECT duckdb.store_table_secret('lake_s3', include_sensitive => true)")
    dsn = f"host={db.cluster.host} port={db.cluster.port} user=postgres dbname={db.dbname}"
    got = client(db, "SELECT name, storage FROM duckdb_secrets()",
                 "CREATE TABLE lake.cities AS SELECT * FROM (VALUES ('Lisbon', 545000), ('Oslo', 709000)) t(city, pop)",
                 "SELECT count(*) FROM glob('s3://bucket/lake/**/*.parquet')",
                 attach=f"ATTACH 'ducklake:postgres:{dsn}' AS lake "
                        "(DATA_PATH 's3://bucket/lake/', DATA_INLINING_ROW_LIMIT 0)")
    assert got[0] == [["lake_s3", "postgres___ducklake_metadata_lake"]]
    assert got[2][0][0] >= 1
    rows = db.conn.execute("SELECT * FROM duckdb.query($$ SELECT city, pop FROM "
                           "read_parquet('s3://bucket/lake/**/*.parquet') ORDER BY city $$) AS t(city text, pop int)"
                           ).fetchall()
    assert rows == [("Lisbon", 545000), ("Oslo", 709000)]
    assert s3.secret not in log_since()


def test_store_table_secret_into_a_named_table_and_an_update(db, s3):
    db.conn.execute("CREATE SCHEMA lake")
    db.conn.execute(s3_server_sql("chain_s3", s3, provider="credential_chain", chain="env", validation="none"))
    # No sensitive parts: no flag needed. Written twice: the row is replaced.
    for _ in range(2):
        assert db.conn.execute("SELECT duckdb.store_table_secret('chain_s3', 'lake.catalog_secrets')"
                               ).fetchone() == ("lake.catalog_secrets",)
    got = client(db, "SELECT name, type, provider FROM duckdb_secrets()", table="'lake.catalog_secrets'")
    assert got == [[["chain_s3", "s3", "credential_chain"]]]


def test_store_table_secret_refuses_values_the_caller_cannot_read(db, s3):
    db.conn.execute(s3_server_sql("team_s3", s3))
    db.conn.execute(s3_mapping_sql("team_s3", s3))
    r = db.role()
    db.conn.execute(f'GRANT USAGE ON FOREIGN SERVER team_s3 TO "{r}"')
    db.conn.execute(f'GRANT CREATE ON SCHEMA public TO "{r}"')
    c = db.connect(r)
    assert "team_s3" in secrets(c)          # may use it ...
    with pytest.raises(psycopg.Error) as e:   # ... but not copy its secret where it could read it
        c.execute("SELECT duckdb.store_table_secret('team_s3', include_sensitive => true)")
    assert e.value.sqlstate == "42501"
    assert_clean_error(e.value, s3.secret)
    assert db.conn.execute("SELECT to_regclass('duckdb_secrets')").fetchone() == (None,)
    with pytest.raises(psycopg.Error) as e:
        c.execute("SELECT duckdb.store_table_secret('no_such_server')")
    assert e.value.sqlstate == "42704"


def test_bad_rows_are_skipped_with_a_warning_and_the_rest_loads(db, s3):
    client(db, s3_secret_sql("good", s3))
    db.conn.execute("INSERT INTO duckdb_secrets VALUES ('garbage', 's3', '\\x00010203'::bytea)")
    # A credential_chain row would act with the server's own AWS identity.
    db.conn.execute(s3_server_sql("chain", s3, provider="credential_chain", chain="env", validation="none"))
    db.conn.execute("SELECT duckdb.store_table_secret('chain')")
    db.conn.execute("DROP SERVER chain")
    row = db.conn.execute("SELECT serialized_secret FROM duckdb_secrets WHERE secret_name = 'good'").fetchone()[0]
    db.conn.execute("INSERT INTO duckdb_secrets VALUES ('renamed', 's3', %s)", (row,))
    r = db.role()
    db.conn.execute(f'GRANT SELECT ON duckdb_secrets TO "{r}"')
    c = db.connect(r)
    notices = []
    c.add_notice_handler(lambda d: notices.append(d.message_primary))
    assert set(secrets(c)) == {"good"}
    text = "\n".join(notices)
    assert 'secret "chain" from table public.duckdb_secrets: provider \'credential_chain\' uses the server' in text
    assert 'secret "garbage" from table public.duckdb_secrets: unreadable serialized_secret' in text
    assert 'secret "renamed"' in text and "another name" in text
    assert s3.secret not in text


def test_table_setting_names_the_table_or_turns_it_off(db, s3):
    """Only the configuration files name the table (a role's SET does not)."""
    client(db, s3_secret_sql("in_default", s3))
    client(db, s3_secret_sql("in_other", s3), table="other_secrets")
    assert "in_default" in secrets(db.conn)
    db.conn.execute("SET duckdb.secret_storage_table = 'other_secrets'")
    assert "in_default" in secrets(db.conn) and "in_other" not in secrets(db.conn)
    db.conn.execute("RESET duckdb.secret_storage_table")
    with file_setting(db.conn, "duckdb.secret_storage_table", "other_secrets"):
        got = secrets(db.connect())
        assert "in_other" in got and "in_default" not in got and got["in_other"][1] == "public.other_secrets"
    with file_setting(db.conn, "duckdb.secret_storage_table", ""):
        assert not {"in_default", "in_other"} & set(secrets(db.connect()))
    with file_setting(db.conn, "duckdb.secret_storage_table", "a.b.c"):
        with pytest.raises(psycopg.Error) as e:
            secrets(db.connect())
        assert e.value.sqlstate == "22023" and "duckdb.secret_storage_table" in e.value.diag.message_primary
    assert "in_default" in secrets(db.connect())


def test_a_row_never_overrides_a_server_nor_opens_urls(db, s3):
    """Whoever can write a row must not steer another role's reads, act as the
    server, or widen what an engine may reach."""
    db.conn.execute(s3_server_sql("admin_s3", s3, scope="s3://bucket"))
    db.conn.execute(s3_mapping_sql("admin_s3", s3))
    # A row with a longer scope inside the server's would win DuckDB's longest-prefix match.
    client(db, s3_secret_sql("steer", s3, secret="CANARY-steer", scope="s3://bucket/data"),
           s3_secret_sql("elsewhere", s3, scope="s3://another-bucket"),
           "CREATE SECRET web IN postgres_p (TYPE http, BEARER_TOKEN 'CANARY-web', SCOPE 'http://127.0.0.1:9/')",
           "CREATE SECRET pgconn IN postgres_p (TYPE postgres, HOST '127.0.0.1', DATABASE postgres)")
    with_server, without = db.role(), db.role()
    for r in (with_server, without):
        db.conn.execute(f'GRANT SELECT ON duckdb_secrets TO "{r}"')
        db.conn.execute(f'GRANT EXECUTE ON FUNCTION duckdb.query(text) TO "{r}"')
    db.conn.execute(f'GRANT USAGE ON FOREIGN SERVER admin_s3 TO "{with_server}"')
    notices = []
    c = db.connect(with_server)
    c.add_notice_handler(lambda d: notices.append(d.message_primary))
    got = secrets(c)
    assert set(got) == {"admin_s3", "elsewhere", "web"}
    assert any('"steer"' in n and 'server "admin_s3" covers its scope' in n for n in notices)
    assert any('"pgconn"' in n and "opens database connections" in n for n in notices)
    assert c.execute(READ).fetchone() == (10, 45)          # the server's secret, not the row's
    # A role without the server gets the row (its own business).
    assert "steer" in secrets(db.connect(without))
    # The superuser (sees every row, has every server) is not steered either.
    assert "steer" not in secrets(db.conn) and "pgconn" not in secrets(db.conn)
    # An http row does not open its scope to the engine (only servers do).
    # (allowed_directories, which would show it, is not readable by a non-superuser: the read is the test)
    with pytest.raises(psycopg.Error) as e:
        c.execute("SELECT * FROM duckdb.query($$ SELECT * FROM read_text('http://127.0.0.1:9/x') $$) AS t(a text)")
    assert e.value.sqlstate == "42501"
    assert_clean_error(e.value, "CANARY-web", "CANARY-steer")


@pytest.mark.parametrize("table, sqlstate", [
    ("x; DROP TABLE victim", "22023"),
    ("a.b.c", "22023"),
    ('"unterminated', "22023"),
    ("", "22023"),
    ("pg_catalog.pg_class", "42804"),          # not a secret table
    ("victim", "42804"),
    ("no_such_schema.t", "3F000"),
    ("locked.duckdb_secrets", "42501"),         # exists, the role may not write it
    ("locked.newtable", "42501"),               # may not create it there
])
def test_store_table_secret_refuses_bad_tables_cleanly(db, s3, table, sqlstate):
    db.conn.execute("CREATE TABLE victim (id int)")
    db.conn.execute("CREATE SCHEMA locked")
    db.conn.execute("CREATE TABLE locked.duckdb_secrets (secret_name varchar PRIMARY KEY, "
                    "secret_type varchar NOT NULL, serialized_secret bytea NOT NULL)")
    db.conn.execute("GRANT USAGE ON SCHEMA locked TO PUBLIC")
    db.conn.execute(s3_server_sql("plain_s3", s3, provider="credential_chain", chain="env", validation="none"))
    r = db.role()
    db.conn.execute(f'GRANT USAGE ON FOREIGN SERVER plain_s3 TO "{r}"')
    c = db.connect(r)
    with pytest.raises(psycopg.Error) as e:
        c.execute("SELECT duckdb.store_table_secret('plain_s3', %s)", (table,))
    assert e.value.sqlstate == sqlstate, (e.value.sqlstate, e.value.diag.message_primary)
    assert_clean_error(e.value)
    assert db.conn.execute("SELECT to_regclass('victim') IS NOT NULL, "
                           "(SELECT count(*) FROM locked.duckdb_secrets)").fetchone() == (True, 0)
