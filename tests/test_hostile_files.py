"""One hostile or corrupted file costs one query an error, for every role.

Each file below killed DuckDB 1.5.5 by a signal (tests/hostile.py builds them
and tests/test_hostile_inputs_unit.py shows they still do, in a plain DuckDB
process). While DuckDB ran inside the backend, each read restarted the whole
cluster. Here a role that may only read its own bucket reads them from the
local S3 server; the engine's process dies, the statement fails with a clean
error, the session goes on, the cluster never restarts."""

import os
import shutil

import psycopg
import pytest

import hostile
import localenv
from conftest import assert_clean_error, lake_and_reader, q, s3_mapping_sql
from test_engine_process import RESTART, _postmaster_start, engine_pids

# Reads every column of every row (a count alone would skip the columns).
WHOLE = "SELECT count(*) FILTER (WHERE t::VARCHAR IS NOT NULL) FROM {reader} AS t"
# What a dead engine or bad data may answer; never class XX, never a traceback.
CLEAN = {"58000", "53200"}


@pytest.fixture
def reader(db, s3):
    role = lake_and_reader(db, s3)
    db.conn.execute(s3_mapping_sql("lake", s3))
    return role


def _read(c, kind, url):
    sql = WHOLE.format(reader=hostile.read_sql(kind, url).removeprefix("SELECT * FROM "))
    return q(c, sql, "n bigint")


def _contained(db, c, log_since, started, err, states):
    assert err.sqlstate in states and not err.sqlstate.startswith("XX"), (err.sqlstate, str(err))
    assert_clean_error(err)
    assert q(c, "SELECT 1", "x int") == [(1,)]             # the same session goes on
    assert _postmaster_start(db.conn) == started
    assert RESTART not in log_since()


def test_a_parquet_schema_nested_three_million_deep(db, s3, reader, log_since):
    s3.put("hostile/deep_schema.parquet", hostile.deep_schema_parquet())
    c = db.connect(reader)
    started = _postmaster_start(db.conn)
    assert q(c, "SELECT 1", "x int") == [(1,)]
    backend = c.execute("SELECT pg_backend_pid()").fetchone()[0]
    [worker] = engine_pids(backend)
    with pytest.raises(psycopg.Error) as e:
        _read(c, "parquet", "s3://bucket/hostile/deep_schema.parquet")
    _contained(db, c, log_since, started, e.value, CLEAN)
    assert engine_pids(backend) != [worker]
    # a superuser reading the same file: the same
    with pytest.raises(psycopg.Error) as e:
        _read(db.conn, "parquet", "s3://bucket/hostile/deep_schema.parquet")
    _contained(db, db.conn, log_since, started, e.value, CLEAN)


def test_one_corrupted_byte_in_a_duckdb_written_parquet_file(db, s3, reader, log_since):
    """Heap corruption in the reader: the process dies (SIGSEGV/SIGABRT) or,
    with another heap layout, DuckDB reports bad data. Either way one statement."""
    s3.put("hostile/corrupted.parquet", hostile.corrupted_parquet())
    c = db.connect(reader)
    # with some heap layouts DuckDB spins on the bad data instead: statement_timeout stops it
    c.execute("SET statement_timeout = '30s'")
    started = _postmaster_start(db.conn)
    for _ in range(3):
        try:
            _read(c, "parquet", "s3://bucket/hostile/corrupted.parquet")
        except psycopg.Error as e:
            _contained(db, c, log_since, started, e, CLEAN | {"22000", "22023", "58030", "HV000", "57014"})


def test_an_iceberg_schema_nested_two_million_deep(db, log_since):
    """A superuser's iceberg_scan of a metadata.json whose schema nests 2,000,000 structs."""
    where = localenv.scratch_dir("duckdb_secrets_iceberg.")
    os.chmod(where, 0o755)
    path = hostile.write_deep_iceberg_table(str(where))
    for d, _, files in os.walk(where):
        os.chmod(d, 0o755)
        for f in files:
            os.chmod(os.path.join(d, f), 0o644)
    started = _postmaster_start(db.conn)
    with pytest.raises(psycopg.Error) as e:
        q(db.conn, f"SELECT count(*) FROM iceberg_scan('{path}')", "n bigint")
    _contained(db, db.conn, log_since, started, e.value, CLEAN)
    shutil.rmtree(where, ignore_errors=True)


@pytest.mark.fuzz
@pytest.mark.parametrize("kind,count", [("parquet", 1200), ("csv", 400), ("json", 400)])
def test_mutated_files_through_the_engine(db, s3, reader, log_since, kind, count):
    """A seeded mutation fuzz read through a role's engine from S3: every
    failure is a clean PostgreSQL error outside class XX; the cluster never restarts."""
    c = db.connect(reader)
    started = _postmaster_start(db.conn)
    outcomes = {}
    for name, data in hostile.mutants(kind, 7, count):
        key = f"fuzz/{name}.{kind}"
        s3.put(key, data)
        try:
            _read(c, kind, f"s3://bucket/{key}")
            outcomes["rows"] = outcomes.get("rows", 0) + 1
        except psycopg.Error as e:
            assert e.sqlstate and not e.sqlstate.startswith("XX"), (name, e.sqlstate, str(e))
            assert_clean_error(e)
            outcomes[e.sqlstate] = outcomes.get(e.sqlstate, 0) + 1
    print(f"{kind}: {count} mutants through the engine: {outcomes}")
    assert q(c, "SELECT 1", "x int") == [(1,)]
    assert _postmaster_start(db.conn) == started
    assert RESTART not in log_since()
