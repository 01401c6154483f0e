"""Fixtures: a real PostgreSQL 15 cluster (started as the postgres OS user),
a fresh database per test with the extension (pytest-postgresql, from a
template), and a moto S3 server on 127.0.0.1 that checks signatures."""

import os
import shutil
import subprocess
import tempfile
import uuid

import hypothesis
import psycopg
import pytest
from psycopg import sql
from pytest_postgresql import factories

import localenv

os.environ["AWS_EC2_METADATA_DISABLED"] = "true"

# make test and make check (scripts/test.sh) draw hypothesis's examples the
# same way on every run, so that a failure in CI is a failure on a laptop;
# HYPOTHESIS_PROFILE=dev draws new ones. Loaded before the test modules apply
# their @settings, which take this profile as their parent.
hypothesis.settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
hypothesis.settings.register_profile("dev")
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))


# The markers of slow suites (pyproject.toml: those that say [slow]) imply
# "slow", which make check (pytest -m "not slow") leaves to make test.
def pytest_collection_modifyitems(config, items):
    slow = [line.split(":")[0].strip() for line in config.getini("markers") if line.rstrip().endswith("[slow]")]
    for item in items:
        if any(item.get_closest_marker(m) for m in slow):
            item.add_marker(pytest.mark.slow)


_BASE = localenv.scratch_path("duckdb_secrets_pytest.")       # made when the cluster starts
CLUSTER = localenv.PgCluster(os.path.join(_BASE, "pg"))


def _load_extension(host, port, user, dbname, password=None, **_):
    with psycopg.connect(host=host, port=port, user=user, dbname=dbname, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION duckdb_secrets CASCADE")


def _inprocess(item):
    """A test that runs in the test process alone (marked inprocess): no cluster."""
    return item.get_closest_marker("inprocess") is not None


@pytest.fixture(scope="session", autouse=True)
def cluster(request):
    if all(_inprocess(item) for item in request.session.items):
        yield CLUSTER           # not started: nothing selected needs it
        return
    os.makedirs(_BASE, mode=0o755)
    os.chmod(_BASE, 0o755)
    CLUSTER.start()
    yield CLUSTER
    CLUSTER.stop()
    log = CLUSTER.read_log()
    crashes = [line for line in log.splitlines() if "terminated by signal" in line or "was terminated" in line]
    if crashes:
        keep = os.path.join(tempfile.gettempdir(), "duckdb_secrets_crash.log")
        with open(keep, "w") as f:
            f.write(log)
        pytest.fail(f"a backend crashed during the tests (log kept in {keep}): {crashes[0]}", pytrace=False)
    shutil.rmtree(_BASE, ignore_errors=True)


postgresql_noproc = factories.postgresql_noproc(
    host=CLUSTER.host, port=CLUSTER.port, user="postgres", dbname="ds_test", load=[_load_extension])
postgresql = factories.postgresql("postgresql_noproc")


_SECRETS_TO_WATCH = ["CANARY"]


@pytest.fixture(autouse=True)
def no_secret_in_server_log(request, cluster):
    """Every test: what the server logged meanwhile carries no secret value,
    in any line -- statements PostgreSQL echoes included."""
    if _inprocess(request.node):
        yield
        return
    start = cluster.log_size()
    yield
    leaks = secret_lines(cluster.read_log(start), _SECRETS_TO_WATCH)
    assert not leaks, f"secret value in the server log: {leaks[0]!r}"


def advance_clock(conn, seconds):
    """Moves the clock that credentials and tokens expire by (duckdb_secrets.aws.now)
    seconds forward in conn's backend, instead of waiting: a plpython3u DO block,
    which only a superuser may run. The backend must have used the extension."""
    conn.execute("DO $$ import datetime, duckdb_secrets.aws as aws; "
                 f"aws.ADVANCE += datetime.timedelta(seconds={float(seconds)!r}) $$ LANGUAGE plpython3u")


@pytest.fixture(scope="module")
def engine_env(tmp_path_factory):
    """What a backend has and the test process lacks, for an engine in the
    test process (tests/inprocess.py)."""
    import inprocess
    with inprocess.environment(tmp_path_factory.mktemp("engine")):
        yield


def secret_lines(log, secrets):
    """Log lines that carry a secret."""
    return [line for line in log.splitlines() if any(s in line for s in secrets)]


@pytest.fixture(scope="session")
def s3(cluster):
    server = localenv.S3Server(os.path.join(_BASE, "s3")).start()
    _SECRETS_TO_WATCH.append(server.secret)
    server.put_parquet("data/numbers.parquet",
                       "SELECT range AS n, 'row ' || range AS label FROM range(10)")
    yield server
    server.stop()


class DB:
    """The per-test database: new connections as any role, and checks."""

    def __init__(self, conn, cluster):
        self.conn = conn
        self.cluster = cluster
        self.dbname = conn.info.dbname
        self._others = []

    def connect(self, user="postgres"):
        c = psycopg.connect(self.cluster.dsn(self.dbname, user), autocommit=True)
        self._others.append(c)
        return c

    def role(self, prefix="r", *, login=True, superuser=False):
        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        opts = ("LOGIN" if login else "NOLOGIN") + (" SUPERUSER" if superuser else "")
        self.conn.execute(f'CREATE ROLE "{name}" {opts}')
        return name

    def close(self):
        for c in self._others:
            c.close()


@pytest.fixture
def db(postgresql, cluster):
    postgresql.autocommit = True
    d = DB(postgresql, cluster)
    yield d
    d.close()


def reverify_shipped():
    """What make install does last (as root): the extension directories laid out
    again from the wheels' files, and DuckDB's signature check of them, recorded
    (plpython/duckdb_secrets/shipped.py). For tests that change an extension
    file and put it back."""
    root = os.path.join(subprocess.run(["pg_config", "--pkglibdir"], capture_output=True, text=True,
                                       check=True).stdout.strip(), "duckdb_secrets")
    subprocess.run(["/usr/bin/python3", "-m", "duckdb_secrets.shipped", os.path.join(root, "deps")], check=True,
                   env={**os.environ, "PYTHONPATH": f"{root}/python:{root}/deps"})


def fresh_database(cluster, name):
    """A new database with the extension, for a module's worth of tests."""
    with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.execute(f"CREATE DATABASE {name}")
    conn = psycopg.connect(cluster.dsn(name), autocommit=True)
    conn.execute("CREATE EXTENSION duckdb_secrets CASCADE")
    return conn


@pytest.fixture
def log_since(cluster):
    """Returns a function giving the server log written since the test began."""
    start = cluster.log_size()
    return lambda: cluster.read_log(start)


def s3_server_sql(name, s3, **extra):
    """CREATE SERVER for the local S3 (non-sensitive options only)."""
    opts = {"region": s3.region, "endpoint": s3.endpoint, "url_style": "path", "use_ssl": "false", **extra}
    body = ", ".join(f"{k} '{v}'" for k, v in opts.items())
    return f"CREATE SERVER {name} TYPE 's3' FOREIGN DATA WRAPPER duckdb OPTIONS ({body})"


def lake_and_reader(db, s3):
    """Server lake (a superuser's, so its endpoint opens reach, scope s3://bucket)
    and a new reader role with USAGE on it and EXECUTE on duckdb.query."""
    reader = db.role("reader")
    db.conn.execute(s3_server_sql("lake", s3, scope="s3://bucket"))
    db.conn.execute(f'GRANT USAGE ON FOREIGN SERVER lake TO "{reader}"')
    db.conn.execute(f'GRANT EXECUTE ON FUNCTION duckdb.query(text) TO "{reader}"')
    return reader


def ducklake_sql(conn, s3, cluster, meta, name, extra=""):
    """A DuckLake server `name`: metadata in database meta of the test cluster
    (through the postgres server lake_pg), data files on the local S3 under
    s3://bucket/<meta>/ (through lake_s3, a prefix of its own)."""
    conn.execute(s3_server_sql("lake_s3", s3, scope=f"s3://bucket/{meta}"))
    conn.execute(s3_mapping_sql("lake_s3", s3))
    conn.execute(f"CREATE SERVER lake_pg TYPE 'postgres' FOREIGN DATA WRAPPER duckdb "
                 f"OPTIONS (host '127.0.0.1', port '{cluster.port}', dbname '{meta}', user 'postgres')")
    conn.execute(f"CREATE SERVER {name} TYPE 'ducklake' FOREIGN DATA WRAPPER duckdb "
                 f"OPTIONS (metadata_path 'postgres:dbname={meta}', data_path 's3://bucket/{meta}/', "
                 f"metadata_parameters 'SECRET=lake_pg'{extra})")


def s3_mapping_sql(server, s3, role="PUBLIC"):
    """CREATE USER MAPPING with the local S3 server's working keys."""
    return (f"CREATE USER MAPPING FOR {role} SERVER {server} "
            f"OPTIONS (key_id '{s3.key_id}', secret '{s3.secret}')")


def assert_clean_error(err, *secrets):
    """A PostgreSQL-native error: no plpy prefix, no traceback, no secret."""
    diag = err.diag
    texts = [diag.message_primary, diag.message_detail, diag.message_hint, diag.context, str(err)]
    for t in filter(None, texts):
        assert "Traceback" not in t, t
        assert "plpy." not in t, t
        assert "spiexceptions" not in t, t
        assert "amazonaws.com" not in t, f"a request went for AWS: {t}"     # only 127.0.0.1, ever
        for s in secrets:
            assert s not in t, f"secret value leaked into: {t!r}"


class file_setting:
    """A duckdb.* setting written to the configuration files (ALTER SYSTEM) and
    reloaded, for the duration of a with block; the administrator's way, which
    is the only one such settings honour. New connections see it at once."""

    def __init__(self, conn, name, value):
        self.dsn = conn.info.dsn
        self.name, self.value = name, value

    def _alter(self, value):
        ident = sql.Identifier(*self.name.split("."))
        # A placeholder must be known to the session before ALTER SYSTEM takes it.
        with psycopg.connect(self.dsn, autocommit=True) as c:
            c.execute(sql.SQL("SET {} = ''").format(ident))
            if value is None:
                c.execute(sql.SQL("ALTER SYSTEM RESET {}").format(ident))
            else:
                c.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(ident, sql.Literal(value)))
            before = c.execute("SELECT pg_catalog.clock_timestamp()").fetchone()[0]
            c.execute("SELECT pg_reload_conf()")
        # The postmaster reads the files, then signals every backend (each
        # takes the change before its next statement); a new backend starts
        # with what the postmaster read, and says when that was.
        import time
        deadline = time.monotonic() + 30
        while True:
            with psycopg.connect(self.dsn, autocommit=True) as c:
                if c.execute("SELECT pg_catalog.pg_conf_load_time() > %s", (before,)).fetchone()[0]:
                    return
            assert time.monotonic() < deadline, "the server did not reload its configuration files"
            time.sleep(0.005)

    def __enter__(self):
        self._alter(self.value)
        return self

    def __exit__(self, *exc):
        self._alter(None)


# Every SQL object of the extension, one line each: what callers and GRANTs
# depend on (signatures, result types, language, volatility, security definer,
# rights; columns, triggers), not bodies (those carry the install path).
SQL_OBJECTS = """
SELECT pg_describe_object(d.classid, d.objid, 0) || coalesce(': ' || f.sig, ': ' || r.sig, '')
  FROM pg_depend d
  LEFT JOIN LATERAL (
    SELECT concat_ws(' ', 'RETURNS', pg_get_function_result(p.oid), 'LANGUAGE', l.lanname,
                     CASE p.provolatile WHEN 'i' THEN 'IMMUTABLE' WHEN 's' THEN 'STABLE' ELSE 'VOLATILE' END,
                     CASE WHEN p.prosecdef THEN 'SECURITY DEFINER' END,
                     CASE WHEN p.proconfig IS NOT NULL THEN 'SET ' || array_to_string(p.proconfig, ', ') END,
                     'ACL', coalesce(p.proacl::text, 'default')) AS sig
      FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
     WHERE d.classid = 'pg_proc'::regclass AND p.oid = d.objid) f ON true
  LEFT JOIN LATERAL (
    SELECT concat_ws(' ', '(' || (SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                                                    || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END,
                                                    ', ' ORDER BY a.attnum)
                                    FROM pg_attribute a
                                   WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) || ')',
                     (SELECT string_agg(pg_get_triggerdef(t.oid), '; ' ORDER BY t.tgname)
                        FROM pg_trigger t WHERE t.tgrelid = c.oid),
                     'ACL', coalesce(c.relacl::text, 'default')) AS sig
      FROM pg_class c
     WHERE d.classid = 'pg_class'::regclass AND c.oid = d.objid) r ON true
 WHERE d.refclassid = 'pg_extension'::regclass
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'duckdb_secrets')
   AND d.deptype = 'e'
 ORDER BY 1
"""


def sql_objects(conn):
    return [line for (line,) in conn.execute(SQL_OBJECTS)]


# --- shared by the attack suites ----------------------------------------------

READ = ("SELECT * FROM duckdb.query($$ SELECT count(*) FROM read_parquet('s3://bucket/data/numbers.parquet') $$) "
        "AS t(n bigint)")
WORLD_CANARY = "CANARY-attack-e83c"      # the PUBLIC mapping's secret in world()


@pytest.fixture
def counter():
    """A loopback HTTP server that counts the requests it gets."""
    c = localenv.HTTPCounter()
    yield c
    c.close()


def s3_overrides(port):
    """An S3 URL's query string that points the request at 127.0.0.1:port."""
    return f"s3_endpoint=127.0.0.1:{port}&s3_use_ssl=false&s3_url_style=path"


def q(conn, text, cols="x text"):
    stmt = sql.SQL("SELECT * FROM duckdb.query({}) AS t(" + cols + ")").format(sql.Literal(text))
    return conn.execute(stmt).fetchall()


def refused(conn, text, sqlstate="42501", *, raw=False):
    """sqlstate: one SQLSTATE or a set of acceptable ones."""
    with pytest.raises(psycopg.Error) as e:
        if raw:
            conn.execute("SELECT duckdb.raw_query(%s)", (text,))
        else:
            q(conn, text)
    states = {sqlstate} if isinstance(sqlstate, str) else sqlstate
    assert e.value.sqlstate in states, (e.value.sqlstate, str(e.value))
    assert_clean_error(e.value, *_SECRETS_TO_WATCH)
    assert "root:x:0:0" not in str(e.value)
    return e.value


@pytest.fixture
def world(db, s3):
    """alice: USAGE on team_s3 with her own (valid) mapping; bob: no USAGE;
    carol: USAGE through PUBLIC's mapping; all may run duckdb.query."""
    alice, bob, carol = db.role("alice"), db.role("bob"), db.role("carol")
    c = db.conn
    c.execute(s3_server_sql("team_s3", s3, scope="s3://bucket"))
    c.execute(s3_mapping_sql("team_s3", s3, f'"{alice}"'))
    c.execute(f"CREATE USER MAPPING FOR PUBLIC SERVER team_s3 OPTIONS (key_id 'PUBLICKEY', secret '{WORLD_CANARY}')")
    c.execute(f'GRANT USAGE ON FOREIGN SERVER team_s3 TO "{alice}", "{carol}"')
    c.execute(f'GRANT EXECUTE ON FUNCTION duckdb.query(text), duckdb.raw_query(text) TO "{alice}", "{bob}", "{carol}"')
    return {"alice": alice, "bob": bob, "carol": carol}
