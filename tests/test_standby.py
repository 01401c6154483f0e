"""A streaming-replication hot standby (pg_basebackup, 127.0.0.1): its engines
use the replicated secrets read-only, and a change on the primary reaches a
standby session's engine after replay, without reconnecting."""

import os
import shutil
import subprocess
import time

import psycopg
import pytest

import localenv
from conftest import READ, assert_clean_error, fresh_database, s3_server_sql, secret_lines

pytestmark = pytest.mark.standby

WRONG = "CANARY-standby-wrong-secret"


@pytest.fixture(scope="module")
def pair(s3):
    base = localenv.scratch_dir("duckdb_secrets_standby.")
    primary = localenv.PgCluster(os.path.join(base, "primary")).start()
    standby = localenv.PgCluster(os.path.join(base, "standby"))
    os.makedirs(standby.base)
    os.chmod(standby.base, 0o755)
    localenv._chown_postgres(standby.base)
    subprocess.run(localenv._as_postgres([f"{localenv.PG_BIN}/pg_basebackup", "-h", "127.0.0.1",
                                          "-p", str(primary.port), "-U", "postgres", "-D", standby.data,
                                          "-R", "-X", "stream", "--no-sync"]), check=True)
    with open(os.path.join(standby.data, "postgresql.auto.conf"), "a") as f:
        f.write(f"port = '{standby.port}'\nunix_socket_directories = '{standby.base}'\nhot_standby = on\n")
    standby.start()
    conn = fresh_database(primary, "replicated")
    yield primary, standby, conn
    conn.close()
    standby.stop()
    primary.stop()
    logs = primary.read_log() + standby.read_log()
    shutil.rmtree(base, ignore_errors=True)
    assert not secret_lines(logs, [s3.secret, WRONG])
    assert "terminated by signal" not in logs


def replayed(primary_conn, standby_conn, timeout=30):
    """Waits until the standby has replayed everything the primary wrote so far."""
    lsn = primary_conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if standby_conn.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)).fetchone()[0]:
            return
        time.sleep(0.05)
    raise AssertionError("the standby did not replay in time")


def test_standby_uses_replicated_secrets_and_sees_changes_after_replay(pair, s3):
    primary, standby, conn = pair
    conn.execute(s3_server_sql("lake", s3, scope="s3://bucket"))
    conn.execute(f"CREATE USER MAPPING FOR PUBLIC SERVER lake OPTIONS (key_id '{s3.key_id}', secret '{s3.secret}')")
    conn.execute("CREATE ROLE analyst LOGIN")
    conn.execute("GRANT USAGE ON FOREIGN SERVER lake TO analyst")
    conn.execute("GRANT EXECUTE ON FUNCTION duckdb.query(text) TO analyst")

    with psycopg.connect(standby.dsn("postgres"), autocommit=True) as probe:
        replayed(conn, probe)
    with psycopg.connect(standby.dsn("replicated"), autocommit=True) as su, \
            psycopg.connect(standby.dsn("replicated", "analyst"), autocommit=True) as an:
        assert su.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
        for c in (su, an):
            assert c.execute(READ).fetchone() == (10,)
            assert dict(c.execute("SELECT name, origin FROM duckdb.secrets()").fetchall()) == {"lake": "server"}

        # A change on the primary reaches the standby sessions' engines after replay.
        conn.execute(f"ALTER USER MAPPING FOR PUBLIC SERVER lake OPTIONS (SET secret '{WRONG}')")
        replayed(conn, su)
        for c in (su, an):
            with pytest.raises(psycopg.Error) as e:
                c.execute(READ)
            assert "403" in e.value.diag.message_primary
            assert_clean_error(e.value, WRONG, s3.secret)
        conn.execute(f"ALTER USER MAPPING FOR PUBLIC SERVER lake OPTIONS (SET secret '{s3.secret}')")
        conn.execute("REVOKE USAGE ON FOREIGN SERVER lake FROM analyst")
        replayed(conn, su)
        assert su.execute(READ).fetchone() == (10,)
        assert an.execute("SELECT count(*) FROM duckdb.secrets()").fetchone() == (0,)

        # Read-only: secrets cannot be made on the standby, with PostgreSQL's own error.
        with pytest.raises(psycopg.Error) as e:
            su.execute("SELECT duckdb.create_simple_secret(type := 'S3', key_id := 'AKIASTANDBY', "
                       "secret := 'CANARY-standby')")
        assert e.value.sqlstate == "25006"
        assert_clean_error(e.value, "CANARY-standby")

        conn.execute("DROP SERVER lake CASCADE")
        replayed(conn, su)
        assert su.execute("SELECT count(*) FROM duckdb.secrets()").fetchone() == (0,)
    conn.execute("DROP OWNED BY analyst")
    conn.execute("DROP ROLE analyst")


def test_standby_reads_encrypted_values_with_the_same_key_file(pair, s3):
    """duckdb.encryption_key_file on both: values stored encrypted on the
    primary reach the standby as ciphertext and its engines decrypt them."""
    import json

    from test_encryption import KEY1, KeyFile, fresh_key, grep_tree
    primary, standby, conn = pair
    kf = KeyFile()
    kf.write(KEY1)
    try:
        conn.execute("SET duckdb.encryption_key_file = ''")
        conn.execute(f"ALTER SYSTEM SET duckdb.encryption_key_file = '{kf.path}'")
        conn.execute("SELECT pg_reload_conf()")
        with open(os.path.join(standby.data, "postgresql.auto.conf"), "a") as f:
            f.write(f"duckdb.encryption_key_file = '{kf.path}'\n")
        with psycopg.connect(standby.dsn("replicated"), autocommit=True) as s:
            s.execute("SELECT pg_reload_conf()")
        time.sleep(0.5)
        key_id, secret = fresh_key(s3)
        conn.execute(s3_server_sql("sealed", s3, scope="s3://bucket/data"))
        conn.execute("SELECT duckdb.set_user_mapping('sealed', 'PUBLIC', %s::jsonb)",
                     (json.dumps({"key_id": key_id, "secret": secret}),))
        conn.execute("CHECKPOINT")
        with psycopg.connect(standby.dsn("replicated"), autocommit=True) as s:
            replayed(conn, s)
            assert s.execute("SELECT umoptions FROM pg_user_mappings WHERE srvname = 'sealed'"
                             ).fetchone()[0][1].startswith("secret=dsenc1:")
            assert s.execute(READ).fetchone() == (10,)
            assert dict(s.execute("SELECT name, storage FROM duckdb.secrets()").fetchall())["sealed"] == "memory"
            s.execute("CHECKPOINT")
        assert grep_tree(standby.data, secret) == [] and grep_tree(primary.data, secret) == []
    finally:
        conn.execute("DROP SERVER IF EXISTS sealed CASCADE")
        conn.execute("ALTER SYSTEM RESET duckdb.encryption_key_file")
        conn.execute("SELECT pg_reload_conf()")
        kf.remove()
