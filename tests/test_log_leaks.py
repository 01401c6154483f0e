"""A refused statement on a duckdb server or user mapping leaves no secret in
the server log, at PostgreSQL's default logging settings (log_min_error_statement
= error would log the whole statement); every line of the log is searched, no
exemption. The session's logging setting is as before afterwards."""

import psycopg
import pytest

from conftest import assert_clean_error, q, s3_server_sql


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
    warned = [n for n in notices if "this statement's text" in n[0]]
    assert len(warned) == 1 and "duckdb.set_user_mapping" in warned[0][1]


def test_no_warning_at_default_settings(db, s3):
    c = db.connect()
    notices = []
    c.add_notice_handler(lambda d: notices.append(d.message_primary))
    # The test cluster loads pg_stat_statements, which keeps utility statements' text (and is
    # pointed out, test_pg_stat_statements_keeping_utility_text_is_pointed_out): not a default.
    c.execute("SET pg_stat_statements.track_utility = off")
    c.execute(s3_server_sql("quiet_s3", s3))
    c.execute("CREATE USER MAPPING FOR CURRENT_USER SERVER quiet_s3 OPTIONS (key_id 'k', secret 's')")
    assert not [n for n in notices if "this statement's text" in n]


# --- found by a red-team helper (0.4.0) -----------------------------------------

def test_a_refused_statement_run_by_execute_leaves_no_secret_in_a_context_line(db, s3, admin, log_since):
    """A DO block or function that EXECUTEs the DDL: PostgreSQL's CONTEXT line
    quotes the statement; it is left out of the log like the statement."""
    admin.execute(s3_server_sql("ok_s3", s3))
    admin.execute("CREATE USER MAPPING FOR CURRENT_USER SERVER ok_s3 OPTIONS (key_id 'k', secret 's')")
    other = db.role("other")
    for i, body in enumerate([
            "EXECUTE 'ALTER USER MAPPING FOR CURRENT_USER SERVER ok_s3 OPTIONS (SET secret ''{c}'', ADD bogus ''x'')'",
            f"EXECUTE 'ALTER USER MAPPING FOR \"{other}\" SERVER ok_s3 OPTIONS (SET secret ''{{c}}'')'",
            "PERFORM duckdb.set_user_mapping('ok_s3', 'nobody_here', '{{\"secret\": \"{c}\"}}')",
            "PERFORM duckdb.create_simple_secret('S3', 'k', '{c}', use_ssl := 'maybe')"]):
        canary = f"CANARY-log-context-{i}"
        with pytest.raises(psycopg.Error):
            admin.execute(f"DO $$BEGIN {body.format(c=canary)}; END$$")
        assert admin.execute("SHOW log_min_error_statement").fetchone() == ("error",)
        assert admin.execute("SHOW log_error_verbosity").fetchone() == ("default",)
        assert _log_has(log_since, canary) == []


def test_a_role_cannot_keep_its_failing_statements_out_of_the_log(db, s3, admin, log_since):
    """The values the triggers save are in settings any role can write; the
    session's logging comes back to its default whatever they hold."""
    admin.execute("SET duckdb.saved_log_min_error_statement = 'panic'")
    admin.execute("SET duckdb.saved_log_error_verbosity = 'terse'")
    admin.execute(s3_server_sql("evade", s3))
    assert admin.execute("SHOW log_min_error_statement").fetchone() == ("error",)
    assert admin.execute("SHOW log_error_verbosity").fetchone() == ("default",)
    # Cleared in the middle of the statement, by a function the DDL runs.
    schema = admin.execute("SELECT current_user").fetchone()[0]
    db.conn.execute(f'CREATE SCHEMA "{schema}" AUTHORIZATION "{schema}"')
    admin.execute("CREATE FUNCTION clear_saved(a int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN "
                  "PERFORM set_config('duckdb.saved_log_min_error_statement', '', false); RETURN a; END $$")
    admin.execute("CREATE TABLE parted (a int) PARTITION BY LIST (clear_saved(a))")
    admin.execute("CREATE TABLE parted_default PARTITION OF parted DEFAULT")
    admin.execute("INSERT INTO parted VALUES (1)")
    admin.execute("CREATE FOREIGN TABLE parted_6 PARTITION OF parted FOR VALUES IN (6) SERVER evade")
    assert admin.execute("SHOW log_min_error_statement").fetchone() == ("error",)
    with pytest.raises(psycopg.Error):
        admin.execute("SELECT 'evade-marker-1/0' || 1/0")
    # A later failing statement is logged with its text (a marker, not a secret).
    assert "evade-marker-1/0" in log_since()


def test_an_internal_function_called_directly_leaves_no_value_in_the_log(db, s3, admin, log_since):
    with pytest.raises(psycopg.Error) as e:
        admin.execute("SELECT duckdb._store_mapping_options('x', 'ok', ARRAY['secret=CANARY-log-internal'])")
    assert e.value.sqlstate == "42501"
    assert _log_has(log_since, "CANARY-log-internal") == []


CREDENTIALS_IN_DUCKDB_SQL = [
    "SELECT 'secret={c}'::INTEGER",
    "SELECT * FROM read_parquet('s3://user:{c}@bucket/x.parquet')",
    "SELECT * FROM read_parquet('s3://' || 'user:{c}@bucket/x.parquet')",
    "SELECT * FROM read_csv('https://127.0.0.1:9/x.csv?sv=1&sig={c}')",
    "SELECT * FROM read_csv('https://127.0.0.1:9/x.csv?X-Amz-Signature={c}')",
    "SELECT * FROM read_csv('https://127.0.0.1:9/x.csv?api_key={c}')",
    # Judged on DuckDB's tokens (issue 31): a pattern over the text logged each of these.
    "SELECT 'x'::INTEGER -- {c}",
    "SELECT 'x'::INTEGER /* {c} */",
    "SELECT ('host=h pass' || 'word={c}')::INTEGER",
    "SELECT 'pass%77ord={c}'::INTEGER",
    "SELECT E'{c}\\n'::INTEGER",
    "SELECT * FROM \"https://127.0.0.1:9/x.csv?X-Amz-Credential={c}\"",
    # red team (issue 31): URL and credential forms the first judgement missed
    "SELECT * FROM read_csv('https://app:CAN@{c}@127.0.0.1:9/x.csv')",
    "SELECT * FROM read_csv('https://127.0.0.1:9/x.csv;jsessionid={c}')",
    "SELECT * FROM read_csv('https://127.0.0.1:9/x.csv;foo={c}')",
    "SELECT * FROM read_csv('https://127.0.0.1:9/x.csv?{c}')",
    "SELECT * FROM read_csv('https://127.0.0.1:9/x.csv?a=b&&{c}')",
    "SELECT 'Basic {c}'::INTEGER",
    "SELECT 'Digest username=\"app\", response=\"{c}\"'::INTEGER",
    "SELECT 'scott/{c}@orcl'::INTEGER",
    "SELECT 'Server=db;PW={c}'::INTEGER",
    "SELECT * FROM read_csv('s3://bucket/x.csv?s3_endpoint=u:{c}@127.0.0.1:9')",
    "SELECT 'Negotiate {c}'::INTEGER",
    "SELECT 'NTLM {c}'::INTEGER",
    "SELECT 'passcode={c}'::INTEGER",
    "SELECT 'client_assertion={c}'::INTEGER",
    "SELECT 'sid={c}'::INTEGER",
    # red team, round 6: DuckDB quotes some values lower-cased, or a quoted name as written
    "SELECT struct_extract({{'a': 1}}, 'u:{c}@h')",
    "SELECT struct_extract({{'a': 1}}, 'Server=h;PWD={c}')",
    "SELECT 1::\"u:{c}@h\"",
    "FROM read_csv('https://127.0.0.1:9/nosuch.csv#sig={c}')",
    "FROM read_csv('https://127.0.0.1:9/nosuch.csv%3Fsig%3D{c}')",
]


@pytest.mark.parametrize("sql", CREDENTIALS_IN_DUCKDB_SQL)
def test_a_failing_engine_query_with_a_credential_in_it_is_logged_without_it(db, log_since, sql):
    canary = "CANARY-log-query-" + str(CREDENTIALS_IN_DUCKDB_SQL.index(sql))
    with pytest.raises(psycopg.Error) as e:
        db.conn.execute("SELECT * FROM duckdb.query(%s) AS t(x text)", (sql.format(c=canary),))
    assert canary not in str(e.value) and canary not in (e.value.diag.message_detail or "")
    # The SQL written into the statement's text (what log_min_error_statement logs)
    with pytest.raises(psycopg.Error) as e:
        q(db.conn, sql.format(c=canary))
    assert canary not in str(e.value) and canary not in (e.value.diag.message_detail or "")
    assert db.conn.execute("SHOW log_min_error_statement").fetchone() == ("error",)
    assert _log_has(log_since, canary) == []


@pytest.mark.parametrize("sql", [
    "SELECT '{m}'::INTEGER FROM (SELECT 1 AS authors)",     # words, not letters: authors is no auth
    "SELECT '{m}'::INTEGER WHERE 'a--b' <> '/*'",           # no comment in a literal
    "SELECT * FROM read_csv('{m}?s3_region=eu')",           # a query string of settings that never are one
])
def test_a_failing_engine_query_without_a_credential_is_logged_with_its_text(db, log_since, sql):
    marker = "marker-logged-" + str(abs(hash(sql)) % 10000)
    with pytest.raises(psycopg.Error):
        q(db.conn, sql.format(m=marker))
    assert any("STATEMENT:" in line for line in _log_has(log_since, marker)), log_since()[-2000:]


def test_a_password_in_a_value_postgresql_cannot_convert_is_masked(db, log_since):
    """Red team (issue 31): a value the query returned, quoted by the conversion
    error, is masked as DuckDB's own errors are (a connection string's password)."""
    canary = "CANARY-log-conv"
    with pytest.raises(psycopg.Error) as e:
        db.conn.execute("SELECT * FROM duckdb.query(%s, %s::jsonb) AS t(a int)",
                        ("SELECT 'postgres://app:' || $1 || '@db/sales' AS k", f'["{canary}"]'))
    assert e.value.sqlstate == "22P02" and "postgres://app:********@db/sales" in str(e.value)
    assert _log_has(log_since, canary) == []


# Red team (1.0.0): the column list, not DuckDB, refuses these; the statement still holds the SQL.
FAILING_IN_THE_COLUMN_LIST = [
    ("SELECT '{c}' AS x", "a int"),                                  # 22P02: the role's own secret value
    ("SELECT 'x' AS y, '{c}' AS password", "a text"),                # 42804: credential-looking SQL
]


@pytest.mark.parametrize("sql,cols", FAILING_IN_THE_COLUMN_LIST)
def test_a_query_the_column_list_refuses_is_logged_without_its_credentials(db, s3, log_since, sql, cols):
    canary = s3.secret if "password" not in sql else "CANARY-log-collist"
    db.conn.execute(s3_server_sql("own_s3", s3, scope="s3://bucket"))
    db.conn.execute(f"CREATE USER MAPPING FOR CURRENT_USER SERVER own_s3 OPTIONS (key_id '{s3.key_id}', "
                    f"secret '{s3.secret}')")
    with pytest.raises(psycopg.Error) as e:
        q(db.conn, sql.format(c=canary), cols)          # the SQL as a literal in the statement's text
    assert e.value.sqlstate in ("22P02", "42804"), str(e.value)
    assert canary not in str(e.value)
    assert _log_has(log_since, canary) == []
    assert db.conn.execute("SHOW log_min_error_statement").fetchone() == ("error",)


@pytest.mark.parametrize("opt", [
    "extra_http_headers 'Authorization=Bearer CANARY-log-hdr'",
    "extra_http_headers 'X-Api-Key=CANARY-log-hdr'",
])
def test_a_credential_header_on_a_server_is_refused(db, opt, log_since):
    with pytest.raises(psycopg.Error) as e:
        db.conn.execute(f"CREATE SERVER h TYPE 'http' FOREIGN DATA WRAPPER duckdb OPTIONS ({opt})")
    assert e.value.sqlstate == "42501" and "carries a credential" in e.value.diag.message_primary
    assert_clean_error(e.value, "CANARY-log-hdr")
    assert _log_has(log_since, "CANARY-log-hdr") == []


@pytest.mark.parametrize("value", ["host=h password=CANARY-log-dbn", "postgresql://u:CANARY-log-dbn@h/db"])
def test_a_password_inside_a_connection_string_on_a_server_is_refused(db, value, log_since):
    with pytest.raises(psycopg.Error) as e:
        db.conn.execute(f"CREATE SERVER p TYPE 'postgres' FOREIGN DATA WRAPPER duckdb OPTIONS (dbname '{value}')")
    assert e.value.sqlstate == "42501" and "carries a password" in e.value.diag.message_primary
    assert _log_has(log_since, "CANARY-log-dbn") == []


def test_credential_headers_in_a_mapping_are_redacted_in_the_listing(db):
    db.conn.execute("CREATE SERVER h TYPE 'http' FOREIGN DATA WRAPPER duckdb OPTIONS (scope 'https://127.0.0.1:9/')")
    db.conn.execute("CREATE USER MAPPING FOR CURRENT_USER SERVER h "
                    "OPTIONS (extra_http_headers 'Authorization=Bearer CANARY-log-hdr2,X-Trace=on')")
    shown = db.conn.execute("SELECT secret_string FROM duckdb.secrets() WHERE name = 'h'").fetchone()[0]
    assert "CANARY-log-hdr2" not in shown and "Authorization=redacted" in shown and "X-Trace=on" in shown


# --- found by the third red-team helper (lakehouse types) ---------------------------

HIDDEN_CREDENTIALS = [
    ("ducklake", "metadata_path 'postgres:postgresql:///x?pass%77ord={c}'"),
    ("ducklake", "metadata_path 'postgres:postgresql:///x?%70assword={c}'"),
    ("postgres", "dbname 'postgresql:///x?%70assword={c}'"),
    ("ducklake", "metadata_path 'mysql:db=x passwd={c}'"),
    ("ducklake", "metadata_path 'postgres:dbname=x sslpassword={c}'"),
    ("postgres", "dbname 'dbname=x sslpassword={c}'"),
    ("iceberg", "oauth2_server_uri 'http://u:{c}@127.0.0.1:9/t'"),
    ("uc", "endpoint 'https://x:{c}@127.0.0.1:9'"),
    ("iceberg", "endpoint 'http://127.0.0.1:9/?access_token={c}'"),
    ("quack", "scope 'quack:127.0.0.1:9?token={c}'"),
    ("http", "extra_http_headers 'X-Databricks-Pat={c}'"),
    ("http", "extra_http_headers 'x=Bearer {c}'"),
    ("iceberg", "extra_http_headers 'Authorization: Bearer {c}'"),
    ("iceberg", "extra_http_headers 'X-Auth-Token {c}'"),
    ("ducklake", "metadata_path 'm', metadata_parameters 'password:{c}'"),
    ("ducklake", "metadata_path 'm', metadata_parameters 'client_secret={c}'"),
    ("ducklake", "metadata_path 'm', metadata_parameters 'uri=postgresql://u:{c}@h/db'"),
]


@pytest.mark.parametrize("type_name,opts", HIDDEN_CREDENTIALS, ids=[f"{t}-{i}" for i, (t, _) in
                                                                    enumerate(HIDDEN_CREDENTIALS)])
def test_a_credential_hidden_in_a_server_option_is_refused_without_echo(db, log_since, type_name, opts):
    canary = f"CANARY-log-hidden-{HIDDEN_CREDENTIALS.index((type_name, opts))}"
    with pytest.raises(psycopg.Error) as e:
        db.conn.execute(f"CREATE SERVER h TYPE '{type_name}' FOREIGN DATA WRAPPER duckdb "
                        f"OPTIONS ({opts.format(c=canary)})")
    assert e.value.sqlstate == "42501", (e.value.sqlstate, str(e.value))
    assert_clean_error(e.value, canary)
    assert _log_has(log_since, canary) == []


def test_client_credentials_are_masked_in_their_basic_form_too():
    """A token endpoint's error may echo the Authorization: Basic header."""
    import base64

    from duckdb_secrets import masking, validation
    from duckdb_secrets.masking import Scrubber
    spec = validation.secret_spec("ice", "iceberg", ["client_id=cid", "endpoint=http://127.0.0.1:9"],
                                  ["client_secret=CANARY-log-basic"])
    basic = base64.b64encode(b"cid:CANARY-log-basic").decode()
    assert basic not in Scrubber(masking.sensitive_values(spec))(f"bad creds: Basic {basic}")


def test_pg_stat_statements_keeping_utility_text_is_pointed_out(db, s3):
    c = db.connect()
    notices = []
    c.add_notice_handler(lambda d: notices.append((d.message_primary, d.message_detail or "")))
    c.execute(s3_server_sql("kept_s3", s3))     # a server's statement: its values are refused, never kept
    assert not [n for n in notices if "this statement's text" in n[0]]
    c.execute("CREATE USER MAPPING FOR CURRENT_USER SERVER kept_s3 OPTIONS (key_id 'k', secret 'dummy-s')")
    said = [n for n in notices if "this statement's text" in n[0]]
    assert len(said) == 1 and "pg_stat_statements" in said[0][1], notices


# The words and values behind that judgement (masking.py), without a cluster.
@pytest.mark.inprocess
@pytest.mark.parametrize("value,carries", [
    ("s3://bucket/data/x.parquet", False),
    ("s3://bucket/x.parquet?s3_region=eu-west-1", False),
    ("alice@example.com", False),
    ("authors", False),
    ("s3://bucket/x.parquet?versionId=3", True),        # a query-string name not known to be harmless
    ("https://127.0.0.1/x?sv=1&sig=abc", True),
    ("postgres://u:pw@h/db", True),
    ("https://token@h/x", True),
    ("user:pw@host", True),
    ("host=h sslpassword=x", True),
    ("AccountName=a;AccountKey=b", True),
    ("X-Api-Key", True),
    ("s3key", True),
    ("pass%77ord=x", True),
    ("Bearer abc", True),
    ("SessionToken", True),
    (None, True),                                        # a literal DuckDB read and this package cannot
])
def test_which_values_may_carry_a_credential(value, carries):
    from duckdb_secrets import masking
    assert masking.value_carries(value) is carries


@pytest.mark.inprocess
def test_the_pieces_of_a_url_that_are_masked():
    from duckdb_secrets import masking
    assert masking.url_pieces("s3://u:pw1x@b/x.parquet?s3_region=eu&X-Amz-Signature=sig9;token=tk77") == {
        "pw1x", "sig9", "tk77"}
    assert masking.url_pieces("s3://bucket/x.parquet") == set()


# --- found by the red team of issue 31: a statement stopped in any phase ------------

# DuckDB runs long before its first row (start) or returns rows for long (fetch)
STOPPED_PHASES = {
    "start": "SELECT count(*) FROM duckdb.query($$ SELECT count(*) FROM range(20000000000) t(i) "
             "WHERE 'password={c}' IS NOT NULL $$) AS t(n bigint)",
    "fetch": "SELECT count(*) FROM duckdb.query($$ SELECT i, 'password={c}' FROM range(1000000000) t(i) $$) "
             "AS t(i bigint, p text)",
    "json-fetch": "SELECT count(*) FROM duckdb.query_json($$ SELECT i FROM range(1000000000) t(i) "
                  "WHERE 's3://AKIAEXAMPLE:{c}@bucket/x.csv' IS NOT NULL $$)",
}


def _stopped(db, sql, how):
    """Runs sql as a role in its own session, stops it as `how` says after 1.5 s."""
    import threading
    import time
    role = db.role("stopped")
    db.conn.execute(f'GRANT duckdb_query TO "{role}"')
    conn = db.connect(role)
    conn.execute("SELECT * FROM duckdb.query('SELECT 1') AS t(x int)")      # the engine is up
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    if how == "timeout":
        conn.execute("SET statement_timeout = '1500ms'")
    out = {}

    def run():
        try:
            conn.execute(sql).fetchall()
        except psycopg.Error as e:
            out["error"] = e
    t = threading.Thread(target=run)
    t.start()
    if how != "timeout":
        time.sleep(1.5)
        fn = "pg_cancel_backend" if how == "cancel" else "pg_terminate_backend"
        db.conn.execute(f"SELECT {fn}(%s)", (pid,))
    t.join(60)
    assert "error" in out, "the statement was not stopped"
    return out["error"], conn


@pytest.mark.parametrize("phase", list(STOPPED_PHASES))
@pytest.mark.parametrize("how", ["timeout", "cancel", "terminate"])
def test_a_statement_stopped_in_any_phase_is_logged_without_its_credentials(db, log_since, phase, how):
    canary = f"CANARY-log-stop-{phase}-{how}"
    err, conn = _stopped(db, STOPPED_PHASES[phase].format(c=canary), how)
    assert canary not in str(err)
    if how != "terminate":
        assert err.sqlstate == "57014"
        # the session's settings are back: a later failing statement is logged whole
        conn.execute("RESET statement_timeout")
        assert conn.execute("SHOW log_min_error_statement").fetchone() == ("error",)
    assert _log_has(log_since, canary) == []


def test_a_stopped_statement_without_a_credential_is_logged_with_its_text(db, log_since):
    marker = "marker-logged-stopped"
    err, _ = _stopped(db, STOPPED_PHASES["fetch"].replace("password={c}", marker), "timeout")
    assert err.sqlstate == "57014"
    assert any("STATEMENT:" in line for line in _log_has(log_since, marker))


def test_a_credential_looking_query_that_succeeds_leaves_the_log_settings_as_they_were(db, log_since):
    c = db.conn
    assert q(c, "SELECT 'password=CANARY-log-ok' AS x") == [("password=CANARY-log-ok",)]
    c.execute("SELECT duckdb.raw_query('SELECT ''token''')")
    c.execute("SELECT duckdb.create_query_view('cred_v', 'SELECT ''secret'' AS s')")
    assert c.execute("SELECT * FROM duckdb.query_json('SELECT ''key'' AS k')").fetchall()
    assert c.execute("SHOW log_min_error_statement").fetchone() == ("error",)
    assert c.execute("SHOW log_error_verbosity").fetchone() == ("default",)
    with pytest.raises(psycopg.Error):
        c.execute("SELECT 'marker-after-ok' || 1/0")
    assert any("STATEMENT:" in line for line in _log_has(log_since, "marker-after-ok"))


# --- found by the third red team of issue 31 -------------------------------------

DIRECT_CALLS = [
    "SELECT duckdb._set_user_mapping_impl('x', current_user, '{}')",
    "SELECT duckdb._create_simple_secret_impl('s3', 'k', 'CANARY-log-direct', NULL, NULL, NULL, NULL, NULL, NULL, "
    "NULL, NULL)",
    "SELECT duckdb._create_azure_secret_impl('AccountName=a;AccountKey=CANARY-log-direct', NULL)",
    "SELECT duckdb._store_mapping_options('x', 'y', ARRAY['secret=CANARY-log-direct'])",
    "SELECT 1 FROM (SELECT duckdb._query_start($$SELECT 'password' AS a$$)) s",
    "SELECT 1 FROM (SELECT duckdb._query_start($$SELECT $1 AS a$$, '[\"password\"]')) s",
    "SELECT duckdb._raw_query_impl('SELECT ''token''')",
    "SELECT duckdb._query_columns('SELECT ''secret'' AS s')",
]


@pytest.mark.parametrize("call", DIRECT_CALLS)
@pytest.mark.parametrize("who", ["nobody", "query_role"])
def test_no_call_keeps_a_roles_later_statements_out_of_the_log(db, log_since, call, who):
    """Red team: an internal function called directly (EXECUTE for PUBLIC) once
    left log_min_error_statement at panic for the rest of the session. The mark
    now belongs to the statement: no setting changes, the next statement is
    logged whole."""
    role = db.role("direct")
    if who == "query_role":
        db.conn.execute(f'GRANT duckdb_query TO "{role}"')
    conn = db.connect(role)
    try:
        conn.execute(call).fetchall()
    except psycopg.Error:
        pass
    assert conn.execute("SHOW log_min_error_statement").fetchone() == ("error",)
    assert conn.execute("SHOW log_error_verbosity").fetchone() == ("default",)
    marker = "marker-later-" + str(abs(hash((call, who))) % 100000)
    with pytest.raises(psycopg.Error):
        conn.execute(f"SELECT '{marker}' || 1/0")
    assert any("STATEMENT:" in line for line in _log_has(log_since, marker)), log_since()[-1500:]


@pytest.mark.parametrize("ms", [5, 20, 40, 60, 80, 100, 130, 160])
def test_a_first_call_stopped_while_the_engine_starts_is_logged_without_its_text(db, log_since, ms):
    """Red team: a statement_timeout that strikes while a session's first call
    starts its engine (before DuckDB can judge the call) logged the statement whole."""
    canary = f"CANARY-log-start-{ms}"
    role = db.role("starter")
    db.conn.execute(f'GRANT duckdb_query TO "{role}"')
    conn = db.connect(role)
    conn.execute(f"SET statement_timeout = '{ms}ms'")
    try:
        q(conn, f"SELECT 'host=h password={canary}' AS a", "a text")
    except psycopg.Error as e:
        assert e.sqlstate == "57014", str(e)
        assert canary not in str(e)
    leaked = _log_has(log_since, canary)
    assert leaked == [], "\n".join(log_since().splitlines()[-6:])


def test_duckdbs_excerpt_of_a_credential_looking_statement_is_left_out(db, log_since):
    """Red team: DuckDB's LINE 1: excerpt cuts a long line where it likes: a literal
    that lost its opening quote was no longer masked."""
    canary = "CANARY-log-excerpt-abcdefghijklmnopqrstuvwxyz0123456789"
    with pytest.raises(psycopg.Error) as e:
        q(db.conn, f"SELECT * FROM read_csv('https://analyst:Tr0ub4dor-{canary}@127.0.0.1:9/f.csv') LIMT 10")
    assert e.value.sqlstate == "42601"
    assert canary[-20:] not in str(e.value) and "LINE 1" not in str(e.value)
    assert _log_has(log_since, canary[-20:]) == []


@pytest.mark.parametrize("first,second", [
    ("SELECT 'postgres://u:{c}@h/db' AS a", "SELECT error('plain failure')"),
    ("SELECT error('plain failure')", "SELECT 'host=db user=app password={c}' AS a"),
])
def test_two_calls_in_one_statement_are_judged_on_the_statements_text(db, log_since, first, second):
    """Red team: the STATEMENT line holds every call's SQL; one call's judgement
    covered only itself."""
    canary = "CANARY-log-two-" + str(len(first))
    stmt = (f"SELECT * FROM duckdb.query($${first.format(c=canary)}$$) AS t(a text), "
            f"duckdb.query($${second.format(c=canary)}$$) AS u(b text)")
    with pytest.raises(psycopg.Error):
        db.conn.execute(stmt)
    assert _log_has(log_since, canary) == []


# --- found by the fourth red team of issue 31 --------------------------------------

def test_a_portal_resumed_by_a_later_execute_is_logged_without_its_text(db, cluster, log_since):
    """Red team: an Execute with a row limit suspends the portal (JDBC's fetch
    size); the Execute that resumes it is another message, and its error was
    logged with the portal's text. The mark is the text PostgreSQL quotes."""
    from pgwire import Wire
    canary = "CANARY-log-portal"
    w = Wire(cluster.port, "postgres", db.dbname)
    try:
        w.parse_bind(f"SELECT a FROM duckdb.query($$SELECT 'password={canary}' AS p, range AS a FROM range(5)$$) "
                     "t(p text, a int) WHERE 1/(a-3) IS NOT NULL")
        w.execute(1)
        assert w.read_until({b"s", b"C", b"E"})[0] == b"s"        # PortalSuspended
        w.execute(10)
        kind, body = w.read_until({b"s", b"C", b"E"})
        assert kind == b"E" and body["C"] == "22012", body
        w.sync()
    finally:
        w.close()
    assert _log_has(log_since, canary) == []


def test_a_helper_call_that_succeeded_keeps_its_statement_out_of_the_log(db, s3, log_since):
    """Red team: set_user_mapping's literal options were logged when the same
    statement failed afterwards for a reason of its own."""
    canary = "CANARY-log-helper-ok"
    db.conn.execute(s3_server_sql("ok_s3", s3))
    with pytest.raises(psycopg.Error):
        db.conn.execute(f"SELECT duckdb.set_user_mapping('ok_s3', current_user, "
                        f"'{{\"key_id\": \"k\", \"secret\": \"{canary}\"}}'), (SELECT 1/(random()*0)::int)")
    with pytest.raises(psycopg.Error):
        db.conn.execute(f"CREATE USER MAPPING FOR PUBLIC SERVER ok_s3 OPTIONS (key_id 'k', secret '{canary}'); "
                        "SELECT 1/(random()*0)::int")
    assert _log_has(log_since, canary) == []
    with pytest.raises(psycopg.Error):
        db.conn.execute("SELECT 'marker-after-helper' || 1/0")
    assert any("STATEMENT:" in line for line in _log_has(log_since, "marker-after-helper"))


@pytest.mark.parametrize("sql", [
    "SELECT 'host=h password=''{c}'' dbname=x'",
    "SELECT 'DefaultEndpointsProtocol=https;AccountName=a;AccountKey={c}'",
    "SELECT '{{\"token\": \"{c}\"}}'",
    "SELECT 1 AS \"Bearer {c}\"",
    "SELECT 1 AS \"u/{c}@svc\"",
])
def test_column_names_that_carry_a_credential_are_masked_in_the_hint(db, log_since, sql):
    """Red team: DuckDB names a column after its expression; the HINT's column
    list showed a literal's credential."""
    canary = "CANARY-log-hint"
    with pytest.raises(psycopg.Error) as e:
        q(db.conn, sql.format(c=canary), "a int, b int")
    assert canary not in str(e.value) and canary not in (e.value.diag.message_hint or "")
    assert _log_has(log_since, canary) == []


def test_a_plain_column_name_stays_in_the_hint(db):
    with pytest.raises(psycopg.Error) as e:
        q(db.conn, "SELECT 1 AS session_id, 2 AS api_key", "a int")
    assert "session_id" in e.value.diag.message_hint and "api_key" in e.value.diag.message_hint


# --- found by the fifth red team of issue 31 ---------------------------------------

@pytest.mark.parametrize("sql", [
    "SELECT json_extract('{{}}', '$.password[{c}')",
    "SELECT regexp_matches('x', 'password=(?P<{c}>x)')",
])
def test_a_piece_of_a_literal_duckdb_quotes_is_masked(db, log_since, sql):
    canary = "CANARY-log-piece"
    with pytest.raises(psycopg.Error) as e:
        q(db.conn, sql.format(c=canary))
    assert canary not in str(e.value)
    assert _log_has(log_since, canary) == []


def test_which_secret_of_a_signed_url_keeps_its_statement_out_of_the_log(db, log_since):
    canary = "CANARY-log-which"
    with pytest.raises(psycopg.Error):
        db.conn.execute(f"SELECT (SELECT count(*) FROM duckdb.which_secret("
                        f"'s3://bucket/x.csv?s3_secret_access_key={canary}', 's3')) + 1/(random()*0)::int")
    assert _log_has(log_since, canary) == []
