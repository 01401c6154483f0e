"""Faults: kill -9 of a backend in the middle of a secret sync and of a query,
an immediate shutdown, the S3 server stopped and restarted mid-query, a
corrupt or missing DuckDB extension file, an unreadable dependency directory.
Each gives a clear error where it must; afterwards every secret is there and
works. A cluster and an S3 server of their own (processes we started, ended
by PID)."""

import os
import shutil
import signal
import stat
import subprocess
import threading
import time

import psycopg
import pytest

import localenv
from conftest import assert_clean_error, fresh_database, reverify_shipped, s3_server_sql, secret_lines

pytestmark = pytest.mark.faults

N_SERVERS = 1500          # enough that a sync takes a while
PARQUET = "s3://bucket/data/numbers.parquet"
READ = f"SELECT * FROM duckdb.query($$ SELECT count(*) FROM read_parquet('{PARQUET}') $$) AS t(n bigint)"
# A read that takes a while: ~100 MB of random text.
BIG_READ = ("SELECT * FROM duckdb.query("
            "$$ SELECT count(DISTINCT h) FROM read_parquet('s3://bucket/data/big.parquet') $$) "
            "AS t(n bigint)")
CATALOG = """
SELECT count(*), md5(string_agg(concat_ws('|', s.srvname, s.srvtype, s.srvoptions::text, s.srvacl::text,
                                          um.usename, um.umoptions::text), ',' ORDER BY s.srvname, um.usename))
  FROM pg_foreign_server s LEFT JOIN pg_user_mappings um ON um.srvid = s.oid
"""
PKGLIB = subprocess.run(["pg_config", "--pkglibdir"], capture_output=True, text=True, check=True).stdout.strip()
DEPS = os.path.join(PKGLIB, "duckdb_secrets", "deps")
# The files engines load (superusers', other roles'): hard links to the wheel's file, laid out
# again from it by make install.
LOADED_HTTPFS = [os.path.join(PKGLIB, "duckdb_secrets", "extensions", klass, "v1.5.5", "linux_amd64",
                              "httpfs.duckdb_extension") for klass in ("superuser", "role")]
WHEEL_HTTPFS = os.path.join(DEPS, "duckdb_extension_httpfs", "extensions", "v1.5.5", "httpfs.duckdb_extension")

STATS = {"faults": 0, "secrets_checked": 0, "lost": 0}


@pytest.fixture(scope="module")
def world():
    base = localenv.scratch_dir("duckdb_secrets_faults.")
    s3 = localenv.S3Server(os.path.join(base, "s3"), seed=1234).start()
    s3.put_parquet("data/numbers.parquet", "SELECT range AS n FROM range(10)")
    cluster = localenv.PgCluster(os.path.join(base, "pg"), settings={"restart_after_crash": "on"}).start()
    conn = fresh_database(cluster, "faults")
    conn.execute(s3_server_sql("lake", s3, scope="s3://bucket"))
    conn.execute(f"CREATE USER MAPPING FOR PUBLIC SERVER lake OPTIONS (key_id '{s3.key_id}', secret '{s3.secret}')")
    conn.execute("CREATE ROLE fault_reader LOGIN")
    conn.execute("GRANT USAGE ON FOREIGN SERVER lake TO fault_reader")
    conn.execute("GRANT EXECUTE ON FUNCTION duckdb.query(text) TO fault_reader")
    # Many more secrets (one statement, so the event trigger runs once per server).
    conn.execute(f"""DO $$ BEGIN FOR i IN 1..{N_SERVERS} LOOP
        EXECUTE format('CREATE SERVER f_%s TYPE %L FOREIGN DATA WRAPPER duckdb OPTIONS (scope %L, region %L)',
                       i, 's3', 's3://f-' || i, 'eu-west-1');
        EXECUTE format('CREATE USER MAPPING FOR postgres SERVER f_%s OPTIONS (key_id %L, secret %L)',
                       i, 'AKIAF' || i, 'CANARY-fault-' || i);
      END LOOP; END $$""")
    expected = conn.execute(CATALOG).fetchone()
    conn.close()
    w = {"cluster": cluster, "s3": s3, "expected": expected, "base": base}
    yield w
    cluster.stop()
    s3.stop()
    log = cluster.read_log()
    shutil.rmtree(base, ignore_errors=True)
    assert not secret_lines(log, [s3.secret, "CANARY-fault-"])
    print(f"\nfaults: {STATS}")


def connect(w, user="postgres", timeout=60):
    """A connection once the server accepts them again (after crash recovery)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return psycopg.connect(w["cluster"].dsn("faults", user), autocommit=True)
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def everything_there_and_working(w):
    """The catalog is as created, every secret reaches the engine, reads work."""
    with connect(w) as c:
        assert c.execute(CATALOG).fetchone() == w["expected"]
        names = {n for (n,) in c.execute("SELECT name FROM duckdb.secrets() WHERE origin = 'server'")}
        missing = ({"lake"} | {f"f_{i}" for i in range(1, N_SERVERS + 1)}) - names
        STATS["secrets_checked"] += len(names)
        STATS["lost"] += len(missing)
        assert not missing, f"{len(missing)} secrets missing"
        assert c.execute(READ).fetchone() == (10,)
    with connect(w, "fault_reader") as c:
        assert c.execute(READ).fetchone() == (10,)


def in_background(c, sql):
    """Runs sql on c in a thread: (thread, outcome dict with "rows" or "error")."""
    outcome = {}

    def run():
        try:
            outcome["rows"] = c.execute(sql).fetchall()
        except psycopg.Error as e:
            outcome["error"] = e

    t = threading.Thread(target=run)
    t.start()
    return t, outcome


def run_and_kill(w, sql, after, engines=None):
    """Runs sql in a new backend and kill -9s that backend after `after` seconds
    (its engine processes then, into engines)."""
    c = connect(w)
    pid = c.execute("SELECT pg_backend_pid()").fetchone()[0]
    t, outcome = in_background(c, sql)
    time.sleep(after)
    if engines is not None:
        engines.extend(_engines_of(pid))
    start = w["cluster"].log_size()
    os.kill(pid, signal.SIGKILL)             # a backend of the cluster this test started
    STATS["faults"] += 1
    t.join(60)
    c.close()
    _wait_for_crash_restart(w, start)
    return outcome


def _wait_for_crash_restart(w, start, timeout=60):
    """The postmaster ends every backend after one dies by a signal, then restarts:
    a connection accepted before it noticed would be ended too."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = w["cluster"].read_log(start)
        done = log.find("reinitializing")
        if done >= 0 and "ready to accept connections" in log[done:]:
            return
        time.sleep(0.1)
    raise AssertionError("the cluster did not restart after the crash")


def test_kill_9_in_the_middle_of_a_secret_sync(world):
    started = time.monotonic()
    out = run_and_kill(world, "SELECT count(*) FROM duckdb.secrets()", 0.3)
    assert "error" in out, f"the sync finished before the kill ({time.monotonic() - started:.2f}s)"
    everything_there_and_working(world)


def test_kill_9_in_the_middle_of_a_query(world):
    engines = []
    out = run_and_kill(world, "SELECT * FROM duckdb.query($$ SELECT sum(i) FROM range(100000000000) t(i) $$) "
                              "AS t(s numeric)", 2.0, engines)
    assert "error" in out
    assert engines, "no engine process was running"
    _gone_within(engines, 2.0)          # no orphan: the worker ends with its backend
    everything_there_and_working(world)


def _engines_of(pid):
    from test_engine_process import engine_pids
    return engine_pids(pid)


def _gone_within(pids, seconds):
    deadline = time.monotonic() + seconds
    from test_engine_process import _alive
    while any(_alive(p) for p in pids):
        assert time.monotonic() < deadline, f"engine processes outlived their backend: {pids}"
        time.sleep(0.02)


SPIN = ("SELECT * FROM duckdb.query($$ SELECT levenshtein(repeat('a', 60000 + (i % 2)::int), repeat('b', 60000)) "
        "FROM range(30) r(i) $$) AS t(n bigint)")


def test_fast_shutdown_with_engines_that_never_check_for_interrupts(world):
    """pg_ctl stop -m fast while two sessions run a scalar call that never checks
    DuckDB's interrupt flag: the workers are killed, the shutdown is quick."""
    conns = [connect(world), connect(world, "fault_reader")]
    engines, threads = [], []
    for c in conns:
        c.execute(READ)
        engines += _engines_of(c.execute("SELECT pg_backend_pid()").fetchone()[0])
        threads.append(in_background(c, SPIN)[0])
    time.sleep(1.0)
    t0 = time.monotonic()
    subprocess.run(localenv._as_postgres([f"{localenv.PG_BIN}/pg_ctl", "-D", world["cluster"].data,
                                          "-m", "fast", "-w", "stop"]), check=True, stdout=subprocess.DEVNULL)
    took = time.monotonic() - t0
    print(f"pg_ctl stop -m fast with two spinning engines: {took:.2f} s")
    assert took < 2.0
    _gone_within(engines, 1.0)
    for t in threads:
        t.join(60)
    for c in conns:
        c.close()
    world["cluster"].start()
    everything_there_and_working(world)


def test_a_killed_postmaster_leaves_no_engine(world):
    """kill -9 of the postmaster: each backend's wait sees it and exits; its engine ends with it."""
    c = connect(world)
    c.execute(READ)
    backend = c.execute("SELECT pg_backend_pid()").fetchone()[0]
    engines = _engines_of(backend)
    t, _ = in_background(c, SPIN)
    time.sleep(1.0)
    os.kill(world["cluster"].pid, signal.SIGKILL)       # the postmaster of the cluster this test started
    STATS["faults"] += 1
    _gone_within([backend, *engines], 5.0)
    t.join(60)
    c.close()
    # what a killed postmaster leaves: other children exit on their own; then start again
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            world["cluster"].start()
            break
        except subprocess.CalledProcessError:
            time.sleep(0.5)
    everything_there_and_working(world)


SPILL = ("SELECT * FROM duckdb.query($$ SELECT count(*) FROM (SELECT i, md5(i::VARCHAR) h FROM range(20000000) t(i) "
         "ORDER BY h) $$) AS t(n bigint)")


def _spill_dirs(w):
    parent = os.path.join(w["cluster"].data, "base", "pgsql_tmp")
    return [n for n in os.listdir(parent) if n.endswith(".duckdb")] if os.path.isdir(parent) else []


def test_kill_9_mid_spill_leaves_nothing_once_an_engine_starts(world):
    c = connect(world)
    c.execute("SET duckdb.memory_limit = '60MB'")
    pid = c.execute("SELECT pg_backend_pid()").fetchone()[0]
    t, out = in_background(c, SPILL)
    deadline = time.monotonic() + 30
    while not _spill_dirs(world) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _spill_dirs(world), "the query did not spill"
    start = world["cluster"].log_size()
    os.kill(pid, signal.SIGKILL)             # a backend of the cluster this test started
    STATS["faults"] += 1
    t.join(60)
    c.close()
    _wait_for_crash_restart(world, start)
    with connect(world) as fresh:
        fresh.execute("SELECT count(*) FROM duckdb.secrets()").fetchall()      # a new engine starts
        # only the new engine's own (empty) directory: the kernel sandbox needs it before DuckDB starts
        mine = f"pgsql_tmp{fresh.execute('SELECT pg_backend_pid()').fetchone()[0]}.duckdb"
        assert _spill_dirs(world) == [mine]
        assert os.listdir(os.path.join(world["cluster"].data, "base", "pgsql_tmp", mine)) == []
    everything_there_and_working(world)


def test_a_base_backup_taken_while_a_query_spills_holds_no_spill_file(world):
    c = connect(world)
    c.execute("SET duckdb.memory_limit = '60MB'")
    t, out = in_background(c, SPILL.replace("20000000", "6000000"))
    deadline = time.monotonic() + 30
    while not _spill_dirs(world) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _spill_dirs(world), "the query did not spill"
    backup = os.path.join(world["base"], "backup")
    os.makedirs(backup)
    localenv._chown_postgres(backup)
    subprocess.run(localenv._as_postgres([f"{localenv.PG_BIN}/pg_basebackup", "-h", "127.0.0.1", "-p",
                                          str(world["cluster"].port), "-U", "postgres", "-D", backup,
                                          "-X", "none", "--no-sync", "-c", "fast"]), check=True)
    t.join(120)
    c.close()
    found = [os.path.join(d, f) for d, _, files in os.walk(backup) for f in files
             if any(part in os.path.join(d, f) for part in ("pgsql_tmp", ".duckdb", "/.tmp/", "duckdb_temp"))]
    assert found == [], found[:5]
    assert "rows" in out, out
    shutil.rmtree(backup, ignore_errors=True)


def test_exceeding_the_spill_cap_fails_only_that_statement(world):
    c = connect(world)
    c.execute("SET duckdb.memory_limit = '60MB'")
    with pytest.raises(psycopg.Error) as e:
        c.execute(SPILL).fetchall()                 # 20M rows: well over the 1GB default cap
    assert e.value.sqlstate == "53100", (e.value.sqlstate, str(e.value))
    assert "duckdb.max_temp_directory_size" in e.value.diag.message_hint
    assert c.execute(READ).fetchone() == (10,)
    c.close()


def test_no_duckdb_file_is_left_in_the_data_directory(world):
    for _ in range(50):
        if not _spill_dirs(world):
            break
        time.sleep(0.1)
    assert _spill_dirs(world) == []
    assert not os.path.exists(os.path.join(world["cluster"].data, ".tmp"))


def test_immediate_shutdown_and_restart(world):
    c = connect(world)
    c.execute(READ)
    engines = _engines_of(c.execute("SELECT pg_backend_pid()").fetchone()[0])
    busy, _ = in_background(c, "SELECT * FROM duckdb.query($$ SELECT sum(i) FROM range(100000000000) t(i) $$) "
                               "AS t(s numeric)")
    time.sleep(1.0)
    subprocess.run(localenv._as_postgres([f"{localenv.PG_BIN}/pg_ctl", "-D", world["cluster"].data,
                                          "-m", "immediate", "-w", "stop"]), check=True, stdout=subprocess.DEVNULL)
    STATS["faults"] += 1
    assert engines
    _gone_within(engines, 2.0)
    busy.join(60)
    c.close()
    world["cluster"].start()
    everything_there_and_working(world)


def test_s3_server_stopped_and_restarted_mid_query(world):
    s3 = world["s3"]
    s3.put_parquet("data/big.parquet", "SELECT md5(range::VARCHAR) || md5((range + 1)::VARCHAR) AS h "
                                       "FROM range(3000000)")
    c = connect(world)
    assert c.execute(READ).fetchone() == (10,)
    t, out = in_background(c, BIG_READ)
    time.sleep(0.3)
    s3.stop()                                 # the moto process this module started
    STATS["faults"] += 1
    t.join(120)
    assert "error" in out, "the query finished before the S3 server stopped"
    e = out["error"]
    assert e.sqlstate in ("58030", "HV000")
    assert_clean_error(e, s3.secret)
    # Back on the same port, with the same keys (seeded) and the data re-uploaded.
    s3.start()
    s3.put_parquet("data/numbers.parquet", "SELECT range AS n FROM range(10)")
    assert c.execute(READ).fetchone() == (10,)          # the same session recovers
    c.close()
    everything_there_and_working(world)


def _put_in_place_of_httpfs(damage):
    """Every name engines load httpfs from becomes a damaged copy (a new file:
    the installed one stays intact, since processes that loaded it -- backends,
    this test process -- have it mapped; writing into it would corrupt them)."""
    copy = WHEEL_HTTPFS + ".faults-damaged"
    shutil.copyfile(WHEEL_HTTPFS, copy)
    with open(copy, "r+b") as f:
        damage(f)
    for name in LOADED_HTTPFS:
        shutil.copyfile(copy, name + ".new")
        os.replace(name + ".new", name)
    os.remove(copy)


def _middle(f):
    f.seek(os.path.getsize(f.name) // 2)
    f.write(os.urandom(4096))       # the signature no longer matches


def test_corrupt_truncated_and_missing_extension_file(world):
    """Each is a clear error; with the files laid out again, everything works again."""
    try:
        _put_in_place_of_httpfs(_middle)
        STATS["faults"] += 1
        with connect(world) as c:
            with pytest.raises(psycopg.Error) as e:
                c.execute(READ)
            assert 'could not load DuckDB extension "httpfs"' in e.value.diag.message_primary
            assert_clean_error(e.value, world["s3"].secret)
        _put_in_place_of_httpfs(lambda f: f.truncate(1000))
        STATS["faults"] += 1
        with connect(world) as c:
            with pytest.raises(psycopg.Error) as e:
                c.execute(READ)
            assert 'could not load DuckDB extension "httpfs"' in e.value.diag.message_primary
        for name in LOADED_HTTPFS:
            os.remove(name)
        STATS["faults"] += 1
        with connect(world) as c:
            with pytest.raises(psycopg.Error) as e:
                c.execute(READ)
            assert e.value.sqlstate == "55000", str(e.value)
            assert 'DuckDB extension "httpfs" for DuckDB 1.5.5 is missing' in e.value.diag.message_primary
            assert "make install" in e.value.diag.message_hint
    finally:
        reverify_shipped()          # the links laid out again from the wheel's file and verified, as make install does
    everything_there_and_working(world)


def test_unreadable_dependency_directory(world):
    mode = stat.S_IMODE(os.stat(DEPS).st_mode)
    os.chmod(DEPS, 0o000)                     # root still reads it; the server's postgres user cannot
    STATS["faults"] += 1
    try:
        with connect(world) as c:
            with pytest.raises(psycopg.Error) as e:
                c.execute(READ)
            assert e.value.sqlstate == "58000"
            assert "could not load a Python dependency" in e.value.diag.message_primary
            assert DEPS in e.value.diag.message_hint
            assert_clean_error(e.value, world["s3"].secret)
            # DDL is refused just as clearly (validation needs DuckDB too), and changes nothing.
            with pytest.raises(psycopg.Error) as e:
                c.execute("CREATE SERVER during_fault TYPE 's3' FOREIGN DATA WRAPPER duckdb")
            assert e.value.sqlstate == "58000"
            assert c.execute("SELECT count(*) FROM pg_foreign_server WHERE srvname = 'during_fault'"
                             ).fetchone() == (0,)
    finally:
        os.chmod(DEPS, mode)
    everything_there_and_working(world)
