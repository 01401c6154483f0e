"""pg_dump / pg_restore of a database with duckdb servers and mappings for
several roles and PUBLIC, into a fresh cluster: everything comes back, passes
validation, and reads work."""

import os
import shutil
import subprocess

import psycopg
import pytest

import localenv
from conftest import READ, s3_mapping_sql, s3_server_sql

pytestmark = pytest.mark.dump_restore

PG_BIN = localenv.PG_BIN
CATALOG = """
SELECT (SELECT array_agg(row(srvname, srvtype, (SELECT array_agg(o ORDER BY o) FROM unnest(srvoptions) o))::text
                         ORDER BY srvname) FROM pg_foreign_server),
       (SELECT array_agg(row(srvname, usename, (SELECT array_agg(o ORDER BY o) FROM unnest(umoptions) o))::text
                         ORDER BY srvname, usename) FROM pg_user_mappings),
       (SELECT array_agg(row(srvname, array_to_string(srvacl, ','))::text ORDER BY srvname) FROM pg_foreign_server)
"""


def test_dump_and_restore_into_a_fresh_cluster(db, s3, cluster):
    alice, bob = db.role("alice"), db.role("bob")
    c = db.conn
    c.execute(s3_server_sql("team_s3", s3, scope="s3://bucket"))
    c.execute(s3_mapping_sql("team_s3", s3, f'"{alice}"'))
    c.execute("CREATE USER MAPPING FOR PUBLIC SERVER team_s3 OPTIONS (key_id 'PUB', secret 'public-secret')")
    c.execute(f'GRANT USAGE ON FOREIGN SERVER team_s3 TO "{alice}", "{bob}"')
    c.execute(f'GRANT EXECUTE ON FUNCTION duckdb.query(text) TO "{alice}"')
    c.execute("SELECT duckdb.create_simple_secret('GCS', 'GOOG1', 'gcs-secret', scope := 'gs://b')")
    # a_pg sorts before the rds server it names: a restore creates it first.
    c.execute("CREATE SERVER z_rds TYPE 'rds' FOREIGN DATA WRAPPER duckdb OPTIONS (chain 'env', validation 'none', "
              "region 'r', rds_user 'u', rds_host 'h', rds_port '5432')")
    c.execute("CREATE USER MAPPING FOR PUBLIC SERVER z_rds OPTIONS (key_id 'AKIARDS', secret 'rds-secret')")
    c.execute("CREATE SERVER a_pg TYPE 'postgres' FOREIGN DATA WRAPPER duckdb "
              "OPTIONS (host 'h', aws_rds_secret 'z_rds')")
    before = c.execute(CATALOG).fetchone()

    base = localenv.scratch_dir("duckdb_secrets_restore.")
    target = localenv.PgCluster(os.path.join(base, "pg")).start()
    try:
        dump = os.path.join(base, "db.dump")
        subprocess.run([f"{PG_BIN}/pg_dump", "-Fc", "-f", dump, cluster.dsn(db.dbname)], check=True)
        globals_sql = subprocess.run([f"{PG_BIN}/pg_dumpall", "--globals-only", "-d", cluster.dsn("postgres")],
                                     check=True, capture_output=True, text=True).stdout
        subprocess.run([f"{PG_BIN}/psql", "-X", "-q", "-d", target.dsn("postgres")], input=globals_sql,
                       text=True, check=True, capture_output=True)
        subprocess.run([f"{PG_BIN}/createdb", "-h", target.host, "-p", str(target.port), "-U", "postgres", "restored"],
                       check=True)
        out = subprocess.run([f"{PG_BIN}/pg_restore", "--exit-on-error", "-d", target.dsn("restored"), dump],
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        for secret in (s3.secret, "public-secret", "gcs-secret", "rds-secret"):
            assert secret not in out.stderr
        with psycopg.connect(target.dsn("restored"), autocommit=True) as r:
            assert r.execute(CATALOG).fetchone() == before
            names = sorted(x[0] for x in r.execute("SELECT name FROM duckdb.secrets() WHERE origin = 'server'"))
            assert names == ["a_pg", "simple_gcs_secret", "team_s3", "z_rds"]
        with psycopg.connect(target.dsn("restored", alice), autocommit=True) as a:
            assert a.execute(READ).fetchone() == (10,)
            assert s3.key_id in a.execute("SELECT secret_string FROM duckdb.secrets()").fetchone()[0]
    finally:
        target.stop()
        shutil.rmtree(base, ignore_errors=True)
