"""Baselines for make bench: DuckDB alone, in a bare /usr/bin/python3 process,
with the same pinned DuckDB and extension wheels the server uses.

    /usr/bin/python3 bench/baseline.py DEPS_DIR cold ENDPOINT KEY SECRET
    /usr/bin/python3 bench/baseline.py DEPS_DIR secrets N
    /usr/bin/python3 bench/baseline.py DEPS_DIR rows N
    /usr/bin/python3 bench/baseline.py DEPS_DIR rss ENDPOINT KEY SECRET PARQUET_URL
    /usr/bin/python3 bench/baseline.py DEPS_DIR points PATH        (writes the file)
    /usr/bin/python3 bench/baseline.py DEPS_DIR point PATH REPS

Prints one JSON object with the measured seconds (or bytes).
"""

import importlib
import json
import os
import sys
import time

from common import POINT_FILE, POINT_ID, POINT_QUERY, POINT_ROWS, SHAPES, proc_memory

DEPS = sys.argv[1]
sys.path.insert(0, DEPS)


def ext(name):
    import duckdb
    return os.path.join(DEPS, f"duckdb_extension_{name}", "extensions", f"v{duckdb.__version__}",
                        f"{name}.duckdb_extension")


def connect():
    import duckdb
    con = duckdb.connect(":memory:", config={"autoinstall_known_extensions": False,
                                             "autoload_known_extensions": False,
                                             "allow_persistent_secrets": False,
                                             "memory_limit": "1GB", "threads": 1})
    con.execute("SET enable_progress_bar = false")
    return con


def create_secrets(con, n, endpoint="127.0.0.1:9", key="k", secret="s"):
    """n S3 secrets; the first for s3://bucket, as bench/run.py's servers."""
    for i in range(n):
        con.execute(f'CREATE OR REPLACE TEMPORARY SECRET "b{i}" (TYPE s3, PROVIDER config, SCOPE ?, '
                    "region ?, endpoint ?, url_style ?, use_ssl ?, key_id ?, secret ?)",
                    ["s3://bucket" if i == 0 else f"s3://b{i}", "us-east-1", endpoint, "path", False, key, secret])


def rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def main():
    what = sys.argv[2]
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    if what == "cold":
        t0 = time.perf_counter()
        importlib.import_module("duckdb")       # timed: the import is part of a cold start
        con = connect()
        con.execute(f"LOAD '{ext('httpfs')}'")
        create_secrets(con, 10, sys.argv[3], sys.argv[4], sys.argv[5])
        con.execute("SELECT 1").fetchall()
        print(json.dumps({"seconds": time.perf_counter() - t0}))
    elif what == "secrets":
        importlib.import_module("duckdb")       # before timing: a backend imports it once too
        n = int(sys.argv[3])
        t0 = time.perf_counter()
        con = connect()
        con.execute(f"LOAD '{ext('httpfs')}'")
        create_secrets(con, n)
        print(json.dumps({"seconds": time.perf_counter() - t0}))
    elif what in ("rows", "mixed"):
        n = int(sys.argv[3])
        con = connect()
        t0 = time.perf_counter()
        rows = con.execute(SHAPES[what].format(n=n)).fetchall()
        assert len(rows) == n
        print(json.dumps({"seconds": time.perf_counter() - t0}))
    elif what == "points":
        con = connect()
        con.execute(f"COPY ({POINT_FILE.format(n=POINT_ROWS)}) TO '{sys.argv[3]}' (FORMAT parquet)")
        os.chmod(sys.argv[3], 0o644)
        print(json.dumps({"seconds": 0}))
    elif what == "point":
        con = connect()
        sql, reps = POINT_QUERY.format(path=sys.argv[3]), int(sys.argv[4])
        assert len(con.execute(sql, [POINT_ID]).fetchall()) == 1       # warm, as the backend's engine is
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            con.execute(sql, [POINT_ID]).fetchall()
            times.append(time.perf_counter() - t0)
        print(json.dumps({"seconds": sorted(times)[len(times) // 2]}))
    elif what == "rss":
        before = proc_memory()
        con = connect()
        con.execute(f"LOAD '{ext('httpfs')}'")
        create_secrets(con, 10, sys.argv[3], sys.argv[4], sys.argv[5])
        # the same first use as the backend's: an S3 read
        con.execute(f"SELECT count(*) FROM read_parquet('{sys.argv[6]}')").fetchall()
        after = proc_memory()
        print(json.dumps({"bytes": rss(), "added": {k: after[k] - before[k] for k in after}}))


if __name__ == "__main__":
    main()
