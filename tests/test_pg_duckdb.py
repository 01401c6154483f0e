"""What a user migrating from pg_duckdb meets: the scenario of pg_duckdb's own
secrets regression script (test/regression/sql/duckdb_secrets.sql), step by
step, with the documented differences (docs/migration.md) asserted as such;
and pg_duckdb's extension functions over the wheels we ship."""

import psycopg
import pytest

from conftest import assert_clean_error

SPLIT = ("map_from_entries(list_transform(list_transform(regexp_split_to_array(secret_string, ';'), "
         "x -> regexp_split_to_array(x, '=')), x -> struct_pack(k := x[1], v := x[2])))")


def _j(conn, duck):
    return [r[0] for r in conn.execute("SELECT * FROM duckdb.query_json(%s)", (duck,)).fetchall()]


def _fails(conn, sql, sqlstate, *secrets):
    with pytest.raises(psycopg.Error) as e:
        conn.execute(sql)
    assert e.value.sqlstate == sqlstate, str(e.value)
    assert_clean_error(e.value, *secrets)
    return e.value


def test_pg_duckdb_secrets_regression_scenario(db):
    c = db.conn
    # Invalid type; sensitive options on a server, in any case.
    _fails(c, "CREATE SERVER invalid_duckdb_server TYPE 'unknown' FOREIGN DATA WRAPPER duckdb", "HV024")
    _fails(c, "CREATE SERVER invalid_duckdb_server TYPE 'http' FOREIGN DATA WRAPPER duckdb "
              "OPTIONS (hTtP_pRoXy_PaSsWoRd 'very secret')", "42501", "very secret")
    _fails(c, "CREATE SERVER invalid_duckdb_server TYPE 's3' FOREIGN DATA WRAPPER duckdb "
              "OPTIONS (SECRET 'dont leak me', session_TOKEN 'shhhhh')", "42501", "dont leak me", "shhhhh")
    _fails(c, "CREATE SERVER invalid_duckdb_server TYPE 'azure' FOREIGN DATA WRAPPER duckdb "
              "OPTIONS (CONNECTION_STRING 'all my life secrets here')", "42501", "all my life secrets here")
    # No secret was created. (pg_duckdb: SELECT * FROM duckdb.query(...) with no column list.)
    assert _j(c, "SELECT count(*) AS n FROM duckdb_secrets()") == [{"n": 0}]

    c.execute("CREATE SERVER valid_s3_server TYPE 's3' FOREIGN DATA WRAPPER duckdb")
    assert [r["name"] for r in _j(c, "FROM which_secret('s3://some-bucket/file.parquet', 's3')")] == [
        "valid_s3_server"]
    for t in ("r2", "huggingface", "gcs"):
        c.execute(f"CREATE SERVER valid_{t}_server TYPE '{t}' FOREIGN DATA WRAPPER duckdb")
    c.execute("CREATE SERVER valid_http_server TYPE 'http' FOREIGN DATA WRAPPER duckdb")
    assert _j(c, "SELECT name, type FROM duckdb_secrets() ORDER BY name") == [
        {"name": "valid_gcs_server", "type": "gcs"}, {"name": "valid_http_server", "type": "http"},
        {"name": "valid_huggingface_server", "type": "huggingface"}, {"name": "valid_r2_server", "type": "r2"},
        {"name": "valid_s3_server", "type": "s3"}]

    c.execute("SELECT duckdb.install_extension('aws')")
    c.execute("CREATE SERVER valid_s3_cred_chain TYPE 's3' FOREIGN DATA WRAPPER duckdb "
              "OPTIONS (PROVIDER 'credential_chain', VALIDATION 'none')")
    for t in ("r2", "huggingface", "gcs", "http"):
        c.execute(f"DROP SERVER valid_{t}_server")
    # Difference: a credential chain reaches DuckDB resolved (provider config); duckdb.secrets() says chain.
    assert _j(c, f"SELECT name, {SPLIT}.provider AS provider FROM duckdb_secrets() ORDER BY name") == [
        {"name": "valid_s3_cred_chain", "provider": "config"}, {"name": "valid_s3_server", "provider": "config"}]
    assert c.execute("SELECT provider FROM duckdb.secrets() WHERE name = 'valid_s3_cred_chain'").fetchone() == (
        "credential_chain",)
    c.execute("DROP SERVER valid_s3_server")
    c.execute("DROP SERVER valid_s3_cred_chain")
    assert _j(c, "SELECT name, type FROM duckdb_secrets()") == []

    # With a user mapping: DuckDB itself redacts the secret.
    c.execute("CREATE SERVER valid_s3_server TYPE 's3' FOREIGN DATA WRAPPER duckdb")
    c.execute("CREATE USER MAPPING FOR CURRENT_USER SERVER valid_s3_server "
              "OPTIONS (KEY_ID 'my_secret_key', SECRET 'my_secret_value')")
    assert _j(c, f"SELECT name, {SPLIT}.key_id AS key_id, {SPLIT}.secret AS secret FROM duckdb_secrets()") == [
        {"name": "valid_s3_server", "key_id": "my_secret_key", "secret": "redacted"}]
    c.execute("DROP SERVER valid_s3_server CASCADE")
    assert _j(c, "SELECT name FROM duckdb_secrets()") == []

    # Simple secrets. Difference: one per type and scope (DuckDB would pick between two by name).
    simple = "SELECT duckdb.create_simple_secret({})"
    assert c.execute(simple.format("'S3', 'my first key', 'my secret', 'my session token', 'my-region-42'")
                     ).fetchone() == ("simple_s3_secret",)
    _fails(c, simple.format("'S3', 'my other key', 'my secret', 'my session token'"), "42710", "my secret")
    _fails(c, simple.format("'S3', 'my third key', 'my secret'"), "42710", "my secret")
    named = c.execute(simple.format(
        "'S3', key_id := 'my named key', secret := 'my secret', session_token := 'foo', url_style := 'path', "
        "provider := 'credential_chain', endpoint := 'my-endpoint.com', scope := 's3://my-bucket', "
        "validation := 'none'")).fetchone()[0]
    assert named == "simple_s3_secret_1"
    # Difference: url_style takes DuckDB's values only.
    _fails(c, f"ALTER SERVER {named} OPTIONS (SET endpoint 'my_other_endoint', SET url_style 'true')", "HV024")
    c.execute(f"ALTER SERVER {named} OPTIONS (SET endpoint 'my_other_endoint')")
    c.execute(f"ALTER USER MAPPING FOR CURRENT_USER SERVER {named} OPTIONS (SET secret 'a better secret')")
    assert c.execute(simple.format("'R2', 'my r2 key1', 'my secret', 'my session token', 'my-region-42'")
                     ).fetchone() == ("simple_r2_secret",)
    assert c.execute(simple.format("'GCS', 'my first key', 'my secret', 'my session token', 'my-region-42'")
                     ).fetchone() == ("simple_gcs_secret",)
    _fails(c, simple.format("'BadType', '-', '-'"), "22023")
    assert c.execute("SELECT duckdb.create_azure_secret('hello world', "
                     "scope := 'az://myaccount.blob.core.windows.net/')").fetchone() == ("azure_secret",)

    got = _j(c, f"SELECT name, type, {SPLIT}.key_id AS key_id, {SPLIT}.region AS region, "
                f"{SPLIT}.secret AS secret, {SPLIT}.connection_string AS cs FROM duckdb_secrets() ORDER BY name")
    assert [(g["name"], g["type"], g["key_id"], g["region"]) for g in got] == [
        ("azure_secret", "azure", None, None), ("simple_gcs_secret", "gcs", "my first key", "my-region-42"),
        ("simple_r2_secret", "r2", "my r2 key1", "my-region-42"),
        ("simple_s3_secret", "s3", "my first key", "my-region-42"), ("simple_s3_secret_1", "s3", "my named key", None)]
    assert {g["secret"] for g in got} == {None, "redacted"} and got[0]["cs"] == "redacted"
    c.execute("SET client_min_messages = warning")
    c.execute("DROP SERVER simple_s3_secret, simple_s3_secret_1, simple_r2_secret, simple_gcs_secret, "
              "azure_secret CASCADE")
    c.execute("DELETE FROM duckdb.extensions WHERE name = 'aws'")
    assert c.execute("SELECT count(*) FROM duckdb.extensions").fetchone() == (0,)


# --- pg_duckdb's extension functions -------------------------------------------------

LOADED = "SELECT * FROM duckdb.query($$ SELECT extension_name FROM duckdb_extensions() WHERE loaded $$) AS t(n text)"


def _loaded(conn):
    return {n for (n,) in conn.execute(LOADED).fetchall()}


def test_install_and_autoload_map_onto_shipped_extensions(db):
    c = db.conn
    assert "postgres_scanner" not in _loaded(c)
    c.execute("SELECT duckdb.install_extension('postgres')")          # DuckDB's alias
    c.execute("SELECT duckdb.install_extension('iceberg', 'core')")
    assert c.execute("SELECT name, autoload, repository FROM duckdb.extensions ORDER BY 1").fetchall() == [
        ("iceberg", True, "core"), ("postgres_scanner", True, "core")]
    c.execute("SELECT duckdb.autoload_extension('iceberg', false)")
    c.execute("SELECT duckdb.recycle_ddb()")
    loaded = _loaded(c)
    assert "postgres_scanner" in loaded and "iceberg" not in loaded     # a new engine loads autoload rows
    c.execute("SELECT duckdb.load_extension('iceberg')")                # now, with what it needs
    assert {"iceberg", "avro"} <= _loaded(c)
    c.execute("SELECT duckdb.load_extension('json')")                   # compiled in: nothing to do


@pytest.mark.parametrize("sql, sqlstate, words", [
    ("SELECT duckdb.install_extension('motherduck')", "22023", "Shipped: avro, aws"),
    ("SELECT duckdb.install_extension('httpfs', 'community')", "0A000", "nothing is ever downloaded"),
    ("SELECT duckdb.install_extension('https://example.com/x.duckdb_extension')", "22023", "not shipped"),
    ("SELECT duckdb.install_extension(NULL)", "22004", "must not be null"),
    ("SELECT duckdb.autoload_extension('azure')", "42704", "not installed"),
    ("SELECT duckdb.load_extension('motherduck')", "22023", "not shipped"),
    ("INSERT INTO duckdb.extensions VALUES ('../../etc/passwd')", "22023", "not shipped"),
])
def test_extension_functions_refuse_clearly(db, sql, sqlstate, words):
    e = _fails(db.conn, sql, sqlstate)
    assert words in " ".join(filter(None, (e.diag.message_primary, e.diag.message_detail, e.diag.message_hint)))
    assert db.conn.execute("SELECT count(*) FROM duckdb.extensions").fetchone() == (0,)


def test_extension_rights_are_pg_duckdbs(db, world):
    alice = db.connect(world["alice"])
    for sql in ("SELECT duckdb.install_extension('aws')", "SELECT duckdb.autoload_extension('aws')",
                "INSERT INTO duckdb.extensions VALUES ('aws')"):
        _fails(alice, sql, "42501")
    assert alice.execute("SELECT count(*) FROM duckdb.extensions").fetchone() == (0,)    # readable
    # A non-superuser's engine keeps only what its secrets need.
    e = _fails(alice, "SELECT duckdb.load_extension('postgres_scanner')", "42501")
    assert "non-superuser" in e.diag.message_detail
    alice.execute("SELECT duckdb.load_extension('httpfs')")           # already there: nothing to do
    db.conn.execute("SELECT duckdb.install_extension('postgres_scanner')")
    alice.execute("SELECT duckdb.recycle_ddb()")
    scan = ("SELECT * FROM duckdb.query($$ SELECT count(*) FROM duckdb_functions() "
            "WHERE function_name = 'postgres_scan' $$) AS t(n bigint)")
    assert alice.execute(scan).fetchone() == (0,)                     # autoload is for superusers' engines
    assert db.conn.execute(scan).fetchone() == (1,)


def test_extensions_table_is_dumped(db, cluster, tmp_path):
    """pg_dump keeps the rows (a configuration table of the extension)."""
    import subprocess

    import localenv
    db.conn.execute("SELECT duckdb.install_extension('aws')")
    cmd = [f"{localenv.PG_BIN}/pg_dump", "--data-only", "-t", "duckdb.extensions", cluster.dsn(db.dbname)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    assert "aws" in out and "duckdb.extensions" in out


def test_pg_duckdb_only_settings_get_one_notice(db):
    """SET duckdb.force_execution = true (a pg_duckdb habit) used to do nothing,
    silently; now the session's first engine says so, once, and where to read on."""
    c = db.connect()
    notices = []
    c.add_notice_handler(lambda d: notices.append((d.message_primary, d.message_hint)))
    c.execute("SET duckdb.force_execution = true")
    c.execute("SET duckdb.postgres_role = 'x'")
    q = "SELECT * FROM duckdb.query('SELECT 1') AS t(a int)"
    assert c.execute(q).fetchall() == [(1,)]
    assert c.execute(q).fetchall() == [(1,)]
    c.execute("SELECT duckdb.recycle_ddb()")
    assert c.execute(q).fetchall() == [(1,)]
    said = [n for n in notices if "no effect" in n[0]]
    assert said == [("duckdb.force_execution, duckdb.postgres_role have no effect in duckdb_secrets",
                     "These are pg_duckdb settings; docs/migration.md says what takes their place here.")], notices
    quiet = db.connect()
    quiet_notices = []
    quiet.add_notice_handler(lambda d: quiet_notices.append(d.message_primary))
    assert quiet.execute(q).fetchall() == [(1,)]
    assert not [n for n in quiet_notices if "no effect" in n]
