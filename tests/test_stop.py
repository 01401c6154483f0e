"""The engine obeys PostgreSQL: cancel, statement_timeout and terminate stop
engine work -- CPU-bound, reading S3, blocked on a server that never answers --
with PostgreSQL's own errors, and the session goes on; DuckDB's threads never
take PostgreSQL's signals; the administrator's caps bound every engine."""

import glob
import os
import socket
import threading
import time

import psycopg
import pytest

from conftest import file_setting, refused, s3_server_sql

pytestmark = pytest.mark.stop

CPU = "SELECT * FROM duckdb.query($$ SELECT count(*) FROM range(40000000000) t(i) WHERE i % 7 = 3 $$) AS t(n bigint)"
ENDLESS = "SELECT * FROM duckdb.query($$ SELECT count(*) FROM summary(NULL) $$) AS t(n bigint)"
READ = ("SELECT * FROM duckdb.query($$ SELECT count(*) FROM read_parquet('s3://bucket/data/numbers.parquet') $$) "
        "AS t(n bigint)")
LIMIT = 0.5       # seconds from the request to the error


class Stall:
    """A TCP server on 127.0.0.1 that accepts connections and never answers."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self._stop:
            try:
                c, _ = self.sock.accept()
                self.conns.append(c)
            except OSError:
                return

    def close(self):
        self._stop = True
        self.sock.close()
        for c in self.conns:
            c.close()


@pytest.fixture
def world(db, s3):
    """A reader (not superuser) and the superuser, each with a working S3
    secret and one for a server that never answers."""
    stall = Stall()
    if s3.port not in _uploaded:
        s3.put_parquet("data/large.parquet", "SELECT md5(random()::VARCHAR) || md5(random()::VARCHAR) AS h "
                                             "FROM range(1500000)")
        _uploaded.add(s3.port)
    reader = db.role("reader")
    c = db.conn
    c.execute(s3_server_sql("lake", s3, scope="s3://bucket"))
    c.execute(f"CREATE USER MAPPING FOR PUBLIC SERVER lake OPTIONS (key_id '{s3.key_id}', secret '{s3.secret}')")
    c.execute(f"CREATE SERVER stalled TYPE 's3' FOREIGN DATA WRAPPER duckdb OPTIONS (region 'us-east-1', "
              f"endpoint '127.0.0.1:{stall.port}', url_style 'path', use_ssl 'false', scope 's3://stalled')")
    c.execute("CREATE USER MAPPING FOR PUBLIC SERVER stalled OPTIONS (key_id 'k', secret 's')")
    c.execute(f'GRANT USAGE ON FOREIGN SERVER lake, stalled TO "{reader}"')
    c.execute(f'GRANT EXECUTE ON FUNCTION duckdb.query(text), duckdb.raw_query(text) TO "{reader}"')
    yield {"reader": reader, "stall": stall}
    stall.close()


STALLED = ("SELECT * FROM duckdb.query($$ SELECT count(*) FROM read_parquet('s3://stalled/x.parquet') $$) "
           "AS t(n bigint)")
# A large object read from the local S3 server three times (~40 MB of random
# text: seconds to read and hash, also for a superuser's engine, which has no
# egress proxy in the way: read once, it was done within the 1 s timeout now and then).
LARGE = ("SELECT * FROM duckdb.query($$ SELECT count(DISTINCT h) FROM read_parquet("
         "['s3://bucket/data/large.parquet', 's3://bucket/data/large.parquet', 's3://bucket/data/large.parquet']) "
         "$$) AS t(n bigint)")
WORK = {"cpu": CPU, "endless": ENDLESS, "stalled-s3": STALLED, "large-s3": LARGE}
_uploaded = set()


def _usable(conn):
    """The session goes on: the next query runs, the secrets are there, no thread is left."""
    assert conn.execute(READ).fetchone() == (10,)
    assert {"lake", "stalled"} <= {r[0] for r in conn.execute("SELECT name FROM duckdb.secrets()")}
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    for _ in range(40):         # a thread that is still ending (a resolver, say) is given 2 s
        if len(os.listdir(f"/proc/{pid}/task")) == 1:
            break
        time.sleep(0.05)
    assert len(os.listdir(f"/proc/{pid}/task")) == 1, "a thread outlived the call"


def _in_background(conn, sql):
    out = {}

    def run():
        t0 = time.monotonic()
        try:
            conn.execute(sql).fetchall()
            out["rows"] = True
        except psycopg.Error as e:
            out["error"] = e
        out["at"] = time.monotonic()
        out["took"] = out["at"] - t0

    t = threading.Thread(target=run)
    t.start()
    return t, out


@pytest.mark.parametrize("who", ["reader", "superuser"])
@pytest.mark.parametrize("work", list(WORK))
def test_statement_timeout(db, world, who, work):
    conn = db.connect(world["reader"] if who == "reader" else "postgres")
    conn.execute(READ)                  # the engine is up
    conn.execute("SET statement_timeout = '1s'")
    t0 = time.monotonic()
    with pytest.raises(psycopg.errors.QueryCanceled) as e:
        conn.execute(WORK[work]).fetchall()
    took = time.monotonic() - t0
    print(f"stop time: statement_timeout {work} {who}: {took - 1:.3f}s after expiry")
    assert "statement timeout" in e.value.diag.message_primary
    assert took < 1 + LIMIT, f"stopped after {took:.2f}s"
    conn.execute("RESET statement_timeout")
    _usable(conn)


@pytest.mark.parametrize("who", ["reader", "superuser"])
@pytest.mark.parametrize("work", list(WORK))
def test_cancel(db, world, who, work):
    conn = db.connect(world["reader"] if who == "reader" else "postgres")
    conn.execute(READ)
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    t, out = _in_background(conn, WORK[work])
    time.sleep(1)
    sent = time.monotonic()
    assert db.conn.execute("SELECT pg_cancel_backend(%s)", (pid,)).fetchone() == (True,)
    t.join(30)
    assert isinstance(out.get("error"), psycopg.errors.QueryCanceled), out
    assert "user request" in out["error"].diag.message_primary
    print(f"stop time: pg_cancel_backend {work} {who}: {out['at'] - sent:.3f}s")
    assert out["at"] - sent < LIMIT, f"stopped {out['at'] - sent:.2f}s after the request"
    _usable(conn)


def test_client_cancel_request(db, world):
    """A client's cancel request (psql's Ctrl-C) goes through the postmaster."""
    conn = db.connect(world["reader"])
    conn.execute(READ)
    t, out = _in_background(conn, CPU)
    time.sleep(1)
    sent = time.monotonic()
    conn.cancel()
    t.join(30)
    assert isinstance(out.get("error"), psycopg.errors.QueryCanceled), out
    assert out["at"] - sent < LIMIT
    _usable(conn)


@pytest.mark.parametrize("work", list(WORK))
def test_terminate(db, world, cluster, work):
    conn = db.connect(world["reader"])
    conn.execute(READ)
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    postmaster = cluster.pid
    t, out = _in_background(conn, WORK[work])
    time.sleep(1)
    sent = time.monotonic()
    assert db.conn.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
    t.join(30)
    assert isinstance(out.get("error"), psycopg.OperationalError), out
    assert out["error"].sqlstate in ("57P01", None)
    print(f"stop time: pg_terminate_backend {work}: {out['at'] - sent:.3f}s")
    assert out["at"] - sent < LIMIT, f"stopped {out['at'] - sent:.2f}s after the request"
    for _ in range(50):
        if not os.path.exists(f"/proc/{pid}"):
            break
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{pid}")
    assert cluster.pid == postmaster and db.conn.execute("SELECT 1").fetchone() == (1,)


def test_a_stopped_secret_sync_is_finished_by_the_next_use(db, world):
    """Cancel during a sync of many secrets: the next use loads them all."""
    db.conn.execute("""DO $$ BEGIN FOR i IN 1..1500 LOOP
        EXECUTE format('CREATE SERVER many_%s TYPE %L FOREIGN DATA WRAPPER duckdb OPTIONS (scope %L)',
                       i, 's3', 's3://many-' || i);
        EXECUTE format('CREATE USER MAPPING FOR PUBLIC SERVER many_%s OPTIONS (key_id %L, secret %L)',
                       i, 'AKIA' || i, 'secret-' || i);
      END LOOP; END $$""")
    conn = db.connect()
    conn.execute("SET statement_timeout = '50ms'")
    try:
        conn.execute("SELECT count(*) FROM duckdb.secrets()").fetchone()
    except psycopg.errors.QueryCanceled:
        pass
    conn.execute("RESET statement_timeout")
    assert conn.execute("SELECT count(*) FROM duckdb.secrets() WHERE name LIKE 'many_%'").fetchone() == (1500,)


def test_duckdbs_threads_never_take_postgresql_signals(db, world):
    """With duckdb.threads > 1, DuckDB's threads live in the engine's process:
    the backend keeps its one thread, which alone takes PostgreSQL's signals."""
    with file_setting(db.conn, "duckdb.max_threads", "2"):
        conn = db.connect(world["reader"])
        conn.execute("SET duckdb.threads = 2")
        assert conn.execute("SELECT * FROM duckdb.query($$ SELECT current_setting('threads')::BIGINT $$) "
                            "AS t(n bigint)").fetchone() == (2,)
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        t, out = _in_background(conn, CPU)
        time.sleep(1)
        assert os.listdir(f"/proc/{pid}/task") == [str(pid)]
        from test_engine_process import engine_pids
        [worker] = engine_pids(pid)
        assert len(os.listdir(f"/proc/{worker}/task")) > 2      # DuckDB's threads, there
        db.conn.execute("SELECT pg_cancel_backend(%s)", (pid,))
        t.join(30)
        assert isinstance(out.get("error"), psycopg.errors.QueryCanceled), out


def test_caps_bound_every_engine(db, world):
    conn = db.connect(world["reader"])
    conn.execute("SET duckdb.memory_limit = '100GB'")
    conn.execute("SET duckdb.threads = 64")
    got = conn.execute("SELECT * FROM duckdb.query($$ SELECT current_setting('memory_limit'), "
                       "current_setting('threads')::BIGINT $$) AS t(m text, n bigint)").fetchone()
    assert got[1] == 1 and ("GiB" in got[0] or "MiB" in got[0]) and float(got[0].split()[0]) <= 1024
    conn.execute("SET duckdb.memory_limit = '200MB'")     # lowering is fine
    got = conn.execute("SELECT * FROM duckdb.query($$ SELECT current_setting('memory_limit') $$) AS t(m text)"
                       ).fetchone()[0]
    assert "MiB" in got and float(got.split()[0]) < 200
    for bad in ("lots", "-1GB", "1 parsec"):
        conn.execute(f"SET duckdb.memory_limit = '{bad}'")
        with pytest.raises(psycopg.Error) as e:
            conn.execute(READ)
        assert e.value.sqlstate == "22023" and "duckdb.memory_limit" in e.value.diag.message_primary
    conn.execute("RESET duckdb.memory_limit")
    # Superusers are bound too.
    su = db.connect()
    su.execute("SET duckdb.threads = 64")
    assert su.execute("SELECT * FROM duckdb.query($$ SELECT current_setting('threads')::BIGINT $$) "
                      "AS t(n bigint)").fetchone() == (1,)


SORT = ("SELECT * FROM duckdb.query($$ SELECT count(*) FROM (SELECT i, md5(i::VARCHAR) h FROM range(3000000) t(i) "
        "ORDER BY h) $$) AS t(n bigint)")


def _spill_dirs(cluster, pid):
    parent = os.path.join(cluster.data, "base", "pgsql_tmp")
    return glob.glob(os.path.join(parent, f"pgsql_tmp{pid}.duckdb"))


def _gone_after_exit(cluster, pid):
    for _ in range(50):
        if not _spill_dirs(cluster, pid):
            break
        time.sleep(0.05)
    assert not _spill_dirs(cluster, pid), "the backend's exit left its spill directory"


def test_a_superusers_spill_goes_to_pgsql_tmp_and_is_removed(db, world, cluster):
    conn = db.connect()
    conn.execute("SET duckdb.memory_limit = '60MB'")
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    t, out = _in_background(conn, SORT)
    seen = set()
    while t.is_alive():
        seen.update(d for d in _spill_dirs(cluster, pid) if os.listdir(d))
        time.sleep(0.02)
    assert out.get("rows"), out
    assert seen, "the sort did not spill where PostgreSQL keeps its temporary files"
    assert not os.path.exists(os.path.join(cluster.data, ".tmp"))
    conn.execute("SELECT duckdb.recycle_ddb()")
    assert not [d for d in seen if os.path.exists(d)]
    conn.execute(SORT)
    conn.close()
    _gone_after_exit(cluster, pid)


def test_a_non_superusers_sort_spills_encrypted_and_it_cannot_write_there(db, world, cluster):
    """Every role's engine spills (issue 14). DuckDB lets SQL into its temp
    directory: for a role without file access the spill is encrypted, COPY ...
    TO may name only its allowed URLs (never a path, file:// or a computed
    target), and nothing outside the directory is reachable. The files left
    there are counted."""
    conn = db.connect(world["reader"])
    conn.execute("SET duckdb.memory_limit = '60MB'")
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    assert conn.execute("SELECT * FROM duckdb.query($$ SELECT current_setting('temp_file_encryption')::text $$) "
                        "AS t(v text)").fetchone() == ("true",)
    t, out = _in_background(conn, SORT)
    seen = set()
    while t.is_alive():
        seen.update(os.path.join(d, f) for d in _spill_dirs(cluster, pid) for f in os.listdir(d))
        time.sleep(0.02)
    assert out.get("rows"), out
    assert seen, "the sort did not spill"
    spill = os.path.join(cluster.data, "base", "pgsql_tmp", f"pgsql_tmp{pid}.duckdb")
    parent = os.path.dirname(spill)
    for target in (f"'{spill}/x.csv'", f"('{spill}' || '/x.csv')", f"'file://{spill}/x.csv'",
                   f"'{spill}/../x.csv'", "'/tmp/duckdb_secrets_copy_attack.csv'",
                   "(current_setting('temp_directory') || '/y.csv')"):
        refused(conn, f"COPY (SELECT 1 AS n) TO {target}")
    for query in (f"SELECT count(*)::VARCHAR FROM glob('{parent}/*')",
                  f"SELECT content FROM read_text('{spill}/../../PG_VERSION')",
                  "SELECT content FROM read_text('/etc/passwd')", "SELECT content FROM read_text('PG_VERSION')"):
        with pytest.raises(psycopg.Error) as e:
            conn.execute(f"SELECT * FROM duckdb.query($$ {query} $$) AS t(a text)")
        assert e.value.sqlstate in ("42501", "58030", "HV000"), (e.value.sqlstate, str(e.value))
        assert "root:x:0:0" not in str(e.value)
    assert not os.path.exists("/tmp/duckdb_secrets_copy_attack.csv")
    assert not [f for d in _spill_dirs(cluster, pid) for f in os.listdir(d) if f.endswith(".csv")]
    # Writing to its own bucket still works (S3's upload buffer needs more than 60MB).
    conn.execute("RESET duckdb.memory_limit")
    assert conn.execute("SELECT * FROM duckdb.query($$ COPY (SELECT 42 AS n) TO 's3://bucket/copied/n.csv' $$) "
                        "AS t(n bigint)").fetchone() == (1,)
    conn.close()
    _gone_after_exit(cluster, pid)


def test_a_non_superusers_spill_is_bounded_by_the_cap(db, world):
    with file_setting(db.conn, "duckdb.max_temp_directory_size", "20MB"):
        conn = db.connect(world["reader"])
        conn.execute("SET duckdb.memory_limit = '60MB'")
        with pytest.raises(psycopg.Error) as e:
            conn.execute(SORT)
        assert e.value.sqlstate == "53100", (e.value.sqlstate, str(e.value))
        assert "duckdb.max_temp_directory_size" in e.value.diag.message_hint
        assert conn.execute(READ).fetchone() == (10,)       # the session goes on


def test_the_stop_settings_are_the_administrators(db, world):
    """A role's SET of a cap is no cap: only the configuration files count."""
    conn = db.connect(world["reader"])
    conn.execute("SET duckdb.max_threads = 64")
    conn.execute("SET duckdb.threads = 64")
    assert conn.execute("SELECT * FROM duckdb.query($$ SELECT current_setting('threads')::BIGINT $$) "
                        "AS t(n bigint)").fetchone() == (1,)
