"""An attack suite: a determined non-superuser (and a careless administrator)
against the security model in docs/security.md. Each attempt must fail cleanly
-- a PostgreSQL error with a SQLSTATE, no traceback -- and the canary secret
must never appear in any output, in pg_stat_statements, or in the server log
(the log is checked after every test by conftest)."""

import http.server
import threading

import psycopg
import pytest
from psycopg import sql

from conftest import READ, WORLD_CANARY, assert_clean_error, q, refused

CANARY = WORLD_CANARY
S3_SERVER = "CREATE SERVER x TYPE 's3' FOREIGN DATA WRAPPER duckdb"


# --- 1. the local file system and the network, through every reader ----------

def test_local_files_through_a_reader(db, world):
    """One case end to end; every reader: tests/test_refusals.py."""
    # 42P01: with file access off, DuckDB no longer reads a quoted path as a file.
    refused(db.connect(world["bob"]), "SELECT * FROM read_csv('/etc/passwd')", {"42501", "42P01"})


@pytest.fixture
def local_http():
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"a,b\n1,2\n")

        do_HEAD = do_GET

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield server.server_address[1], hits
    server.shutdown()
    server.server_close()


def test_no_request_to_an_arbitrary_url(db, world, local_http):
    port, hits = local_http
    conn = db.connect(world["bob"])
    # Widening the list for oneself does nothing: only the configuration files count.
    conn.execute(f"SET duckdb.allowed_url_prefixes = 'http://127.0.0.1:{port}/'")
    refused(conn, f"SELECT * FROM read_csv('http://127.0.0.1:{port}/latest/meta-data/')")
    refused(conn, f"SELECT * FROM read_text('http://127.0.0.1:{port}/x')")
    assert hits == []
    # A superuser's engine has no such limit: the refusal is the rule at work.
    assert q(db.conn, f"SELECT a::VARCHAR FROM read_csv('http://127.0.0.1:{port}/x.csv')") == [("1",)]
    assert hits


def test_http_secret_scope_opens_exactly_that_prefix(db, world, local_http):
    port, hits = local_http
    db.conn.execute(f"CREATE SERVER web TYPE 'http' FOREIGN DATA WRAPPER duckdb "
                    f"OPTIONS (scope 'http://127.0.0.1:{port}/open/')")
    db.conn.execute(f'GRANT USAGE ON FOREIGN SERVER web TO "{world["bob"]}"')
    conn = db.connect(world["bob"])
    assert q(conn, f"SELECT a::VARCHAR FROM read_csv('http://127.0.0.1:{port}/open/x.csv')") == [("1",)]
    refused(conn, f"SELECT * FROM read_csv('http://127.0.0.1:{port}/closed/x.csv')")
    assert hits == ["/open/x.csv"] or all(h.startswith("/open/") for h in hits)


# --- 2. lifting restrictions -------------------------------------------------

def test_lifting_restrictions(db, world):
    """One case end to end; the list: tests/test_refusals.py."""
    refused(db.connect(world["bob"]), "SET enable_external_access = true")


def test_lifting_restrictions_through_raw_query(db, world):
    conn = db.connect(world["bob"])
    refused(conn, "SET enable_external_access = true", raw=True)
    refused(conn, "SELECT * FROM read_text('/etc/passwd')", raw=True)


# --- 3. shadowing a managed secret --------------------------------------------

def test_shadowing_a_managed_secret(db, world):
    """One case end to end; the list: tests/test_refusals.py."""
    conn = db.connect(world["alice"])
    refused(conn, "DROP TEMPORARY SECRET team_s3")
    assert conn.execute("SELECT name FROM duckdb.which_secret('s3://bucket/data/numbers.parquet', 's3')"
                        ).fetchall() == [("team_s3",)]


# --- 4. smuggling options -----------------------------------------------------

@pytest.fixture
def admin(db):
    """A non-superuser administrator with USAGE on the wrapper."""
    name = db.role("admin")
    db.conn.execute(f'GRANT USAGE ON FOREIGN DATA WRAPPER duckdb TO "{name}"')
    return db.connect(name)


SMUGGLES = [
    ("type", f"CREATE SERVER x TYPE 's3, secret ''{CANARY}''' FOREIGN DATA WRAPPER duckdb", "HV024"),
    ("type-newline", f"CREATE SERVER x TYPE E's3\\nSECRET {CANARY}' FOREIGN DATA WRAPPER duckdb", "HV024"),
    ("option-name-with-equals", f"{S3_SERVER} OPTIONS (\"secret=x\" '{CANARY}')", "22023"),
    ("quoted-upper", f"{S3_SERVER} OPTIONS (\"SECRET\" '{CANARY}')", "42501"),
    ("mixed-case", f"{S3_SERVER} OPTIONS (\"SeSsIoN_ToKeN\" '{CANARY}')", "42501"),
    ("proxy-password", f"{S3_SERVER} OPTIONS (http_proxy_password '{CANARY}')", "42501"),
    ("provider", f"{S3_SERVER} OPTIONS (provider 'config, secret {CANARY}')", "HV024"),
    ("fdw-option", f"ALTER FOREIGN DATA WRAPPER duckdb OPTIONS (ADD secret '{CANARY}')", "42501"),
]


@pytest.mark.parametrize("what,stmt,sqlstate", SMUGGLES, ids=[s[0] for s in SMUGGLES])
def test_smuggling_options(db, admin, what, stmt, sqlstate):
    with pytest.raises(psycopg.Error) as e:
        admin.execute(stmt)
    assert e.value.sqlstate == sqlstate, str(e.value)
    assert_clean_error(e.value, CANARY)


def test_server_name_cannot_inject_into_duckdb(db, world):
    evil = "evil\" (TYPE s3); CREATE SECRET pwn (TYPE s3, KEY_ID 'x'); --"
    db.conn.execute(sql.SQL("CREATE SERVER {} TYPE 's3' FOREIGN DATA WRAPPER duckdb OPTIONS (scope 's3://evil')")
                    .format(sql.Identifier(evil)))
    names = [r[0] for r in db.conn.execute("SELECT name FROM duckdb.secrets() ORDER BY 1")]
    assert names == sorted([evil.lower(), "team_s3"])
    assert "pwn" not in names


HELPER_ARGS = ["type", "key_id", "secret", "session_token", "region", "url_style", "provider", "endpoint",
               "scope", "validation", "use_ssl"]
INJECTION = "'); DROP TABLE victim; CREATE SECRET pwn (TYPE s3); --$$"


@pytest.mark.parametrize("arg", HELPER_ARGS)
def test_injection_through_every_helper_argument(db, arg):
    db.conn.execute("CREATE TABLE victim (i int)")
    args = {"type": "S3", "key_id": "k", "secret": CANARY}
    args[arg] = INJECTION + (CANARY if arg != "secret" else "")
    call = sql.SQL("SELECT duckdb.create_simple_secret({})").format(
        sql.SQL(", ").join(sql.SQL("{} := {}").format(sql.Identifier(k), sql.Literal(v)) for k, v in args.items()))
    try:
        db.conn.execute(call)
        # Accepted (a free-text option): stored literally, nothing else ran.
        names = [r[0] for r in db.conn.execute("SELECT name FROM duckdb.secrets()")]
        assert names == ["simple_s3_secret"]
    except psycopg.Error as e:
        assert e.sqlstate in ("22023", "HV024", "HV00D"), str(e)
        assert_clean_error(e, CANARY)
    assert db.conn.execute("SELECT count(*) FROM victim").fetchone() == (0,)
    assert db.conn.execute("SELECT count(*) FROM pg_foreign_server").fetchone()[0] <= 1


def test_injection_through_the_other_helpers(db):
    db.conn.execute("CREATE TABLE victim (i int)")
    for stmt, params in [("SELECT duckdb.create_azure_secret(%s, %s)", [INJECTION + CANARY, INJECTION]),
                         ("SELECT duckdb.drop_secret(%s)", [INJECTION]),
                         ("SELECT * FROM duckdb.which_secret(%s, %s)", [INJECTION, INJECTION])]:
        try:
            db.conn.execute(stmt, params)
        except psycopg.Error as e:
            assert_clean_error(e, CANARY)
    assert db.conn.execute("SELECT count(*) FROM victim").fetchone() == (0,)
    assert "pwn" not in [r[0] for r in db.conn.execute("SELECT name FROM duckdb.secrets()")]


# --- 5. roles ------------------------------------------------------------------

def test_set_role_ping_pong_with_different_mappings(db, world, s3):
    c = db.conn
    bob = world["bob"]
    c.execute(f'GRANT USAGE ON FOREIGN SERVER team_s3 TO "{bob}"')
    c.execute(f'CREATE USER MAPPING FOR "{bob}" SERVER team_s3 OPTIONS (key_id \'BOBKEY\', secret \'{CANARY}\')')
    admin = db.role("admin")
    c.execute(f'GRANT "{world["alice"]}", "{bob}" TO "{admin}"')
    conn = db.connect(admin)
    for _ in range(3):
        conn.execute(f'SET ROLE "{world["alice"]}"')
        assert s3.key_id in conn.execute("SELECT secret_string FROM duckdb.secrets()").fetchone()[0]
        assert conn.execute(READ).fetchone() == (10,)
        conn.execute(f'SET ROLE "{bob}"')
        assert "BOBKEY" in conn.execute("SELECT secret_string FROM duckdb.secrets()").fetchone()[0]
        with pytest.raises(psycopg.Error) as e:
            conn.execute(READ)
        assert_clean_error(e.value, CANARY, s3.secret)


def test_set_session_authorization_switches_the_engine(db, world):
    conn = db.connect()                               # a superuser session, as a pooler would hold
    conn.execute(f'SET SESSION AUTHORIZATION "{world["alice"]}"')
    assert [r[0] for r in conn.execute("SELECT name FROM duckdb.secrets()")] == ["team_s3"]
    q(conn, "CREATE TABLE alices AS SELECT 42 AS v", "n bigint")
    conn.execute(f'SET SESSION AUTHORIZATION "{world["bob"]}"')
    assert conn.execute("SELECT count(*) FROM duckdb.secrets()").fetchone() == (0,)
    refused(conn, "SELECT * FROM alices", "42P01")     # nothing of alice's engine survives
    conn.execute("RESET SESSION AUTHORIZATION")


def test_security_definer_wrapper_uses_the_definers_secrets_only_inside(db, world):
    alice, bob = world["alice"], world["bob"]
    db.conn.execute(f'GRANT CREATE ON SCHEMA public TO "{alice}"')
    a = db.connect(alice)
    a.execute("CREATE FUNCTION public.alice_count() RETURNS bigint LANGUAGE sql SECURITY DEFINER "
              "SET search_path = pg_catalog AS $$ SELECT count(*) FROM duckdb.secrets() $$")
    a.execute(f'GRANT EXECUTE ON FUNCTION public.alice_count() TO "{bob}"')
    b = db.connect(bob)
    assert b.execute("SELECT public.alice_count()").fetchone() == (1,)     # inside: alice's secret
    assert b.execute("SELECT count(*) FROM duckdb.secrets()").fetchone() == (0,)   # outside: bob's
    refused(b, "SELECT * FROM read_text('/etc/passwd')")


def test_revoking_usage_mid_session(db, world):
    conn = db.connect(world["alice"])
    assert conn.execute("SELECT count(*) FROM duckdb.secrets()").fetchone() == (1,)
    db.conn.execute(f'REVOKE USAGE ON FOREIGN SERVER team_s3 FROM "{world["alice"]}"')
    assert conn.execute("SELECT count(*) FROM duckdb.secrets()").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM duckdb.which_secret('s3://bucket/x', 's3')").fetchone() == (0,)


# --- 6. reading what is not yours --------------------------------------------------

def test_other_roles_mappings_are_not_readable(db, world):
    bob = db.connect(world["bob"])
    carol = db.connect(world["carol"])
    for conn in (bob, carol):
        with pytest.raises(psycopg.Error) as e:
            conn.execute("SELECT umoptions FROM pg_user_mapping")
        assert e.value.sqlstate == "42501"
        shown = conn.execute("SELECT coalesce(string_agg(array_to_string(umoptions, ','), ';'), '') "
                             "FROM pg_user_mappings").fetchone()[0]
        assert CANARY not in shown
    # bob has no USAGE: nothing, by any route.
    assert bob.execute("SELECT count(*) FROM duckdb.secrets()").fetchone() == (0,)
    assert bob.execute("SELECT count(*) FROM duckdb.which_secret('s3://bucket/x', 's3')").fetchone() == (0,)
    refused(bob, "SELECT count(*)::VARCHAR FROM duckdb_secrets()")
    # carol uses PUBLIC's mapping: she gets the secret, never its value.
    for text in ["SELECT secret_string FROM duckdb_secrets()",
                 "SELECT string_agg(value, ',') FROM duckdb_settings()",
                 "SELECT secret_string FROM duckdb_secrets(redact := false)"]:
        try:
            rows = q(carol, text)
            assert CANARY not in repr(rows)
        except psycopg.Error as e:
            assert_clean_error(e, CANARY)
    assert CANARY not in repr(carol.execute("SELECT * FROM duckdb.secrets()").fetchall())


def test_values_duckdb_shows_in_clear_are_not_reachable(db, world):
    """DuckDB shows http_proxy_password in clear in duckdb_secrets(): a role that
    may use the secret but not read its mapping gets no such listing at all,
    so no computation over it (reverse, substr, hashing) can recover the value."""
    db.conn.execute("CREATE SERVER proxied TYPE 's3' FOREIGN DATA WRAPPER duckdb "
                    "OPTIONS (scope 's3://proxied', http_proxy '127.0.0.1:9', http_proxy_username 'u')")
    db.conn.execute(f"CREATE USER MAPPING FOR PUBLIC SERVER proxied OPTIONS (http_proxy_password '{CANARY}')")
    db.conn.execute(f'GRANT USAGE ON FOREIGN SERVER proxied TO "{world["carol"]}"')
    carol = db.connect(world["carol"])
    refused(carol, "SELECT secret_string FROM duckdb_secrets() WHERE name = 'proxied'")
    shown = carol.execute("SELECT secret_string FROM duckdb.secrets() WHERE name = 'proxied'").fetchone()[0]
    assert "http_proxy_password=redacted" in shown


def test_database_secrets_stay_with_superusers(db, world):
    db.conn.execute("CREATE SERVER pgsrc TYPE 'postgres' FOREIGN DATA WRAPPER duckdb "
                    "OPTIONS (host '127.0.0.1', dbname 'postgres', \"user\" 'postgres')")
    db.conn.execute(f'GRANT USAGE ON FOREIGN SERVER pgsrc TO "{world["alice"]}"')
    alice = db.connect(world["alice"])
    assert "pgsrc" not in [r[0] for r in alice.execute(
        "SELECT name FROM duckdb.secrets() WHERE storage <> 'skipped'")]
    assert alice.execute("SELECT secret_string FROM duckdb.secrets() WHERE name = 'pgsrc'").fetchone()[0].startswith(
        "needs a superuser")
    refused(alice, "ATTACH '' AS p (TYPE postgres, SECRET pgsrc)", "42501")
    assert "pgsrc" in [r[0] for r in db.conn.execute("SELECT name FROM duckdb.secrets()")]


def test_helpers_never_put_a_secret_into_statement_statistics(db):
    db.conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    db.conn.execute("SELECT pg_stat_statements_reset()")
    db.conn.execute("SELECT duckdb.create_simple_secret('S3', 'AKIAPSS', %s)", (CANARY,))
    db.conn.execute("SELECT duckdb.create_azure_secret(%s)", ("AccountName=x;AccountKey=" + CANARY,))
    texts = [r[0] for r in db.conn.execute(
        "SELECT query FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database "
        "WHERE datname = current_database())")]
    assert any("pg_user_mapping" in t for t in texts)          # nested statements are tracked
    assert not [t for t in texts if CANARY in t]
    assert CANARY in db.conn.execute("SELECT string_agg(array_to_string(umoptions, ','), ';') "
                                     "FROM pg_user_mappings").fetchone()[0]
