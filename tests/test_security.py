"""What a non-superuser may and may not do in the engine, values reaching
DuckDB unchanged (never spliced into SQL), and errors that never leak."""

import json

import psycopg
import pytest

from conftest import assert_clean_error, q, s3_server_sql

CANARY = "CANARY-secret-9d1e5b"


@pytest.fixture
def user(db):
    """A non-superuser allowed to run duckdb.query and raw_query."""
    name = db.role("carol")
    db.conn.execute(f'GRANT EXECUTE ON FUNCTION duckdb.query(text), duckdb.raw_query(text) TO "{name}"')
    return db.connect(name)


def test_non_superuser_gets_no_local_file_system(db, user):
    """One case end to end; the list: tests/test_refusals.py (test_local_files_through_every_reader)."""
    with pytest.raises(psycopg.Error) as e:
        q(user, "SELECT * FROM read_csv('/etc/passwd')")
    assert e.value.sqlstate == "42501", e.value
    assert "root:" not in str(e.value)
    assert_clean_error(e.value)


def test_superuser_does_read_local_files(db):
    # The same read works for a superuser: the refusal above is the rule, not an accident.
    rows = q(db.conn, "SELECT content FROM read_text('/etc/passwd')")
    assert "root:" in rows[0][0]


def test_members_of_both_file_roles_get_local_files(db):
    name = db.role("files")
    db.conn.execute(f'GRANT pg_read_server_files, pg_write_server_files TO "{name}"')
    db.conn.execute(f'GRANT EXECUTE ON FUNCTION duckdb.query(text) TO "{name}"')
    rows = q(db.connect(name), "SELECT content FROM read_text('/etc/passwd')")
    assert "root:" in rows[0][0]


def test_non_superuser_cannot_change_the_engine(db, user):
    """One case end to end; the list: tests/test_refusals.py (test_lifting_restrictions)."""
    with pytest.raises(psycopg.Error) as e:
        q(user, "SET threads = 8")
    assert e.value.sqlstate == "42501", e.value
    assert_clean_error(e.value)
    # ... and the engine is unchanged.
    assert q(user, "SELECT current_setting('threads')::VARCHAR") == [("1",)]


def test_non_superuser_can_still_compute(db, user):
    assert q(user, "SELECT sum(range)::BIGINT FROM range(100)", "s bigint") == [(4950,)]
    assert q(user, "CREATE TABLE mine AS SELECT 1 AS i", "n bigint") == [(1,)]


def test_raw_query_is_held_to_the_same_rules(db, user):
    with pytest.raises(psycopg.Error) as e:
        user.execute("SELECT duckdb.raw_query('SET threads = 8')")
    assert e.value.sqlstate == "42501"
    with pytest.raises(psycopg.Error) as e:
        user.execute("SELECT duckdb.raw_query($$ SELECT * FROM read_text('/etc/passwd') $$)")
    assert e.value.sqlstate == "42501"


def test_query_needs_execute_granted(db):
    nobody = db.connect(db.role("nobody"))
    for sql in ["SELECT * FROM duckdb.query('SELECT 1') AS t(x int)",
                "SELECT duckdb.raw_query('SELECT 1')"]:
        with pytest.raises(psycopg.Error) as e:
            nobody.execute(sql)
        assert e.value.sqlstate == "42501", sql
    # Its PL/Python half is reachable, but checks the same privilege (and
    # answers with an error array rather than running anything).
    assert nobody.execute("SELECT (duckdb._query_start('SELECT 1'))[1]").fetchone() == ("42501",)
    # The internal helpers that run as the extension owner refuse direct calls.
    for sql in ["SELECT * FROM duckdb._role_secrets('guess')",
                "SELECT duckdb._store_mapping_options('guess', 'x', ARRAY['secret=y'])"]:
        with pytest.raises(psycopg.Error) as e:
            nobody.execute(sql)
        assert e.value.sqlstate == "42501", sql
        assert_clean_error(e.value)


def test_usage_on_the_fdw_is_not_granted_to_public(db):
    assert db.conn.execute(
        "SELECT has_foreign_data_wrapper_privilege('public', 'duckdb', 'USAGE')").fetchone() == (False,)
    nobody = db.connect(db.role("nobody"))
    with pytest.raises(psycopg.Error) as e:
        nobody.execute("SELECT duckdb.create_simple_secret(type := 'S3', key_id := 'k', secret := %s)", (CANARY,))
    assert e.value.sqlstate == "42501"
    assert_clean_error(e.value, CANARY)


TRICKY = [
    "it's",
    "back\\slash",
    "$$dollar$$",
    "'); DROP TABLE victim; --",
    "ünïcødé-密钥-🔑",
    '"double" quotes',
    "semi;colon=equals",
]


@pytest.mark.parametrize("value", TRICKY)
def test_values_reach_duckdb_unchanged(db, value):
    db.conn.execute("CREATE TABLE victim (i int)")
    # Through the helper (bound parameters all the way) ...
    db.conn.execute("SELECT duckdb.create_simple_secret(type := 'S3', key_id := %s, secret := %s, region := %s)",
                    (value, CANARY, value))
    # ... and through DDL (the value quoted as a SQL literal).
    db.conn.execute("CREATE SERVER by_ddl TYPE 's3' FOREIGN DATA WRAPPER duckdb OPTIONS (region %s)"
                    .replace("%s", psycopg.sql.Literal(value).as_string(db.conn)))
    got = db.conn.execute(
        "SELECT * FROM duckdb.query($$ SELECT name, to_json(map_from_entries([('k', secret_string)]))::VARCHAR "
        "FROM duckdb_secrets() ORDER BY name $$) AS t(name text, s text)").fetchall()
    by_name = {n: json.loads(s)["k"] for n, s in got}
    assert f";region={value};" in by_name["by_ddl"] + ";"
    assert f";key_id={value};" in by_name["simple_s3_secret"]
    assert f";region={value};" in by_name["simple_s3_secret"] + ";"
    assert CANARY not in json.dumps(by_name)                  # DuckDB redacts secret
    assert db.conn.execute("SELECT count(*) FROM victim").fetchone() == (0,)


@pytest.mark.parametrize("value", ["line1\nline2", "a\r\nX-Injected: 1", "tab\there", "bell\x07"])
def test_control_characters_are_refused_without_echo(db, value):
    """A CR/LF could add HTTP headers or requests to what DuckDB sends: option
    values with control characters are refused (HV024), the value never shown."""
    for run in (lambda: db.conn.execute("SELECT duckdb.create_simple_secret(type := 'S3', key_id := 'AKIAX', "
                                        "secret := %s, region := %s)", (CANARY, value)),
                lambda: db.conn.execute("CREATE SERVER by_ddl TYPE 's3' FOREIGN DATA WRAPPER duckdb OPTIONS (region "
                                        + psycopg.sql.Literal(value).as_string(db.conn) + ")")):
        with pytest.raises(psycopg.Error) as e:
            run()
        assert e.value.sqlstate == "HV024" and "control characters" in e.value.diag.message_primary
        assert value not in str(e.value) and CANARY not in str(e.value)
    assert db.conn.execute("SELECT count(*) FROM pg_foreign_server").fetchone() == (0,)


def test_secret_never_in_sql_text_of_create_simple_secret(db, log_since):
    # The helper stores sensitive values with bound parameters: none of the SQL
    # it runs carries them, so no log line does, even with every SPI error logged.
    db.conn.execute("SET log_min_messages = 'debug1'")
    db.conn.execute("SELECT duckdb.create_simple_secret('S3', 'AKIAX', %s)", (CANARY,))
    mapping = db.conn.execute("SELECT umoptions FROM pg_user_mappings").fetchone()[0]
    assert f"secret={CANARY}" in mapping
    assert CANARY not in log_since()


def test_errors_are_native_and_scrubbed(db, s3, log_since):
    db.conn.execute(s3_server_sql("leaky", s3))
    db.conn.execute(f"CREATE USER MAPPING FOR CURRENT_USER SERVER leaky OPTIONS (key_id 'k', secret '{CANARY}')")
    # A DuckDB error whose text would contain the secret value is scrubbed.
    with pytest.raises(psycopg.Error) as e:
        db.conn.execute(f"SELECT * FROM duckdb.query($$ SELECT error('boom ' || '{CANARY[:3]}' || '{CANARY[3:]} boom')"
                        " $$) AS t(x int)")
    assert "********" in e.value.diag.message_primary and "boom" in e.value.diag.message_primary
    assert_clean_error(e.value, CANARY)
    notices = []
    db.conn.add_notice_handler(lambda d: notices.append(d.message_primary))
    db.conn.execute(f"SELECT duckdb.raw_query($$ SELECT 'x-' || '{CANARY[:10]}' || '{CANARY[10:]}' AS leak $$)")
    assert notices and CANARY not in notices[0] and "********" in notices[0]
    assert CANARY not in log_since()
