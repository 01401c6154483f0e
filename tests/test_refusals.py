"""The refusal lists, in the test process: every statement a role may not run,
against the statement check and the engine as the backend drives them
(tests/inprocess.py), without a PostgreSQL cluster. Each rule keeps one case
end to end, through duckdb.query in a cluster, where its list used to be:

- local files, through every reader: tests/test_attacks.py, tests/test_security.py
- lifting the engine's restrictions, changing its configuration: tests/test_attacks.py,
  tests/test_security.py
- shadowing a managed secret, statement-check bypasses, adjacent literals,
  the Python client's scans, ways to secret values, the engine's settings,
  hosts nobody named (azure URLs among them): tests/test_attacks.py,
  tests/test_attacks_engine.py

A role's engine serves every case of its module (as a backend's serves every
statement of a session); a refused statement changes nothing in it.
"""

import os

import pytest

import localenv
from conftest import s3_overrides
from inprocess import CANARY, Role, refused, server

pytestmark = pytest.mark.inprocess

S3 = ["scope=s3://bucket", "region=us-east-1", "endpoint=127.0.0.1:9", "url_style=path", "use_ssl=false"]
TEAM_S3 = ("team_s3", "s3", S3, ["key_id=PUBLICKEY", f"secret={CANARY}"])
PROXIED = ("proxied", "s3", ["scope=s3://proxied", "http_proxy=127.0.0.1:9", "http_proxy_username=u"],
           [f"http_proxy_password={CANARY}"])


def _role(**kw):
    role = Role(**kw)
    yield role
    role.close()


@pytest.fixture(scope="module")
def bob(engine_env):
    """A role with no secret, no file access: EXECUTE on duckdb.query only."""
    yield from _role()


@pytest.fixture(scope="module")
def alice(engine_env):
    """A role that uses team_s3 (its key in her user mapping)."""
    yield from _role(secrets=[server(*TEAM_S3)])


@pytest.fixture(scope="module")
def carol(engine_env):
    """A role that uses team_s3 and proxied, whose proxy password DuckDB would show in clear."""
    yield from _role(secrets=[server(*TEAM_S3), server(*PROXIED)])


@pytest.fixture(scope="module")
def superuser(engine_env):
    yield from _role(superuser=True)


def _threads_unchanged(role):
    assert role.query("SELECT current_setting('threads')::VARCHAR") == [("1",)]


# --- the local file system, through every reader ------------------------------------

# With file access off, DuckDB no longer reads a quoted path as a file: 42P01.
# A name where a table goes that is not a Parquet, CSV or JSON file: refused by
# its name (42501) before DuckDB would look it up as a table (42P01).
AS_A_TABLE = {"SELECT * FROM '/etc/passwd'", "FROM 'file:///etc/passwd'"}
READERS = [
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_csv_auto('/etc/passwd')",
    "SELECT * FROM read_json('/etc/passwd')",
    "SELECT * FROM read_json_auto('/etc/passwd')",
    "SELECT * FROM read_ndjson_objects('/etc/passwd')",
    "SELECT * FROM read_parquet('/etc/passwd')",
    "SELECT * FROM parquet_metadata('/etc/passwd')",
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM read_blob('/etc/passwd')",
    "SELECT * FROM sniff_csv('/etc/passwd')",
    "SELECT * FROM glob('/etc/*')",
    *sorted(AS_A_TABLE),
    "SELECT * FROM read_text('~/.duckdb/stored_secrets/x.duckdb_secret')",
    "SELECT * FROM read_text('postgresql.conf')",
    "SELECT * FROM read_text('/var/lib/postgresql/15/main/PG_VERSION')",
    "ATTACH '/tmp/duckdb_secrets_attack.db' AS f",
    "ATTACH 'duckdb:/tmp/duckdb_secrets_attack.db' AS f",
    "COPY (SELECT 1) TO '/tmp/duckdb_secrets_attack.csv'",
    "EXPORT DATABASE '/tmp/duckdb_secrets_attack_dir'",
    "CREATE TABLE t AS SELECT 1; COPY t FROM '/etc/passwd'",
]


@pytest.mark.parametrize("text", READERS)
def test_local_files_through_every_reader(bob, text):
    refused(bob, text, "42501")
    for written in ("duckdb_secrets_attack.db", "duckdb_secrets_attack.csv", "duckdb_secrets_attack_dir"):
        assert not os.path.exists(os.path.join("/tmp", written))


# --- lifting restrictions: the engine's configuration -----------------------------------

LIFTS = [
    "SET enable_external_access = true",
    "SET GLOBAL enable_external_access = true",
    "RESET ALL",                # DuckDB's own parser refuses it first: 0A000
    "RESET allowed_directories",
    "SET allowed_directories = ['/']",
    "SET disabled_filesystems = ''",
    "RESET disabled_filesystems",
    "SET lock_configuration = false",
    "SET allow_persistent_secrets = true",
    "SET threads = 8",
    "SET memory_limit = '100GB'",
    "SELECT 1; SET threads = 8",
    "SET VARIABLE x = 1",
    "PRAGMA enable_profiling",
    "PRAGMA enable_checkpoint_on_shutdown",
    "CALL pragma_database_list()",
    "CALL pragma_version()",
    "LOAD '/usr/lib/postgresql/15/lib/duckdb_secrets/deps/duckdb_extension_postgres_scanner/extensions/v1.5.5/"
    "postgres_scanner.duckdb_extension'",
    "LOAD httpfs",
    "INSTALL postgres",
    "INSTALL httpfs",
    "FORCE INSTALL httpfs",
    "USE memory",
    "ATTACH ':memory:' AS m; USE m",
    "CREATE SECRET mine (TYPE s3, KEY_ID 'x', SECRET 'y')",
    "CREATE OR REPLACE TEMPORARY SECRET mine (TYPE s3)",
    "/* hidden */ CREATE /* x */ PERSISTENT SECRET mine (TYPE s3)",
    "DROP SECRET anything",
    # red team (issue 31): DuckDB's parser reads an IMPORT's schema.sql and load.sql itself
    "IMPORT DATABASE 's3://bucket/exported'",
    "SELECT 1; import /* x */ database 's3://bucket/exported'",
    "SELECT * FROM query('IMPORT DATABASE ''s3://bucket/exported''')",
    "SELECT * FROM query_table('t; IMPORT DATABASE ''s3://bucket/exported''')",
]


@pytest.mark.parametrize("text", LIFTS)
def test_lifting_restrictions(bob, text):
    refused(bob, text, "0A000" if text == "RESET ALL" else "42501")
    _threads_unchanged(bob)


@pytest.mark.parametrize("text", ["SET enable_external_access = true", "SELECT * FROM read_text('/etc/passwd')"])
def test_raw_query_is_held_to_the_same_rules(bob, text):
    refused(bob, text, raw=True)


# --- shadowing a managed secret, and the statement check's bypasses -------------------

SHADOWS = [
    "CREATE SECRET team_s3 (TYPE s3, KEY_ID 'mine', SECRET 'mine')",
    "CREATE OR REPLACE TEMPORARY SECRET team_s3 (TYPE s3, KEY_ID 'mine')",
    "CREATE TEMPORARY SECRET longer (TYPE s3, KEY_ID 'mine', SCOPE 's3://bucket/data')",
    "CREATE SECRET IF NOT EXISTS zz (TYPE s3, SCOPE 's3://bucket/data/numbers.parquet')",
    "DROP TEMPORARY SECRET team_s3",
    "-- comment\nCREATE /* hidden */ OR REPLACE SECRET team_s3 (TYPE s3)",
]

BYPASSES = [
    "/*éééééé*/ CREATE SECRET pwn (TYPE s3, KEY_ID 'x', SECRET 'y', SCOPE 's3://bucket/data')",
    "/*éééééé*/ DROP TEMPORARY SECRET team_s3",
    "/*ééé*/ CREATE OR REPLACE /*é*/ SECRET team_s3 (TYPE s3)",
    "EXPLAIN ANALYZE PRAGMA enable_profiling",
    "EXPLAIN ANALYZE CALL pragma_version()",
    "EXPLAIN (FORMAT json) CALL pragma_version()",
    "EXPLAIN ANALYZE SET VARIABLE x = 1",
    "CHECKPOINT",
    "FORCE CHECKPOINT",
    "VACUUM",
    "SET VARIABLE x = 1",
    "SELECT * FROM checkpoint()",
    "PREPARE p AS PRAGMA enable_profiling",
    "PREPARE p AS SELECT * FROM enable_logging('HTTP')",
    "PREPARE p AS CREATE SECRET pwn (TYPE s3)",
    "SELECT 1; SET threads = 8",
    "SELECT 1; CREATE SECRET pwn (TYPE s3)",
    "COPY FROM DATABASE memory TO other",
    "ATTACH 's3://bucket/x.duckdb' AS r (READ_ONLY)",
    # a database file read without ATTACH (red team, engine-process round)
    "SELECT * FROM read_duckdb('s3://bucket/t.duckdb')",
    "SELECT * FROM read_duckdb('s3://bucket/t.duckdb', table_name := 't')",
]


@pytest.mark.parametrize("text", SHADOWS + BYPASSES)
def test_shadowing_a_managed_secret_and_statement_check_bypasses(alice, text):
    refused(alice, text, {"42501", "42601"} if text.startswith("PREPARE p AS") else "42501")
    assert alice.which_secret("s3://bucket/data/numbers.parquet", "s3") == ["team_s3"]


ADJACENT = [
    "SELECT * FROM query('SELECT * FROM duckdb_'\n'secrets()')",
    "SELECT * FROM query('SELECT 1'\n' FROM enable_logging(''HTTP'')')",
    "CREATE MACRO s() AS TABLE FROM query('FROM duckdb_'\n'secrets()')",
    "ATTACH ':mem'\n'ory:' AS m",
]


@pytest.mark.parametrize("text", ADJACENT)
def test_adjacent_literals_are_not_a_way_around_the_check(carol, text):
    refused(carol, text)


# --- the Python client's scans (they crash the backend): nobody -------------------------

CRASHERS = [
    "SELECT * FROM pandas_scan(NULL)",
    "SELECT * FROM arrow_scan(NULL, NULL, NULL)",
    "SELECT * FROM \"PANDAS_SCAN\"(NULL)",
    "SELECT * FROM system.main.python_map_function(NULL)",
    "SELECT * FROM query('SELECT * FROM pandas_scan(NULL)')",
    "SELECT * FROM query('SELECT * FROM pan' || 'das_scan(NULL)')",
    "CREATE MACRO m() AS TABLE SELECT * FROM arrow_scan_dumb(NULL)",
    "SELECT * FROM json_execute_serialized_sql(json_serialize_sql('SELECT 1'))",
    "PREPARE p AS SELECT * FROM pandas_scan(NULL)",
    "EXPLAIN ANALYZE SELECT * FROM pandas_scan(NULL)",
]


@pytest.mark.parametrize("who", ["superuser", "bob"])
@pytest.mark.parametrize("text", CRASHERS)
def test_python_client_scans_are_refused_for_everyone(request, who, text):
    role = request.getfixturevalue(who)
    refused(role, text)
    assert role.query("SELECT * FROM query('SELECT 42::VARCHAR')") == [("42",)]


# --- secret values, and the engine's settings -------------------------------------------

LEAKS = [
    "SELECT * FROM enable_logging('HTTP')",
    "SELECT * FROM enable_logging(level := 'trace')",
    "SELECT message FROM duckdb_logs",
    "SELECT message FROM duckdb_logs()",
    "SELECT * FROM enable_profiling()",
    "SELECT reverse(regexp_extract(secret_string, 'http_proxy_password=[^;]*')) FROM duckdb_secrets()",
    "SELECT substr(secret_string, 1, 400) FROM duckdb_secrets()",
    "SELECT md5(secret_string) FROM duckdb_secrets()",
    "SELECT unnest(string_split(secret_string, '')) FROM duckdb_secrets()",
    "SELECT * FROM query('SELECT secret_string FROM duckdb_secrets()')",
    "SELECT * FROM query('SELECT secret_string FROM duck' || 'db_secrets()')",
    "SELECT * FROM \"duckdb_secrets\"(redact := false)",
    "SELECT * FROM load_aws_credentials()",
    "SELECT * FROM duckdb_temporary_files()",
]


@pytest.mark.parametrize("text", LEAKS)
def test_no_way_to_secret_values(carol, text):
    e = refused(carol, text)
    assert "function" in e.message or "SQL that is not a string literal" in e.message


SETTINGS_READS = [
    "SELECT string_agg(name || '=' || value, ';') FROM duckdb_settings()",
    "SELECT string_agg(name || '=' || setting, ';') FROM pg_catalog.pg_settings",
    "SELECT string_agg(name || '=' || setting, ';') FROM pg_settings",
    "SELECT current_setting('temp_directory')",
    "SELECT current_setting('allowed_directories')::VARCHAR",
    "SELECT current_setting('temp_' || 'directory')",
    "SHOW temp_directory",
    "SHOW ALL",
    "SELECT * FROM query('SELECT current_setting(''temp_directory'')')",
    # red team 2: a view read by name
    "SELECT setting FROM query_table('pg_settings') WHERE name = 'temp_directory'",
    "SELECT setting FROM query_table('pg_catalog.pg_settings') WHERE name = 'temp_directory'",
    "SELECT setting FROM query_table(['pg_' || 'settings']) WHERE name = 'temp_directory'",
    "SELECT count(*)::VARCHAR FROM query_table('duckdb_logs')",
    "SELECT count(*)::VARCHAR FROM query_table(['duckdb_' || 'logs'])",
    "SELECT count(*)::VARCHAR FROM query_table(['t', 'duckdb_logs'], true)",
    # red team 3: DuckDB's table macros over query_table() and duckdb_settings()
    "SELECT bin FROM histogram_values('pg_settings', name || '=' || setting, technique := 'sample')",
    "SELECT bin FROM histogram_values('pg_' || 'settings', setting)",
    "SELECT count(*)::VARCHAR FROM histogram_values('duckdb_logs', message, bin_count := 10)",
    "SELECT bin::VARCHAR FROM histogram('pg_settings', setting)",
    "SELECT bin::VARCHAR FROM (SELECT 1) t, histogram('pg_settings', setting)",
    "SELECT value FROM duckdb_profiling_settings()",
    # red team 4: a plan with constants folded
    "SELECT json_serialize_plan('select reverse(current_setting(''allowed_directories'')::varchar) as x', "
    "optimize := true)::VARCHAR",
    "SELECT json_serialize_plan('select current_setting(''temp_'' || ''directory'') as x', optimize := true)::VARCHAR",
]


@pytest.fixture(scope="module")
def files(engine_env):
    """A member of pg_read_server_files and pg_write_server_files: local files, and still no settings."""
    yield from _role(files=True)


@pytest.mark.parametrize("who", ["bob", "files"])
@pytest.mark.parametrize("text", SETTINGS_READS)
def test_the_engines_settings_are_not_shown(request, who, text):
    """Every engine spills under the data directory, and DuckDB names its spill
    directory in temp_directory and allowed_directories: a non-superuser reads
    neither (red team: duckdb_settings() showed them)."""
    refused(request.getfixturevalue(who), text)


def test_what_the_settings_check_lets_through(bob):
    assert bob.query("SELECT current_setting('threads')::VARCHAR") == [("1",)]
    assert bob.query("CREATE TABLE tv AS SELECT 'x' AS v; SELECT v FROM query_table('tv')") == [("x",)]
    assert bob.query("SELECT histogram(v)::VARCHAR FROM tv") == [("{x=1}",)]      # the aggregate is fine


def test_what_a_data_engineer_reported_as_refused_by_mistake(bob):
    """A data engineer's walk-through (issue 31): ANALYZE (DuckDB's kind for it
    is VACUUM) and SHOW DATABASES are a role's own; a refused statement is
    named as written (USE, not SET; CHECKPOINT, not CALL)."""
    bob.query("CREATE TABLE an AS SELECT range AS i FROM range(10)")
    bob.query("ANALYZE an")
    bob.query("ANALYZE")
    assert ("memory",) in bob.query("SHOW DATABASES")
    for text, named in [("USE memory", "USE"), ("CHECKPOINT", "CHECKPOINT"), ("FORCE CHECKPOINT", "FORCE CHECKPOINT"),
                        ("VACUUM an", "VACUUM"), ("VACUUM ANALYZE an", "VACUUM"), ("SET threads = 2", "SET")]:
        assert refused(bob, text).message == f"permission denied to run {named} statements in the DuckDB engine"
    # a setting of an extension this engine does not load: no advice to INSTALL or SET what a role may not
    err = refused(bob, "SELECT current_setting('s3_region')", None)
    assert "INSTALL" not in f"{err.detail} {err.hint}" and "httpfs extension is not loaded" in err.hint
    _threads_unchanged(bob)


# --- hosts nobody named -------------------------------------------------------------------

REACH = [
    ("query-string", "SELECT * FROM read_text('s3://latest/meta-data/iam?{o}')"),
    ("read_csv", "SELECT * FROM read_csv('s3://latest/x.csv?{o}')"),
    ("list", "SELECT * FROM read_text(['s3://latest/a?{o}', 's3://latest/b?{o}'])"),
    ("glob", "SELECT * FROM glob('s3://latest/*?{o}')"),
    ("concatenation", "SELECT * FROM read_text('s3://latest/x?' || 's3_end' || 'point=127.0.0.1:{port}"
                      "&s3_use_ssl=false&s3_url_style=path')"),
    ("macro", "CREATE MACRO m(u) AS TABLE SELECT * FROM read_text(u); SELECT * FROM m('s3://latest/x?{o}')"),
    ("gcs", "SELECT * FROM read_text('gcs://latest/x?{o}')"),
    ("r2", "SELECT * FROM read_text('r2://latest/x?{o}')"),
    ("s3a", "SELECT * FROM read_text('s3a://latest/x?{o}')"),
    ("copy-to", "COPY (SELECT 1 AS x) TO 's3://b/out.csv?{o}'"),
    ("value-from-a-table", "CREATE TABLE u AS SELECT 's3://latest/x?{o}' AS url; "
                           "SELECT * FROM read_text((SELECT url FROM u))"),
    ("plain-http", "SELECT * FROM read_text('http://127.0.0.1:{port}/latest/meta-data/')"),
    ("https", "SELECT * FROM read_text('https://127.0.0.1:{port}/x')"),
    ("localhost", "SELECT * FROM read_text('http://localhost:{port}/x')"),
    ("attach", "ATTACH 's3://latest/x.duckdb?{o}' AS r (READ_ONLY)"),
    ("export", "EXPORT DATABASE 's3://latest/dump?{o}'"),
]


@pytest.fixture(scope="module")
def dave(engine_env):
    """A role with no secret, for the reach tests (an engine of their own:
    some of them create tables and macros)."""
    yield from _role()


@pytest.mark.parametrize("what,text", REACH, ids=[r[0] for r in REACH])
def test_no_request_to_a_host_nobody_named(dave, counter, what, text):
    e = refused(dave, text.format(o=s3_overrides(counter.port), port=counter.port), None)
    assert counter.hits == [], (what, counter.hits)
    if what not in ("value-from-a-table", "attach", "export"):       # DuckDB or the check refuses those first
        assert e.sqlstate == "42501", e.message
        assert f"127.0.0.1:{counter.port}" in e.message or f"localhost:{counter.port}" in e.message


@pytest.mark.retries
@pytest.mark.parametrize("url", ["az://127.0.0.1:{port}/c/x", "azure://127.0.0.1:{port}/c/x",
                                 "abfss://c@127.0.0.1:{port}/x"])
def test_azure_urls_cannot_name_another_host(engine_env, counter, url):
    """The azure extension ignores DuckDB's http_proxy and lets a URL name any
    host: its secrets get the egress proxy too, and a URL's host is checked."""
    blob = localenv.HTTPCounter()
    key = "a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2U="
    role = Role(secrets=[server("blob", "azure", ["scope=az://c/"], [
        f"connection_string=DefaultEndpointsProtocol=http;AccountName=acct;AccountKey={key};"
        f"BlobEndpoint=http://127.0.0.1:{blob.port}/acct;"])])
    try:
        refused(role, "SELECT * FROM read_text('az://c/x.csv')", None)
        assert blob.hits, "the secret's own endpoint is reachable"
        e = refused(role, f"SELECT * FROM read_text('{url.format(port=counter.port)}')")
        assert f"127.0.0.1:{counter.port}" in e.message
        assert counter.hits == []
    finally:
        role.close()
        blob.close()
