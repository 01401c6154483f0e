"""A refused statement on a duckdb server or user mapping leaves no secret in
the server log, at PostgreSQL's default logging settings (log_min_error_statement
= error would log the whole statement); every line of the log is searched, no
exemption. The session's logging setting is as before afterwards."""

import psycopg
import pytest

from conftest import s3_server_sql


def _log_has(log_since, canary):
    return [line for line in log_since().splitlines() if canary in line]


@pytest.fixture
def admin(db):
    """A non-superuser with USAGE on the wrapper: may create servers and mappings."""
    name = db.role("admin")
    db.conn.execute(f'GRANT USAGE ON FOREIGN DATA WRAPPER duckdb TO "{name}"')
    return db.connect(name)


REFUSED = [
    ("secret-on-server", "CREATE SERVER leaky TYPE 's3' FOREIGN DATA WRAPPER duckdb OPTIONS (secret '{c}')", "42501"),
    ("token-on-server", "CREATE SERVER leaky TYPE 'huggingface' FOREIGN DATA WRAPPER duckdb OPTIONS (token '{c}')",
     "42501"),
    ("unknown-option", "CREATE SERVER leaky TYPE 's3' FOREIGN DATA WRAPPER duckdb OPTIONS (nonsense '{c}')", "HV00D"),
    ("bad-mapping", "CREATE USER MAPPING FOR PUBLIC SERVER ok_s3 OPTIONS (key_id 'k', secret '{c}', x 'y')",
     "HV00D"),
    ("bad-alter", "ALTER USER MAPPING FOR CURRENT_USER SERVER ok_s3 OPTIONS (ADD bearer_token '{c}')", "HV00D"),
    ("alter-server", "ALTER SERVER ok_s3 OPTIONS (ADD secret '{c}')", "42501"),
    ("postgresql-own-error", "CREATE SERVER ok_s3 TYPE 's3' FOREIGN DATA WRAPPER duckdb OPTIONS (region '{c}')",
     "42710"),
]


@pytest.mark.parametrize("who", ["superuser", "admin"])
@pytest.mark.parametrize("what,stmt,sqlstate", REFUSED, ids=[r[0] for r in REFUSED])
def test_a_refused_statement_leaves_no_secret_in_the_log(db, s3, admin, log_since, who, what, stmt, sqlstate):
    conn = db.conn if who == "superuser" else admin
    conn.execute(s3_server_sql("ok_s3", s3))
    conn.execute("CREATE USER MAPPING FOR CURRENT_USER SERVER ok_s3 OPTIONS (key_id 'k', secret 's')")
    canary = f"CANARY-log-{what}-{who}"
    with pytest.raises(psycopg.Error) as e:
        conn.execute(stmt.format(c=canary))
    assert e.value.sqlstate == sqlstate, (e.value.sqlstate, str(e.value))
    assert conn.execute("SHOW log_min_error_statement").fetchone() == ("error",)
    assert "ERROR" in log_since()                   # the error itself is logged ...
    assert _log_has(log_since, canary) == []        # ... its statement is not


def test_the_sessions_setting_is_back_after_a_statement_that_succeeded(db, s3, log_since):
    c = db.connect()
    c.execute("BEGIN")
    c.execute(s3_server_sql("fine_s3", s3))
    c.execute("CREATE USER MAPPING FOR CURRENT_USER SERVER fine_s3 OPTIONS (key_id 'k', secret 'CANARY-log-fine')")
    assert c.execute("SHOW log_min_error_statement").fetchone() == ("error",)
    c.execute("COMMIT")
    # A later failing statement is logged with its text, as PostgreSQL's default says.
    with pytest.raises(psycopg.Error):
        c.execute("SELECT 'marker-for-the-log' || 1/0")
    assert _log_has(log_since, "marker-for-the-log")
    # not left as a session-level SET: the configuration file's value, and source, again
    assert c.execute("SELECT source FROM pg_settings WHERE name = 'log_min_error_statement'").fetchone()[0] in (
        "default", "configuration file")


def test_a_session_setting_of_its_own_is_kept(db, s3):
    c = db.connect()
    c.execute("SET log_min_error_statement = 'warning'")
    c.execute(s3_server_sql("own_s3", s3))
    assert c.execute("SHOW log_min_error_statement").fetchone() == ("warning",)
    with pytest.raises(psycopg.Error):
        c.execute("ALTER SERVER own_s3 OPTIONS (ADD secret 'CANARY-log-own')")
    assert c.execute("SHOW log_min_error_statement").fetchone() == ("warning",)


def test_nothing_is_left_raised_while_the_checking_trigger_is_disabled(db, s3):
    """Bulk loads and restores may disable duckdb_secrets_ddl: the start trigger
    then leaves the setting alone (nobody would put it back)."""
    c = db.connect()
    c.execute("ALTER EVENT TRIGGER duckdb_secrets_ddl DISABLE")
    try:
        c.execute(s3_server_sql("bulk_s3", s3))
        assert c.execute("SHOW log_min_error_statement").fetchone() == ("error",)
    finally:
        c.execute("ALTER EVENT TRIGGER duckdb_secrets_ddl ENABLE")


@pytest.mark.parametrize("setting", ["log_statement = 'ddl'", "log_min_duration_statement = 0"])
def test_a_setting_that_logs_statement_text_is_pointed_out_once(db, s3, setting):
    c = db.connect()
    notices = []
    c.add_notice_handler(lambda d: notices.append((d.message_primary, d.message_hint)))
    c.execute(f"SET {setting}")
    c.execute(s3_server_sql("noted_s3", s3))
    c.execute("CREATE USER MAPPING FOR CURRENT_USER SERVER noted_s3 OPTIONS (key_id 'k', secret 's')")
    c.execute("ALTER USER MAPPING FOR CURRENT_USER SERVER noted_s3 OPTIONS (SET secret 't')")
    warned = [n for n in notices if "may log this statement" in n[0]]
    assert len(warned) == 1 and "duckdb.set_user_mapping" in warned[0][1]


def test_no_warning_at_default_settings(db, s3):
    c = db.connect()
    notices = []
    c.add_notice_handler(lambda d: notices.append(d.message_primary))
    c.execute(s3_server_sql("quiet_s3", s3))
    c.execute("CREATE USER MAPPING FOR CURRENT_USER SERVER quiet_s3 OPTIONS (key_id 'k', secret 's')")
    assert not [n for n in notices if "may log this statement" in n]
